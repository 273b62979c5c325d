"""The store's interface: what the service, the reports and the CLI may ask of a database.

The SQLite store (bot.store.db) implements it; a PostgreSQL store can follow with the same
methods and pass the same conformance tests. Nothing outside bot/store sees SQL or a
connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class MeetingReads(Protocol):
    """Reads for planning meetings; both the store and an open transaction have them."""

    async def user_by_phone(self, phone: str) -> tuple[int, int | None] | None: ...
    async def meeting_count(self, user_id: int) -> int: ...
    async def next_meeting(self, user_id: int, now: datetime) -> int | None: ...
    async def meeting_start(self, meeting_id: int) -> tuple[datetime, str, int]: ...
