"""Small helpers shared by the SQLite store's modules."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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

