"""Threads between a young person and their veileder's work phone: metadata only.

A thread has a short code per veileder (K7); a veileder can only ever find their own threads.
Events record when a message went which way ('in', 'summary', 'crisis': to the veileder;
'out': to the young person), never what it said.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import aiosqlite

from .meetings import queue_message
from .sql import iso


@dataclass(frozen=True)
class Sender:
    """Who a forward is from and where it goes."""

    user_id: int
    first_name: str | None
    last_name: str | None
    phone: str | None
    veileder_id: int | None
    veileder_name: str | None
    work_phone: str | None
    working_hours: str | None = None
    away_until: date | None = None
    backup_phone: str | None = None  # the veileder's own backup, else the office's
    office: str | None = None


@dataclass(frozen=True)
class Thread:
    id: int
    code: int
    user_id: int
    status: str
    channel: str
    address: str
    first_name: str | None
    last_name: str | None
    stopped: bool


async def sender(c: aiosqlite.Connection, user_id: int) -> Sender:
    async with c.execute(
        "SELECT u.id, u.first_name, u.last_name, u.phone, v.id, v.name, v.work_phone, "
        "v.working_hours, v.away_until, COALESCE(v.backup_phone, o.backup_phone), o.name "
        "FROM users u LEFT JOIN veiledere v ON v.id = u.veileder_id "
        "LEFT JOIN offices o ON o.id = v.office_id WHERE u.id = ?",
        (user_id,)) as cur:
        r = await cur.fetchone()
    assert r is not None
    return Sender(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                  date.fromisoformat(r[8]) if r[8] else None, r[9], r[10])


async def desk_id(c: aiosqlite.Connection, phone: str) -> int | None:
    """The veileder (or backup desk) whose work phone this is."""
    async with c.execute("SELECT id FROM veiledere WHERE work_phone = ?", (phone,)) as cur:
        r = await cur.fetchone()
    return int(r[0]) if r else None


async def events_since(c: aiosqlite.Connection, user_id: int, direction: str,
                       since: datetime) -> int:
    async with c.execute(
        "SELECT COUNT(*) FROM thread_events e JOIN threads t ON t.id = e.thread_id "
        "WHERE t.user_id = ? AND e.direction = ? AND e.at >= ?",
        (user_id, direction, iso(since))) as cur:
        r = await cur.fetchone()
    return int(r[0]) if r else 0


async def open_thread(c: aiosqlite.Connection, user_id: int, veileder_id: int,
                      now: datetime, direction: str = "in") -> int:
    """The code of the user's open thread with this veileder, opening one if needed; records
    a message to the veileder on it ('in': a forward, 'summary': answers from a flow,
    'crisis': an urgent notice)."""
    async with c.execute("SELECT id, code FROM threads WHERE user_id = ? AND veileder_id = ? "
                         "AND status = 'open'", (user_id, veileder_id)) as cur:
        row = await cur.fetchone()
    if row is None:
        async with c.execute("SELECT COALESCE(MAX(code), 0) + 1 FROM threads "
                             "WHERE veileder_id = ?", (veileder_id,)) as cur:
            nxt = await cur.fetchone()
        code = int(nxt[0]) if nxt else 1
        cur2 = await c.execute(
            "INSERT INTO threads (code, user_id, veileder_id, opened_at, last_at) "
            "VALUES (?, ?, ?, ?, ?)", (code, user_id, veileder_id, iso(now), iso(now)))
        tid = int(cur2.lastrowid or 0)
    else:
        tid, code = int(row[0]), int(row[1])
    await event(c, tid, direction, now)
    return code


async def event(c: aiosqlite.Connection, thread_id: int, direction: str, now: datetime) -> None:
    await c.execute("INSERT INTO thread_events (thread_id, at, direction) VALUES (?, ?, ?)",
                    (thread_id, iso(now), direction))
    await c.execute("UPDATE threads SET last_at = ? WHERE id = ?", (iso(now), thread_id))


_THREAD = ("SELECT t.id, t.code, t.user_id, t.status, u.channel, "
           "COALESCE(CASE WHEN u.channel = 'telegram' THEN u.telegram_chat_id END, u.phone), "
           "u.first_name, u.last_name, u.stopped FROM threads t JOIN users u ON u.id = t.user_id ")


def _thread(r: Any) -> Thread:
    return Thread(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]), str(r[5]), r[6], r[7],
                  bool(r[8]))


async def find(c: aiosqlite.Connection, veileder_id: int, code: int) -> Thread | None:
    """A thread by code, only among this veileder's own."""
    async with c.execute(_THREAD + "WHERE t.veileder_id = ? AND t.code = ?",
                         (veileder_id, code)) as cur:
        r = await cur.fetchone()
    return _thread(r) if r else None


async def open_recent(c: aiosqlite.Connection, veileder_id: int,
                      since: datetime) -> list[Thread]:
    async with c.execute(_THREAD + "WHERE t.veileder_id = ? AND t.status = 'open' "
                         "AND t.last_at >= ? ORDER BY t.last_at DESC",
                         (veileder_id, iso(since))) as cur:
        return [_thread(r) for r in await cur.fetchall()]


async def reply(c: aiosqlite.Connection, thread: Thread, text: str, now: datetime) -> None:
    """The veileder's answer, to the young person on their own channel; a closed thread that
    gets an answer is open again."""
    await queue_message(c, thread.channel, thread.address, text, now, thread.user_id)
    if thread.status != "open":
        await c.execute("UPDATE threads SET status = 'open', closed_at = NULL WHERE id = ?",
                        (thread.id,))
    await event(c, thread.id, "out", now)


async def close(c: aiosqlite.Connection, thread_id: int, now: datetime) -> None:
    await c.execute("UPDATE threads SET status = 'closed', closed_at = ? WHERE id = ?",
                    (iso(now), thread_id))


@dataclass(frozen=True)
class ThreadRow:
    code: int
    veileder: str
    user: str
    status: str
    opened_at: str
    last_at: str
    messages_in: int
    messages_out: int


async def list_threads(c: aiosqlite.Connection, *, open_only: bool = False) -> list[ThreadRow]:
    where = "WHERE t.status = 'open'" if open_only else ""
    async with c.execute(
        "SELECT t.code, v.name, COALESCE(u.first_name, '') || ' ' || "
        "COALESCE(SUBSTR(u.last_name, 1, 1) || '.', ''), t.status, t.opened_at, t.last_at, "
        "(SELECT COUNT(*) FROM thread_events e WHERE e.thread_id = t.id AND e.direction != 'out'),"
        " (SELECT COUNT(*) FROM thread_events e WHERE e.thread_id = t.id "
        "AND e.direction = 'out') FROM threads t JOIN users u ON u.id = t.user_id "
        f"JOIN veiledere v ON v.id = t.veileder_id {where} ORDER BY t.last_at DESC") as cur:
        rows = await cur.fetchall()
    return [ThreadRow(int(r[0]), str(r[1]), str(r[2]).strip(), str(r[3]), str(r[4]), str(r[5]),
                      int(r[6]), int(r[7])) for r in rows]

