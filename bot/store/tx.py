"""One open write transaction on the SQLite store: everything the service does inside one.

The service never sees a connection or SQL: it calls these methods, and the transaction is
committed when the `Store.tx()` block ends (rolled back if it raises). `Batch` (the pipeline's
group commit) is a `Tx` with the set-wise reads and writes of a batch added.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import aiosqlite

from ..timing.planner import Planned
from . import meetings as M
from . import threads as TH
from .seal import Sealer


class Tx:
    """What can be read and written inside one transaction."""

    def __init__(self, conn: aiosqlite.Connection, now: datetime, sealer: Sealer) -> None:
        self._c = conn
        self.now = now
        self._sealer = sealer

    def respondent(self, user_id: int) -> str:
        """An opaque token for a person, for the anonymous pool to count people by: a keyed
        hash, sealed with the answer, never stored unsealed."""
        return self._sealer.mac("respondent", str(user_id)).hex()

    # -- messages ------------------------------------------------------------------------------
    async def queue_message(self, channel: str, address: str, text: str, now: datetime,
                            user_id: int | None = None, due: datetime | None = None,
                            about: int | None = None) -> None:
        await M.queue_message(self._c, channel, address, text, now, user_id, due, about)

    async def seal_key_matches(self) -> bool:
        """False if this database's pool and keyed hashes were made with another seal key;
        the first key to open a database is recorded (as a keyed hash of a constant)."""
        want = self._sealer.mac("seal key check")
        async with self._c.execute("SELECT mac FROM seal_check WHERE id = 1") as cur:
            row = await cur.fetchone()
        if row is None:
            await self._c.execute("INSERT INTO seal_check (id, mac) VALUES (1, ?)", (want,))
            return True
        return bytes(row[0]) == want

    async def answer_once(self, parts: Sequence[str], now: datetime) -> bool:
        """True the first time these parts (e.g. channel, chat, day) are asked about: a
        keyed hash of them is kept with the day (seen_keys, 400 days), nothing else."""
        return await M.mark_once(self._c, self._sealer.mac("answered", *parts), now)

    async def log_inbound_once(self, channel: str, provider_id: str, now: datetime) -> bool:
        return await M.log_inbound_once(self._c, channel, provider_id, now,
                                        self._sealer.mac("seen", channel, provider_id))

    # -- threads with a veileder ---------------------------------------------------------------
    async def sender(self, user_id: int) -> TH.Sender:
        return await TH.sender(self._c, user_id)

    async def desk_id(self, phone: str) -> int | None:
        return await TH.desk_id(self._c, phone)

    async def events_since(self, user_id: int, direction: str, since: datetime) -> int:
        return await TH.events_since(self._c, user_id, direction, since)

    async def open_thread(self, user_id: int, veileder_id: int, now: datetime,
                          direction: str = "in") -> int:
        return await TH.open_thread(self._c, user_id, veileder_id, now, direction)

    async def find_thread(self, veileder_id: int, code: int) -> TH.Thread | None:
        return await TH.find(self._c, veileder_id, code)

    async def open_recent_threads(self, veileder_id: int, since: datetime) -> list[TH.Thread]:
        return await TH.open_recent(self._c, veileder_id, since)

    async def reply_in_thread(self, thread: TH.Thread, text: str, now: datetime) -> None:
        await TH.reply(self._c, thread, text, now)

    async def close_thread(self, thread_id: int, now: datetime) -> None:
        await TH.close(self._c, thread_id, now)

    # -- meetings ------------------------------------------------------------------------------
    async def user_for_veileder(self, phone: str, veileder_id: int, *, create: bool,
                                now: datetime) -> tuple[int, str | None] | None:
        return await M.user_for_veileder(self._c, phone, veileder_id, create=create, now=now)

    async def user_by_phone(self, phone: str) -> tuple[int, int | None] | None:
        return await M.user_by_phone(self._c, phone)

    async def meeting_count(self, user_id: int) -> int:
        return await M.meeting_count(self._c, user_id)

    async def is_work_phone(self, phone: str) -> bool:
        return await M.is_work_phone(self._c, phone)

    async def next_meeting(self, user_id: int, now: datetime) -> int | None:
        return await M.next_meeting(self._c, user_id, now)

    async def meeting_start(self, meeting_id: int) -> tuple[datetime, str, int]:
        return await M.meeting_start_in(self._c, meeting_id)

    async def add_meetings(self, meetings: Sequence[M.NewMeeting], now: datetime) -> list[int]:
        return await M.add_meetings_in(self._c, meetings, now)

    async def move_meeting(self, meeting_id: int, starts_at: datetime, place: str | None,
                           planned: Sequence[Planned], now: datetime) -> None:
        await M.move_meeting_in(self._c, meeting_id, starts_at, place, planned, now)

    async def cancel_meeting(self, meeting_id: int, notice: Planned, now: datetime) -> None:
        await M.cancel_meeting_in(self._c, meeting_id, notice, now)
