"""The store's reads and small writes for the CLI, the scheduler, reports and the digest.

A mixin of the SQLite `Store`: these methods run on its connection, each write in one
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime
from typing import Any

import aiosqlite

from . import meetings as M
from . import threads as TH
from .anonymous import counts_in_weeks
from .sql import iso


class Queries:
    """People, veiledere, meetings due, exports and report counts."""

    _conn: aiosqlite.Connection

    def transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError  # the Store provides it

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._conn.execute(sql, params) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def _dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self._conn.execute(sql, params) as cur:
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]

    # -- people --------------------------------------------------------------------------------
    async def user_exists(self, phone: str) -> bool:
        return bool(await self._all("SELECT 1 FROM users WHERE phone = ?", (phone,)))

    async def assign_user(self, phone: str, veileder_id: int, now: datetime,
                          text: Callable[[str], str]) -> tuple[bool, bool] | None:
        """Assign the young person with this phone to a veileder (the admin's explicit
        choice). When that changes who their veileder is and they have said yes to Veivis
        and not STOPP, they are told in their language (`text(lang)`), in the same
        transaction. (changed, told); None if no user has the phone."""
        async with self.transaction() as c:
            async with c.execute(
                    "SELECT id, veileder_id, channel, phone, telegram_chat_id, language, "
                    "stopped, consent FROM users WHERE phone = ?", (phone,)) as cur:
                row = await cur.fetchone()
            if row is None:
                return None
            uid, old, channel, ph, chat, lang, stopped, consent = row
            if old == veileder_id:
                return False, False
            await c.execute("UPDATE users SET veileder_id = ? WHERE id = ?", (veileder_id, uid))
            address = chat if channel == "telegram" else ph
            if stopped or consent != 1 or not address:
                return True, False
            await c.execute(
                "INSERT INTO outbox (user_id, channel, address, text, created_at, due_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", (uid, channel, address, text(str(lang)),
                                              iso(now), iso(now)))
            return True, True

    async def list_users(self) -> list[tuple[str | None, str, str, str, str | None, bool]]:
        """(phone, name, channel, language, veileder, stopped) of every user."""
        rows = await self._all(
            "SELECT u.phone, TRIM(COALESCE(u.first_name,'') || ' ' || "
            "COALESCE(u.last_name,'')), u.channel, u.language, v.name, u.stopped FROM users u "
            "LEFT JOIN veiledere v ON v.id = u.veileder_id ORDER BY u.id")
        return [(p, str(n), str(c), str(lang), v, bool(s)) for p, n, c, lang, v, s in rows]

    async def veileder_id(self, work_phone: str) -> int | None:
        rows = await self._all("SELECT id FROM veiledere WHERE work_phone = ?", (work_phone,))
        return int(rows[0][0]) if rows else None

    async def veiledere(self) -> list[tuple[int, str, str]]:
        """(id, name, work phone), by name."""
        return [(int(i), str(n), str(p)) for i, n, p in await self._all(
            "SELECT id, name, work_phone FROM veiledere ORDER BY name")]

    async def veileder_offices(self) -> list[tuple[str, str | None, str | None]]:
        """(name, work phone, office), by name."""
        return [(str(n), p, o) for n, p, o in await self._all(
            "SELECT v.name, v.work_phone, o.name FROM veiledere v "
            "LEFT JOIN offices o ON o.id = v.office_id ORDER BY v.name")]

    async def set_away(self, veileder_id: int, until: date | None) -> None:
        async with self.transaction() as c:
            await c.execute("UPDATE veiledere SET away_until = ? WHERE id = ?",
                            (until.isoformat() if until else None, veileder_id))

    async def backup_phone(self, veileder_id: int) -> str | None:
        """The veileder's own backup, else their office's."""
        rows = await self._all(
            "SELECT COALESCE(v.backup_phone, o.backup_phone) FROM veiledere v "
            "LEFT JOIN offices o ON o.id = v.office_id WHERE v.id = ?", (veileder_id,))
        return rows[0][0] if rows else None

    async def list_threads(self, *, open_only: bool = False) -> list[TH.ThreadRow]:
        return await TH.list_threads(self._conn, open_only=open_only)

    async def list_meetings(self, *, include_cancelled: bool = False) -> list[M.MeetingRow]:
        return await M.list_meetings(self._conn, include_cancelled=include_cancelled)

    async def export_user(self, phone: str) -> dict[str, Any] | None:
        """Everything stored about the person with this phone (anonymous rows hold nothing
        about anyone); None if there is no such user."""
        users = await self._dicts(
            "SELECT u.id, u.phone, u.telegram_chat_id, u.channel, u.first_name, u.last_name, "
            "u.language, u.stopped, u.consent, u.hear_back, u.created_at, v.name AS veileder "
            "FROM users u LEFT JOIN veiledere v ON v.id = u.veileder_id WHERE u.phone = ?",
            (phone,))
        if not users:
            return None
        user = users[0]
        uid = user.pop("id")
        for key in ("stopped", "consent", "hear_back"):
            user[key] = None if user[key] is None else bool(user[key])
        state = await self._dicts(
            "SELECT state, updated_at FROM conversations WHERE user_id = ?", (uid,))
        threads = await self._dicts(
            "SELECT t.id, 'K' || t.code AS code, v.name AS veileder, t.status, t.opened_at, "
            "t.closed_at FROM threads t JOIN veiledere v ON v.id = t.veileder_id "
            "WHERE t.user_id = ?", (uid,))
        for t in threads:
            t["events"] = await self._dicts("SELECT at, direction FROM thread_events "
                                            "WHERE thread_id = ? ORDER BY at", (t.pop("id"),))
        return {
            "user": user,
            "conversation": {"state": json.loads(str(state[0]["state"])),
                             "updated_at": state[0]["updated_at"]} if state else None,
            "messages_from_you": await self._dicts(
                "SELECT received_at, channel, text FROM inbound WHERE user_id = ? "
                "ORDER BY received_at", (uid,)),
            "messages_to_you": await self._dicts(
                "SELECT created_at, channel, text, status, sent_at FROM outbox "
                "WHERE user_id = ? ORDER BY id", (uid,)),
            "messages_about_you": await self._dicts(  # to the veileder's work phone
                "SELECT created_at, channel, text, status, sent_at FROM outbox "
                "WHERE about_user = ? ORDER BY id", (uid,)),
            "answers": await self._dicts("SELECT flow, key, value, saved_at FROM answers "
                                         "WHERE user_id = ? ORDER BY id", (uid,)),
            "meetings": await self._dicts("SELECT starts_at, place, kind, status FROM meetings "
                                          "WHERE user_id = ? ORDER BY starts_at", (uid,)),
            "conversations_with_veileder": threads,
        }

    # -- the scheduler -----------------------------------------------------------------------
    async def due(self, now: datetime, limit: int = 10_000) -> list[M.Due]:
        """Scheduled rows due by `now`, oldest first."""
        return await M.due(self._conn, now, limit)

    async def next_due(self) -> datetime | None:
        return await M.next_due(self._conn)

    async def drop_scheduled(self, ids: Sequence[int], now: datetime) -> None:
        if ids:
            async with self.transaction() as c:
                await M.drop(c, ids, now)

    # -- announcements, reports and the digest ---------------------------------------------
    async def hear_back_recipients(self) -> list[tuple[int, str, str]]:
        """(user id, channel, address) of everyone who said yes and has not stopped."""
        rows = await self._all(
            "SELECT id, channel, CASE WHEN channel = 'telegram' THEN telegram_chat_id "
            "ELSE phone END FROM users WHERE hear_back = 1 AND stopped = 0 ORDER BY id")
        return [(int(u), str(c), str(a)) for u, c, a in rows if a]

    async def queue_messages(self, messages: Sequence[tuple[int | None, str, str, str]],
                             now: datetime, due: datetime | None = None) -> None:
        """(user id, channel, address, text) into the outbox, in one transaction."""
        async with self.transaction() as c:
            for uid, channel, address, text in messages:
                await M.queue_message(c, channel, address, text, now, uid, due=due)

    async def anonymous_counts(self, weeks: Sequence[str]
                               ) -> list[tuple[str, str, str, str | None, int]]:
        """(flow, question, value, office, how many) in these ISO weeks."""
        return await counts_in_weeks(self._conn, weeks)

    async def digest_made(self, period: str) -> bool:
        return bool(await self._all("SELECT 1 FROM digests WHERE period = ?", (period,)))

    async def record_digest(self, period: str, messages: Sequence[tuple[str, str, str]],
                            now: datetime) -> None:
        """The digest for this period is made; (channel, address, text) to tell people, in
        the same transaction."""
        async with self.transaction() as c:
            for channel, address, text in messages:
                await M.queue_message(c, channel, address, text, now)
            await c.execute("INSERT INTO digests (period, made_at) VALUES (?, ?)",
                            (period, iso(now)))

