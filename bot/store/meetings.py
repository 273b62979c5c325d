"""Meetings and what is scheduled around them: the SQL for registering, moving, cancelling,
and for claiming what is due. Every change is one transaction: nothing half-saved."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from ..timing.planner import Planned
from .sql import iso


class MeetingError(ValueError):
    """A change that cannot be made, in words a person can act on."""


@dataclass(frozen=True, slots=True)
class Due:
    id: int
    meeting_id: int
    kind: str
    flow: str | None
    due_at: datetime
    not_after: datetime | None
    meeting_status: str
    channel: str
    address: str
    discreet: bool = False


@dataclass(frozen=True, slots=True)
class MeetingRow:
    id: int
    user_phone: str | None
    user_name: str
    veileder: str | None
    starts_at: datetime
    place: str | None
    kind: str
    status: str
    reply: str | None


async def _insert_planned(c: aiosqlite.Connection, meeting_id: int,
                          planned: Sequence[Planned]) -> None:
    await c.executemany(
        "INSERT INTO scheduled (meeting_id, slot, kind, flow, due_at, not_after) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (meeting_id, slot) DO NOTHING",
        [(meeting_id, p.slot, p.kind, p.flow, iso(p.due_at),
          iso(p.not_after) if p.not_after else None) for p in planned])


@dataclass(frozen=True, slots=True)
class NewMeeting:
    user_id: int
    veileder_id: int | None
    starts_at: datetime
    place: str | None
    kind: str  # first | followup
    planned: Sequence[Planned]


async def add_meetings_in(c: aiosqlite.Connection, meetings: Sequence[NewMeeting],
                          now: datetime) -> list[int]:
    """The same, inside a (write) transaction the caller holds: ids are taken after the
    largest one, so the meetings and their plans go in with two statements in all."""
    async with c.execute("SELECT COALESCE(MAX(id), 0) FROM meetings") as cur:
        row = await cur.fetchone()
    first = int(row[0] if row else 0) + 1
    ids = list(range(first, first + len(meetings)))
    stamp = iso(now)
    await c.executemany(
        "INSERT INTO meetings (id, user_id, veileder_id, starts_at, place, kind, created_at, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(i, m.user_id, m.veileder_id, iso(m.starts_at), m.place, m.kind, stamp, stamp)
         for i, m in zip(ids, meetings, strict=True)])
    await c.executemany(
        "INSERT INTO scheduled (meeting_id, slot, kind, flow, due_at, not_after) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (meeting_id, slot) DO NOTHING",
        [(i, p.slot, p.kind, p.flow, iso(p.due_at), iso(p.not_after) if p.not_after else None)
         for i, m in zip(ids, meetings, strict=True) for p in m.planned])
    return ids


async def _meeting_status(c: aiosqlite.Connection, meeting_id: int) -> str:
    async with c.execute("SELECT status FROM meetings WHERE id = ?", (meeting_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise MeetingError(f"møte {meeting_id} finnes ikke")
    return str(row[0])


async def move_meeting_in(c: aiosqlite.Connection, meeting_id: int, starts_at: datetime,
                          place: str | None, planned: Sequence[Planned], now: datetime) -> None:
    """Move a meeting: its pending scheduled rows go, the new plan comes in (slots already
    done, such as the preparation, are not planned again)."""
    if await _meeting_status(c, meeting_id) != "planned":
        raise MeetingError(f"møte {meeting_id} er avlyst; registrer et nytt")
    await c.execute("DELETE FROM scheduled WHERE meeting_id = ? AND status = 'pending'",
                    (meeting_id,))
    await c.execute("UPDATE meetings SET starts_at = ?, place = COALESCE(?, place), "
                    "updated_at = ? WHERE id = ?", (iso(starts_at), place, iso(now), meeting_id))
    await _insert_planned(c, meeting_id, planned)


async def cancel_meeting_in(c: aiosqlite.Connection, meeting_id: int, notice: Planned,
                            now: datetime) -> None:
    """Cancel: no pending reminder survives; one cancellation message is scheduled."""
    if await _meeting_status(c, meeting_id) != "planned":
        raise MeetingError(f"møte {meeting_id} er allerede avlyst")
    await c.execute("DELETE FROM scheduled WHERE meeting_id = ? AND status = 'pending'",
                    (meeting_id,))
    await c.execute("UPDATE meetings SET status = 'cancelled', updated_at = ? WHERE id = ?",
                    (iso(now), meeting_id))
    await _insert_planned(c, meeting_id, [notice])


async def meeting_start_in(c: aiosqlite.Connection, meeting_id: int) -> tuple[datetime, str, int]:
    """(start, kind, user id) of a meeting."""
    async with c.execute("SELECT starts_at, kind, user_id FROM meetings WHERE id = ?",
                         (meeting_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise MeetingError(f"møte {meeting_id} finnes ikke")
    return datetime.fromisoformat(row[0]), str(row[1]), int(row[2])


async def user_by_phone(c: aiosqlite.Connection, phone: str) -> tuple[int, int | None] | None:
    """(user id, veileder id) of the young person with this phone."""
    async with c.execute("SELECT id, veileder_id FROM users WHERE phone = ?", (phone,)) as cur:
        row = await cur.fetchone()
    return (int(row[0]), row[1]) if row else None


async def meeting_count(c: aiosqlite.Connection, user_id: int) -> int:
    """The person's meetings that were not cancelled (a first meeting called off was never
    held, so the next one is the first)."""
    async with c.execute("SELECT count(*) FROM meetings WHERE user_id = ? "
                         "AND status != 'cancelled'", (user_id,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def is_work_phone(c: aiosqlite.Connection, phone: str) -> bool:
    """Is this a veileder's (or a backup desk's) work phone?"""
    async with c.execute("SELECT 1 FROM veiledere WHERE work_phone = ?", (phone,)) as cur:
        return await cur.fetchone() is not None


async def next_meeting(c: aiosqlite.Connection, user_id: int, now: datetime) -> int | None:
    """The user's next planned meeting."""
    async with c.execute(
            "SELECT id FROM meetings WHERE user_id = ? AND status = 'planned' AND starts_at >= ? "
            "ORDER BY starts_at LIMIT 1", (user_id, iso(now))) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else None


