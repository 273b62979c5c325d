"""The one writer of anonymous data, and the pool that mixes it.

Anonymous answers (the survey, feedback) are stored with no link to the person, even for
someone who holds the database files, two copies of them taken at different times, and
every report:

1. An answer first goes into `anonymous_pool`, sealed with the key outside the database
   (bot.store.seal). The sealed row holds the flow, the question, the answer, the office and
   an opaque respondent token (a keyed hash of the user: it lets the pool count people, and
   it is never stored unsealed). The pool row gets a random id; its bytes say nothing.
2. When at least K (5) different people have answered the same question, their answers to it
   leave the pool together (`release`): shuffled, with random ids, stamped with the ISO week
   of the release (not of the answer), and with their offices only if at least K of them
   are from each office among them; otherwise all with the region (`REGION`). One release
   is one transaction that touches nothing about any person.
3. Answers to a question fewer than K people have answered stay sealed in the pool.

So whoever can tie a person to the moment they answered (the state, the outbox, the logs, a
copy of the files) can only say that their answer is one of at least K in a release.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import aiosqlite
from cryptography.exceptions import InvalidTag

from .seal import Sealer

OSLO = ZoneInfo("Europe/Oslo")
_rng = secrets.SystemRandom()


K = 5  # the fewest people whose answers to a question are released together
REGION = "Hele regionen"  # the office, when fewer than K of a release are from it


@dataclass(frozen=True, slots=True)
class AnonymousRow:
    flow: str
    question: str
    value: str
    office: str | None = None
    respondent: str = ""  # an opaque keyed hash of the person: sealed, never stored plain


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


async def pool_anonymous(conn: aiosqlite.Connection, sealer: Sealer,
                         rows: Sequence[AnonymousRow]) -> None:
    """Seal answers into the pool, inside the caller's transaction."""
    if rows:
        await conn.executemany(
            "INSERT INTO anonymous_pool (id, sealed) VALUES (?, ?)",
            [(secrets.randbits(62), sealer.seal(_padded(json.dumps(
                [r.flow, r.question, scrub(r.value), r.office, r.respondent],
                ensure_ascii=False).encode())))
             for r in rows])


# Every sealed row has the same length, whatever the question and the answer: a free-text
# answer keeps at most 2,000 characters (4 bytes each at most in UTF-8), so 8,448 bytes hold
# any of them. Without it the length of a sealed «ja» and «nei» told them apart. (JSON
# ignores the trailing spaces.)
SEALED_SIZE = 8448


def _unpadded(data: bytes) -> bytes:
    """A sealed row's JSON without its padding: the padding is spaces after the array's
    closing bracket (json.loads would skip them too, at ten times the cost)."""
    return data[:data.rindex(b"]") + 1]


def _padded(data: bytes) -> bytes:
    size = SEALED_SIZE * max(1, -(-len(data) // SEALED_SIZE))
    return data + b" " * (size - len(data))


async def release(conn: aiosqlite.Connection, sealer: Sealer, now: datetime,
                  k: int = K) -> int:
    """Move every question's answers that at least `k` people gave out of the pool, in the
    caller's transaction; returns how many rows were released."""
    async with conn.execute("SELECT id, sealed FROM anonymous_pool") as cur:
        pooled = await cur.fetchall()
    groups: dict[tuple[str, str], list[tuple[int, AnonymousRow]]] = {}
    for pid, sealed in pooled:
        try:
            flow, question, value, office, who = json.loads(_unpadded(sealer.open(bytes(sealed))))
        except (InvalidTag, ValueError):
            continue  # sealed with another key: it stays, unreadable
        groups.setdefault((flow, question), []).append(
            (int(pid), AnonymousRow(flow, question, value, office, who)))
    out: list[AnonymousRow] = []
    done: list[int] = []
    for members in groups.values():
        if len({r.respondent for _, r in members}) < k:
            continue
        by_office: dict[str | None, set[str]] = {}
        for _, r in members:
            by_office.setdefault(r.office, set()).add(r.respondent)
        # offices only if every office here has k people; otherwise all of them get the
        # region (a region row beside office rows would single out the few)
        keep = None not in by_office and all(len(p) >= k for p in by_office.values())
        for pid, r in members:
            out.append(AnonymousRow(r.flow, r.question, r.value, r.office if keep else REGION))
            done.append(pid)
    if not out:
        return 0
    await write_anonymous(conn, out, now)
    await conn.executemany("DELETE FROM anonymous_pool WHERE id = ?", [(i,) for i in done])
    return len(out)


async def write_anonymous(conn: aiosqlite.Connection, rows: Sequence[AnonymousRow],
                          now: datetime) -> None:
    """Released rows into anonymous_answers, in the caller's transaction: shuffled, random
    ids, the week of `now`. Takes no user (a respondent token, if any, is dropped)."""
    if not rows:
        return
    week = iso_week(now)
    shuffled = list(rows)
    _rng.shuffle(shuffled)
    await conn.executemany(
        "INSERT INTO anonymous_answers (id, flow, question, value, week, office) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(secrets.randbits(62), r.flow, r.question, scrub(r.value), week, r.office)
         for r in shuffled])


async def pooled_count(conn: aiosqlite.Connection) -> int:
    async with conn.execute("SELECT COUNT(*) FROM anonymous_pool") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


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
