"""Norwegian dates, times and veileder commands, table-driven. 'Now' is Monday 23 November
2026 12.00 in Oslo."""

from __future__ import annotations

from datetime import datetime

import pytest

from bot.timing.planner import OSLO
from bot.timing.when import WhenError, parse_command, parse_when

from .conftest import NOW


def oslo(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=OSLO)


@pytest.mark.parametrize(("text", "expected"), [
    ("i morgen kl 10", oslo(2026, 11, 24, 10)),
    ("i morgen kl. 10.30", oslo(2026, 11, 24, 10, 30)),
    ("I MORGEN 10:30", oslo(2026, 11, 24, 10, 30)),
    ("imorgen 9", None),  # a bare «9» is not a time: say kl 9 or 9.00
    ("i dag kl 14", oslo(2026, 11, 23, 14)),
    ("i overmorgen kl 8", oslo(2026, 11, 25, 8)),
    ("tirsdag 10.30", oslo(2026, 11, 24, 10, 30)),
    ("mandag kl 9", oslo(2026, 11, 30, 9)),  # today is Monday: the next one
    ("fredag, kl. 13.15", oslo(2026, 11, 27, 13, 15)),
    ("24.11 10:00", oslo(2026, 11, 24, 10)),
    ("24.11. kl 10", oslo(2026, 11, 24, 10)),
    ("24/11 10.00", oslo(2026, 11, 24, 10)),
    ("1.12 kl 8", oslo(2026, 12, 1, 8)),
    ("5.1 kl 10", oslo(2027, 1, 5, 10)),  # passed this year, and next year is near
    ("24.11.2026 10:00", oslo(2026, 11, 24, 10)),
    ("3.1.27 kl 12", oslo(2027, 1, 3, 12)),
    ("2026-12-01 09:00", oslo(2026, 12, 1, 9)),
    ("4. desember kl 10", oslo(2026, 12, 4, 10)),
    ("4 des 10.00", oslo(2026, 12, 4, 10)),
    ("kl 10 i morgen", oslo(2026, 11, 24, 10)),
    ("29.3.2027 kl 2.30", oslo(2027, 3, 29, 2, 30)),
])
def test_parse_when(text: str, expected: datetime | None) -> None:
    if expected is None:
        with pytest.raises(WhenError):
            parse_when(text, NOW)
    else:
        assert parse_when(text, NOW) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("kl 10", "ingen dato"), ("i morgen", "ikke klokkeslett"), ("31.11 kl 10", "31.11 finnes ikke"),
    ("24.11 kl 25", "ikke klokkeslett"), ("snart", "ingen dato"),
    ("i morgen kl 10 kanskje", "skjønte ikke «kanskje»"),
    # passed: asked back, never booked a year later in silence
    ("20.11 kl 10", "20.11 har vært. Mente du 20.11.2027?"),
    ("1.6 kl 10", "1.6 har vært. Mente du 1.6.2027?"),
    ("i dag kl 9", "mandag 23.11 kl. 09.00 har vært"),
    ("23.11.2026 kl 11.59", "har vært"), ("2025-12-01 10:00", "har vært"),
])
def test_parse_when_errors_say_why(text: str, reason: str) -> None:
    with pytest.raises(WhenError, match=reason):
        parse_when(text, NOW)


@pytest.mark.parametrize(("text", "verb", "phone", "when", "place"), [
    ("MØTE 912 34 567 24.11 10:00 NAV Gjøvik", "add", "+4791234567", oslo(2026, 11, 24, 10),
     "NAV Gjøvik"),
    ("møte 91234567 i morgen kl 10", "add", "+4791234567", oslo(2026, 11, 24, 10), None),
    ("Mote +47 912 34 567 tirsdag 10.30 Kafé Hunndalen", "add", "+4791234567",
     oslo(2026, 11, 24, 10, 30), "Kafé Hunndalen"),
    ("FLYTT 912 34 567 25.11 12:00", "move", "+4791234567", oslo(2026, 11, 25, 12), None),
    ("AVLYS 912 34 567", "cancel", "+4791234567", None, None),
])
def test_parse_command(text: str, verb: str, phone: str, when: datetime | None,
                       place: str | None) -> None:
    c = parse_command(text, NOW)
    assert (c.verb, c.phone, c.when, c.place) == (verb, phone, when, place)


@pytest.mark.parametrize(("text", "reason"), [
    ("HEI 912 34 567", "start med MØTE"), ("MØTE", "telefonnummeret"),
    ("MØTE 123 i morgen kl 10", "telefonnummeret"), ("MØTE 912 34 567 snart", "ingen dato"),
    ("MØTE 912 34 567 i morgen", "ikke klokkeslett"),
])
def test_parse_command_errors(text: str, reason: str) -> None:
    with pytest.raises(WhenError, match=reason):
        parse_command(text, NOW)
