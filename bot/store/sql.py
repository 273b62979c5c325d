"""Small helpers shared by the SQLite store's modules."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import aiosqlite

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


# One statement for `run_steps`: its SQL, its parameters (for `executemany`: one sequence of
# parameters a row) and whether it is run once per row (executemany) or once (its rows read).
Step = tuple[str, Any, bool]


def _run_steps(db: sqlite3.Connection, steps: Sequence[Step]) -> list[list[Any] | None]:
    """On the database's thread: the statements in order; each one's rows (None for an
    executemany)."""
    out: list[list[Any] | None] = []
    for sql, params, many in steps:
        if many:
            db.executemany(sql, params)
            out.append(None)
        else:
            out.append(db.execute(sql, params).fetchall())
    return out


async def run_steps(conn: aiosqlite.Connection, steps: Sequence[Step]) -> list[Any]:
    """Run these statements in order, as `execute_fetchall` / `executemany` would one after
    another, in one call to the database's thread (aiosqlite: one hop, not one each). The
    PostgreSQL store's connection runs them one after another (`PgConn.run_steps`). The first
    failure is raised; the statements before it have run (the caller's transaction rolls them
    back)."""
    c: Any = conn  # the PostgreSQL store's PgConn stands in for aiosqlite's connection
    if isinstance(c, aiosqlite.Connection):
        run: Any = c._execute  # aiosqlite's own way to its thread (execute uses it)
        return cast(list[Any], await run(_run_steps, c._conn, steps))
    return cast(list[Any], await c.run_steps(steps))