async def _all(c: aiosqlite.Connection, sql: str,
               params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    async with c.execute(sql, params) as cur:
        return [tuple(r) for r in await cur.fetchall()]


async def due(c: aiosqlite.Connection, now: datetime, limit: int = 10_000) -> list[Due]:
    rows = await _all(c,
        "SELECT s.id, s.meeting_id, s.kind, s.flow, s.due_at, s.not_after, m.status, "
        "u.channel, COALESCE(CASE WHEN u.channel = 'telegram' THEN u.telegram_chat_id END, "
        "u.phone), u.discreet FROM scheduled s JOIN meetings m ON m.id = s.meeting_id "
        "JOIN users u ON u.id = m.user_id "
        "WHERE s.status = 'pending' AND s.due_at <= ? ORDER BY s.due_at, s.id LIMIT ?",
        (iso(now), limit))
    return [Due(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]),
                datetime.fromisoformat(r[5]) if r[5] else None, r[6], r[7], r[8], bool(r[9]))
            for r in rows]


async def next_due(c: aiosqlite.Connection) -> datetime | None:
    rows = await _all(c, "SELECT MIN(due_at) FROM scheduled WHERE status = 'pending'")
    return datetime.fromisoformat(rows[0][0]) if rows and rows[0][0] else None


async def drop(c: aiosqlite.Connection, ids: Sequence[int], now: datetime) -> None:
    await c.executemany("UPDATE scheduled SET status = 'dropped', handled_at = ? "
                        "WHERE id = ? AND status = 'pending'", [(iso(now), i) for i in ids])


async def list_meetings(c: aiosqlite.Connection, *,
                        include_cancelled: bool = False) -> list[MeetingRow]:
    rows = await _all(c,
        "SELECT m.id, u.phone, TRIM(COALESCE(u.first_name, '') || ' ' || "
        "COALESCE(u.last_name, '')), v.name, m.starts_at, m.place, m.kind, m.status, "
        "(SELECT value FROM answers a WHERE a.meeting_id = m.id AND a.key = 'svar' "
        " ORDER BY a.id DESC LIMIT 1) "
        "FROM meetings m JOIN users u ON u.id = m.user_id "
        "LEFT JOIN veiledere v ON v.id = m.veileder_id "
        + ("" if include_cancelled else "WHERE m.status = 'planned' ") +
        "ORDER BY m.starts_at")
    return [MeetingRow(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4]), r[5], r[6], r[7],
                       r[8]) for r in rows]


# -- veileder commands (inside the desk's transaction) ------------------------------------------

async def log_inbound_once(c: aiosqlite.Connection, channel: str, provider_id: str,
                           now: datetime, seen_key: bytes) -> bool:
    """Record a provider message id with no text and no user; False if it was seen before
    (in the message log, or as its keyed hash `seen_key` after the log was purged)."""
    async with c.execute("SELECT 1 FROM inbound WHERE channel = ? AND provider_id = ? "
                         "UNION ALL SELECT 1 FROM seen_keys WHERE key = ?",
                         (channel, provider_id, seen_key)) as cur:
        if await cur.fetchone():
            return False
    await c.execute("INSERT INTO inbound (user_id, channel, provider_id, text, received_at) "
                    "VALUES (NULL, ?, ?, NULL, ?)", (channel, provider_id, iso(now)))
    return True


async def mark_once(c: aiosqlite.Connection, key: bytes, now: datetime) -> bool:
    """Keep a keyed hash with the day; False if it was there already."""
    cur = await c.execute("INSERT OR IGNORE INTO seen_keys (key, day) VALUES (?, ?)",
                          (key, now.astimezone(UTC).date().isoformat()))
    return bool(cur.rowcount)


async def queue_message(c: aiosqlite.Connection, channel: str, address: str, text: str,
                        now: datetime, user_id: int | None = None,
                        due: datetime | None = None, about: int | None = None) -> None:
    """One message into the outbox; `due`: not sent before then (a work phone after hours);
    `about`: the young person a message to someone else is about (SLETT erases it)."""
    await c.execute("INSERT INTO outbox (user_id, channel, address, text, created_at, due_at, "
                    "about_user) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (user_id, channel, address, text, iso(now), iso(max(due or now, now)),
                     about))


async def user_for_veileder(c: aiosqlite.Connection, phone: str, veileder_id: int, *,
                            create: bool, now: datetime) -> tuple[int, str | None] | None:
    """The user with this phone if they are assigned to this veileder; with `create`, a new
    one is made for a number that is not registered at all. Never assigns an existing user
    (that is the admin's: `veivis user assign`). None if they are someone else's, nobody's,
    or do not exist: the caller answers all three the same."""
    async with c.execute("SELECT id, veileder_id, first_name FROM users WHERE phone = ?",
                         (phone,)) as cur:
        row = await cur.fetchone()
    if row is not None:
        return (int(row[0]), row[2]) if row[1] == veileder_id else None
    if not create:
        return None
    cur2 = await c.execute("INSERT INTO users (phone, channel, veileder_id, created_at) "
                           "VALUES (?, 'sms', ?, ?)", (phone, veileder_id, iso(now)))
    return int(cur2.lastrowid or 0), None
