"""Small helpers shared by the SQLite store's modules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

PHONE_CHANNELS = ("sms", "console")


def iso(dt: datetime) -> str:
    """Times are stored as UTC ISO text, so they sort and compare as text."""
    if dt.tzinfo is not None:
        dt = dt.astimezone(UTC)
    return dt.isoformat(timespec="seconds")


def chunks(seq: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


async def together(*aws: Awaitable[Any]) -> list[Any]:
    """Await these at once, in the order given: statements for the database's one thread,
    which runs them in that order, in the open transaction; one wait instead of one each.
    When one fails, the first failure is raised after all have ended (the caller's
    transaction then rolls back everything)."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results
