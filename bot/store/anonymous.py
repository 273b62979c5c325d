"""The one writer of anonymous data.

It receives no user: only the flow, the question, the value, the time (which it coarsens to the
ISO week) and the office. Rows get random ids and are inserted in random order, so neither
row ids nor insert order can be matched to a user's messages.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import aiosqlite

OSLO = ZoneInfo("Europe/Oslo")
_rng = secrets.SystemRandom()


@dataclass(frozen=True, slots=True)
class AnonymousRow:
    flow: str
    question: str
    value: str
    office: str | None = None


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_FNR = re.compile(r"(?<!\d)\d{6}\s?\d{5}(?!\d)")  # 11-digit national identity number
_PHONE = re.compile(r"(?<![\d])(?:\+|00)?(?:\d[\s.-]?){7,11}\d(?!\d)")


def scrub(text: str) -> str:
    """Mask what could name the person in a free-text answer: national ID numbers, e-mail
    addresses and phone numbers (the user is told this in the feedback flow)."""
    text = _FNR.sub("[fødselsnummer fjernet]", text)
    text = _EMAIL.sub("[e-post fjernet]", text)
    return _PHONE.sub("[nummer fjernet]", text)


def iso_week(now: datetime) -> str:
    y, w, _ = now.astimezone(OSLO).isocalendar()
    return f"{y}-W{w:02d}"


async def write_anonymous(conn: aiosqlite.Connection, rows: Sequence[AnonymousRow],
                          now: datetime) -> None:
    """Store anonymous rows inside the caller's transaction. Takes no user by design."""
    if not rows:
        return
    week = iso_week(now)
    shuffled = list(rows)
    _rng.shuffle(shuffled)
    await conn.executemany(
        "INSERT INTO anonymous_answers (id, flow, question, value, week, office) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(secrets.randbits(62), r.flow, r.question, scrub(r.value), week, r.office)
         for r in shuffled],
    )


async def counts_in_weeks(conn: aiosqlite.Connection,
                          weeks: Sequence[str]) -> list[tuple[str, str, str, str | None, int]]:
    """(flow, question, value, office, how many) in the given ISO weeks, for reports."""
    if not weeks:
        return []
    async with conn.execute(
        "SELECT flow, question, value, office, COUNT(*) FROM anonymous_answers WHERE week IN "
        f"({','.join('?' * len(weeks))}) GROUP BY flow, question, value, office",
        list(weeks)) as cur:
        return [(str(a), str(b), str(c), d, int(n)) for a, b, c, d, n in await cur.fetchall()]
