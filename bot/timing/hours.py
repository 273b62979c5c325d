"""Who at NAV reads a message now, and if nobody does, when someone will. Pure, Oslo time.

A veileder works on weekdays within their working hours (`arbeidstid`, default 08.00-15.30),
never on Norwegian public holidays or the office's extra closed days (`stengt`). While they
are away (`borte_til`, the last day away), their messages go to the backup phone (their own
`vikar`, else the office's `reservetelefon`), which is read in ordinary office hours; with no
backup, messages wait for the veileder to come back.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Protocol

from bot.timing.planner import OSLO

DEFAULT_HOURS = (time(8, 0), time(15, 30))
_HOURS = re.compile(r"^\s*([01]?\d|2[0-3])[.:]([0-5]\d)\s*-\s*([01]?\d|2[0-3])[.:]([0-5]\d)\s*$")


def _hours(text: str | None) -> tuple[time, time] | None:
    """«08.00-15.30» -> (08:00, 15:30); None unless it reads as a start before an end."""
    m = _HOURS.match(text or "")
    if not m:
        return None
    start, end = time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4]))
    return (start, end) if start < end else None


def valid_hours(text: str) -> bool:
    return _hours(text) is not None


def parse_hours(text: str | None) -> tuple[time, time]:
    """The working hours written; missing or unreadable: the default."""
    return _hours(text) or DEFAULT_HOURS


def easter(year: int) -> date:
    """Easter Sunday (Gregorian; the anonymous algorithm in Meeus' form)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ll = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ll) // 451
    month, day = divmod(h + ll - 7 * m + 114, 31)
    return date(year, month, day + 1)


@lru_cache(maxsize=64)
def holidays(year: int) -> dict[date, str]:
    """Norway's public holidays (helligdager and the two official flag days off)."""
    e = easter(year)
    return {
        date(year, 1, 1): "første nyttårsdag",
        e - timedelta(days=3): "skjærtorsdag",
        e - timedelta(days=2): "langfredag",
        e: "første påskedag",
        e + timedelta(days=1): "andre påskedag",
        date(year, 5, 1): "første mai",
        date(year, 5, 17): "grunnlovsdagen",
        e + timedelta(days=39): "Kristi himmelfartsdag",
        e + timedelta(days=49): "første pinsedag",
        e + timedelta(days=50): "andre pinsedag",
        date(year, 12, 25): "første juledag",
        date(year, 12, 26): "andre juledag",
    }


def is_workday(d: date, closed: Collection[date] = ()) -> bool:
    return d.weekday() < 5 and d not in holidays(d.year) and d not in closed


def is_open(now: datetime, hours: tuple[time, time], closed: Collection[date] = ()) -> bool:
    local = now.astimezone(OSLO)
    return is_workday(local.date(), closed) and hours[0] <= local.time() < hours[1]


def next_open(now: datetime, hours: tuple[time, time], closed: Collection[date] = (),
              not_before: date | None = None) -> datetime:
    """The first moment from `now` (UTC) when someone with these hours reads messages; `now`
    itself if they do. `not_before`: not earlier than that day."""
    local = now.astimezone(OSLO)
    day = local.date()
    if not_before is not None and not_before > day:
        day, local = not_before, datetime.combine(not_before, time(0), OSLO)
    for _ in range(400):  # a year of closed days cannot happen; stop anyway
        if is_workday(day, closed):
            start = datetime.combine(day, hours[0], OSLO)
            end = datetime.combine(day, hours[1], OSLO)
            if local < end:
                return max(start, local).astimezone(UTC)
        day += timedelta(days=1)
        local = datetime.combine(day, time(0), OSLO)
    return now


@dataclass(frozen=True)
class Duty:
    """Where a message for a veileder goes now, and whether anyone reads it now."""

    phone: str | None  # the work phone, or the backup's while the veileder is away
    open_now: bool  # someone reads it now (a crisis notice goes only then)
    read_from: datetime | None  # when someone reads it (UTC); None: no one to send to
    away_until: date | None = None  # the veileder is away through this day
    backup: bool = False  # it goes to the backup phone

    @property
    def on_duty(self) -> bool:
        return self.phone is not None and self.open_now


class VeilederDesk(Protocol):
    """What routing needs to know about a user's veileder (a thread sender, a user context)."""

    @property
    def work_phone(self) -> str | None: ...
    @property
    def working_hours(self) -> str | None: ...
    @property
    def away_until(self) -> date | None: ...
    @property
    def backup_phone(self) -> str | None: ...


def duty(now: datetime, who: VeilederDesk, closed: Collection[date] = ()) -> Duty:
    if not who.work_phone:
        return Duty(None, False, None)
    today = now.astimezone(OSLO).date()
    away = who.away_until if who.away_until is not None and who.away_until >= today else None
    if away is not None and who.backup_phone:
        at = next_open(now, DEFAULT_HOURS, closed)
        return Duty(who.backup_phone, at <= now, at, away, True)
    hours = parse_hours(who.working_hours)
    if away is not None:  # no backup: it waits for the veileder
        return Duty(who.work_phone, False,
                    next_open(now, hours, closed, not_before=away + timedelta(days=1)), away)
    at = next_open(now, hours, closed)
    return Duty(who.work_phone, at <= now, at)
