"""Dates and times as Norwegians write them, in Europe/Oslo time, formatted with Babel."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from babel.dates import format_datetime

OSLO = ZoneInfo("Europe/Oslo")
_LOCALES = {"nb": "nb_NO", "nn": "nn_NO", "en": "en_GB"}


def meeting_time(when: datetime, lang: str = "nb") -> str:
    """«tirsdag 24. november kl. 10.00» (nb/nn); «Tuesday 24 November at 10.00» (en)."""
    loc = _LOCALES.get(lang, "nb_NO")
    if lang == "en":
        return format_datetime(when, "EEEE d MMMM 'at' HH.mm", locale=loc, tzinfo=OSLO)
    return format_datetime(when, "EEEE d. MMMM 'kl.' HH.mm", locale=loc, tzinfo=OSLO)
