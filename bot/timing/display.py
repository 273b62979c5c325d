"""Dates and times as Norwegians write them, in Europe/Oslo time, formatted with Babel."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime

from bot.timing.when import shows_year

OSLO = ZoneInfo("Europe/Oslo")
_LOCALES = {"nb": "nb_NO", "nn": "nn_NO", "en": "en_GB"}


_RELATIVE = {"nb": ("i dag", "i morgen"), "nn": ("i dag", "i morgon"),
             "en": ("today", "tomorrow")}


def meeting_time(when: datetime, lang: str = "nb", now: datetime | None = None) -> str:
    """«tirsdag 24. november kl. 10.00» (nb/nn); «Tuesday 24 November at 10.00» (en).
    With `now`: «i morgen, tirsdag 24. november kl. 10.00» when it is today or tomorrow, and
    the year when it is another year or months away («lørdag 20. november 2027 kl. 10.00»)."""
    loc = _LOCALES.get(lang, "nb_NO")
    year = " y" if now is not None and shows_year(when, now) else ""
    if lang == "en":
        text = format_datetime(when, f"EEEE d MMMM{year} 'at' HH.mm", locale=loc, tzinfo=OSLO)
    else:
        text = format_datetime(when, f"EEEE d. MMMM{year} 'kl.' HH.mm", locale=loc, tzinfo=OSLO)
    if now is not None:
        days = (when.astimezone(OSLO).date() - now.astimezone(OSLO).date()).days
        if days in (0, 1):
            return f"{_RELATIVE.get(lang, _RELATIVE['nb'])[days]}, {text}"
    return text


def day_date(day: date, lang: str = "nb") -> str:
    """«tirsdag 1. desember» (nb/nn); «Tuesday 1 December» (en)."""
    pattern = "EEEE d MMMM" if lang == "en" else "EEEE d. MMMM"
    return format_date(day, pattern, locale=_LOCALES.get(lang, "nb_NO"))
