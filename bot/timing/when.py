"""Norwegian dates and times as veiledere write them, and veileder SMS commands. Pure.

    parse_when("i morgen kl 10", now)      -> tomorrow 10.00 Europe/Oslo
    parse_when("tirsdag 10.30", now)        -> the coming Tuesday
    parse_when("24.11 10:00", now)          -> 24 November (this year; next year only if
                                               that is within half a year: «5.1» in December)
    parse_when("20.11 kl 10", now)          -> PassedError three days after 20.11: «20.11
                                               har vært. Mente du 20.11.2027?»
    parse_command("MØTE 912 34 567 24.11 10:00 NAV Gjøvik", now)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from bot.phone import PhoneError, normalise_phone, valid_phone
from bot.timing.planner import OSLO, at_oslo

WEEKDAYS = {
    "mandag": 0, "man": 0, "måndag": 0, "tirsdag": 1, "tir": 1, "tysdag": 1, "onsdag": 2,
    "ons": 2, "torsdag": 3, "tor": 3, "fredag": 4, "fre": 4, "lørdag": 5, "lør": 5,
    "laurdag": 5, "søndag": 6, "søn": 6, "sundag": 6,
}
MONTHS = {
    "jan": 1, "januar": 1, "feb": 2, "februar": 2, "mar": 3, "mars": 3, "apr": 4, "april": 4,
    "mai": 5, "jun": 6, "juni": 6, "jul": 7, "juli": 7, "aug": 8, "august": 8, "sep": 9,
    "sept": 9, "september": 9, "okt": 10, "oktober": 10, "nov": 11, "november": 11,
    "des": 12, "desember": 12,
}


class WhenError(ValueError):
    pass


class PassedError(WhenError):
    """The time has passed: said back as a question, never booked a year later in silence."""


# a day and month without a year that has passed this year means next year only when that is
# this near (5.1 written in December); otherwise it is a mistake, and Veivis asks
NEXT_YEAR_WITHIN = timedelta(days=183)
# a date further away than this is shown with its year
SHOW_YEAR_BEYOND = timedelta(days=92)


_TIME = re.compile(r"(?:\bkl\.?\s*)?\b([01]?\d|2[0-3])(?:[.:]([0-5]\d))?\b(?!\s*[./]\s*\d)")
_KL_TIME = re.compile(r"\bkl\.?\s*([01]?\d|2[0-3])(?:[.:]([0-5]\d))?\b")
_HM_TIME = re.compile(r"(?<![\d.])([01]?\d|2[0-3])[.:]([0-5]\d)(?![\d.])")
_DATE_NUM = re.compile(r"(?<![\d.:])(\d{1,2})[./](\d{1,2})(?:[./](\d{2}|\d{4}))?(?![\d:])")
_DATE_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_DATE_WORD = re.compile(r"\b(\d{1,2})\.?\s+([a-zæøå]+)\b")


def _time_of(text: str) -> tuple[time | None, str]:
    """The time in the text and the text without it."""
    for rx in (_KL_TIME, _HM_TIME):
        m = rx.search(text)
        if m:
            t = time(int(m.group(1)), int(m.group(2) or 0))
            return t, (text[:m.start()] + " " + text[m.end():])
    return None, text


def _date_of(text: str, today: date, *, ahead: bool = False) -> tuple[date | None, str]:
    """The date in the text and the text without it. With `ahead` (a meeting), a day and month
    that has passed is next year only within half a year; else PassedError asks."""
    def upcoming(month: int, day: int, year: int | None) -> date:
        try:
            d = date(year or today.year, month, day)
        except ValueError as e:
            raise WhenError(f"datoen {day}.{month} finnes ikke") from e
        if year is None and d < today:
            try:
                later = date(today.year + 1, month, day)
            except ValueError as e:  # 29.2, and next year has none
                raise PassedError(f"{day}.{month} har vært. Hvilken dag mente du?") from e
            if ahead and later - today > NEXT_YEAR_WITHIN:
                raise PassedError(f"{day}.{month} har vært. Mente du {day}.{month}.{later.year}? "
                                  f"Skriv i så fall året.")
            d = later
        return d

    m = _DATE_ISO.search(text)
    if m:
        return upcoming(int(m.group(2)), int(m.group(3)), int(m.group(1))), text.replace(
            m.group(0), " ")
    m = _DATE_NUM.search(text)
    if m:
        year = m.group(3)
        y = None if year is None else (2000 + int(year) if len(year) == 2 else int(year))
        return upcoming(int(m.group(2)), int(m.group(1)), y), text.replace(m.group(0), " ")
    for m in _DATE_WORD.finditer(text):
        month = MONTHS.get(m.group(2))
        if month:
            return upcoming(month, int(m.group(1)), None), text.replace(m.group(0), " ")
    if re.search(r"\bi\s*dag\b", text):
        return today, re.sub(r"\bi\s*dag\b", " ", text)
    if re.search(r"\bi\s*overmorgen\b", text):
        return today + timedelta(days=2), re.sub(r"\bi\s*overmorgen\b", " ", text)
    if re.search(r"\bi\s*morgen\b", text):
        return today + timedelta(days=1), re.sub(r"\bi\s*morgen\b", " ", text)
    for word in re.findall(r"[a-zæøå]+", text):
        if word in WEEKDAYS:
            days = (WEEKDAYS[word] - today.weekday()) % 7 or 7
            return today + timedelta(days=days), text.replace(word, " ", 1)
    return None, text


def parse_day(text: str, now: datetime) -> date:
    """A Norwegian date without a time: «4.12», «4.12.2026», «2026-12-04», «fredag»."""
    day, rest = _date_of(text.strip().lower(), now.astimezone(OSLO).date())
    if day is None or rest.strip(" ,."):
        raise WhenError(f"«{text}» er ikke en dato; skriv den som 4.12.2026")
    return day


def parse_when(text: str, now: datetime, *, default_time: time | None = None) -> datetime:
    """A Norwegian date and time, read in Europe/Oslo; returned in UTC."""
    low = " ".join(text.casefold().replace(",", " ").split())
    today = now.astimezone(OSLO).date()
    t, rest = _time_of(low)
    d, rest = _date_of(rest, today, ahead=True)
    if d is None:
        raise WhenError(f"fant ingen dato i «{text}»; skriv for eksempel «24.11», «tirsdag» "
                        "eller «i morgen»")
    if t is None:
        if default_time is None:
            raise WhenError(f"fant ikke klokkeslett i «{text}»; skriv for eksempel «kl 10» "
                            "eller «10.30»")
        t = default_time
    leftover = [w for w in re.findall(r"\w+", rest) if w not in ("kl", "den", "på", "om")]
    if leftover:
        raise WhenError(f"skjønte ikke «{' '.join(leftover)}» i «{text}»")
    when = at_oslo(d, t)
    if when <= now:
        raise PassedError(f"{describe(when, now)} har vært. Hvilken dag og tid mente du?")
    return when


# -- veileder SMS commands -----------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    verb: str  # add | move | cancel
    phone: str
    when: datetime | None = None
    place: str | None = None


VERBS = {"møte": "add", "mote": "add", "flytt": "move", "avlys": "cancel"}


def parse_command(text: str, now: datetime) -> Command:
    """`MØTE <phone> <date> <time> [place]`, `FLYTT <phone> <date> <time> [place]`,
    `AVLYS <phone>`. Raises WhenError with a plain Norwegian message (a veileder reads it)."""
    parts = text.strip().split(maxsplit=1)
    verb = VERBS.get(parts[0].casefold()) if parts else None
    if verb is None:
        raise WhenError("start med MØTE, FLYTT eller AVLYS")
    tokens = (parts[1] if len(parts) > 1 else "").split()
    phone = None
    # the longest run of number groups at the start that is a phone number («912 34 567»)
    for n in range(min(5, len(tokens)), 0, -1):
        if not all(re.fullmatch(r"\+?\d+", t) for t in tokens[:n]):
            continue
        try:
            phone = normalise_phone(" ".join(tokens[:n]))
        except PhoneError:
            continue
        tokens = tokens[n:]
        break
    if phone is None:
        raise WhenError("skriv telefonnummeret til den unge etter kommandoen")
    try:
        valid_phone(phone)
    except PhoneError as e:
        raise WhenError(str(e)) from None
    rest = " ".join(tokens)
    if verb == "cancel":
        return Command("cancel", phone)
    when, place = split_when_place(rest, now)
    return Command(verb, phone, when, place)


def split_when_place(text: str, now: datetime) -> tuple[datetime, str | None]:
    """'24.11 10:00 NAV Gjøvik' -> (when, 'NAV Gjøvik'): the longest start that is a time."""
    words = text.split()
    for n in range(len(words), 0, -1):
        try:
            when = parse_when(" ".join(words[:n]), now)
        except PassedError:
            raise
        except WhenError:
            continue
        place = " ".join(words[n:]) or None
        return when, place
    parse_when(text, now)  # raises with the reason
    raise WhenError(f"fant ikke dato og klokkeslett i «{text}»")


def describe(when: datetime, now: datetime | None = None) -> str:
    """For confirmations to a veileder: 'tirsdag 24.11 kl. 10.00'; with `now`, the year too
    when it is another year or more than a few months away: 'lørdag 20.11.2027 kl. 10.00'."""
    local = when.astimezone(OSLO)
    names = ["mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag"]
    year = f".{local.year}" if now is not None and shows_year(when, now) else ""
    return f"{names[local.weekday()]} {local.day}.{local.month}{year} kl. {local:%H.%M}"


def shows_year(when: datetime, now: datetime) -> bool:
    """A date is said with its year when it is in another year than now, or far away."""
    return (when.astimezone(OSLO).year != now.astimezone(OSLO).year
            or abs(when - now) > SHOW_YEAR_BEYOND)

