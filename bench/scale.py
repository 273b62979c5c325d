"""Costs that must not grow with the tables: SLETT, the daily purge, the sender's queries.

    python bench/scale.py [--rows 10000 100000] [--repeat 3]
    python bench/scale.py --rows 1000000        # once by hand: takes a few minutes to fill

For each size N it fills a fresh database through SQL (N message-log rows, N sent outbox
rows, N answers, N/10 users with N/10 meetings; a tenth of everything older than 90 days or
a year, so the purge has work) and prints medians of --repeat runs of:
- SLETT: erasing one person with 10 message-log rows, outbox rows and answers (one
  transaction, as the pipeline does it);
- purge: the whole daily purge, and its longest single transaction (the longest the
  pipeline can wait for the write lock because of it; target under 100 ms);
- heads: the sender's «oldest unsent row per address» query with 100 rows waiting;
- due: the scheduler's query for scheduled rows due now.
The target is that each is within 2x from 10k to 1M rows.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.store import Store  # noqa: E402
from bot.store import outbox as O  # noqa: E402
from bot.store.db import erase_user  # noqa: E402
from bot.store.sql import iso  # noqa: E402

NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


async def fill(store: Store, n: int) -> None:
    users = max(10, n // 10)
    old, recent = iso(NOW - timedelta(days=400)), iso(NOW - timedelta(days=1))

    def when(i: int) -> str:
        return old if i % 10 == 0 else recent

    async with store.transaction() as c:
        await c.executemany(
            "INSERT INTO users (id, phone, channel, created_at, consent) "
            "VALUES (?, ?, 'sms', ?, 1)",
            [(u, f"+479{u:07d}", when(u)) for u in range(1, users + 1)])
        await c.executemany(
            "INSERT INTO conversations (user_id, state, updated_at) VALUES (?, '{}', ?)",
            [(u, when(u)) for u in range(1, users + 1)])
        await c.executemany(
            "INSERT INTO meetings (id, user_id, starts_at, kind, status, created_at) "
            "VALUES (?, ?, ?, 'first', 'planned', ?)",
            [(m, m, when(m), when(m)) for m in range(1, users + 1)])
        await c.executemany(
            "INSERT INTO scheduled (meeting_id, slot, kind, flow, due_at, status, handled_at) "
            "VALUES (?, 'reminder', 'reminder', 'meeting_reminder', ?, ?, ?)",
            [(m, when(m), "done", when(m)) for m in range(1, users + 1)])
        await c.executemany(
            "INSERT INTO inbound (user_id, channel, provider_id, text, received_at) "
            "VALUES (?, 'sms', ?, 'hei', ?)",
            [(i % users + 1, f"SM{i:09d}", when(i)) for i in range(n)])
        await c.executemany(
            "INSERT INTO outbox (user_id, channel, address, text, created_at, due_at, status, "
            "tries, sent_at) VALUES (?, 'sms', ?, 'Hei', ?, ?, 'sent', 1, ?)",
            [(i % users + 1, f"+479{i % users + 1:07d}", when(i), when(i), when(i))
             for i in range(n)])
        await c.executemany(
            "INSERT INTO answers (user_id, flow, key, value, saved_at, meeting_id) "
            "VALUES (?, 'f', 'k', 'v', ?, ?)",
            [(i % users + 1, when(i), i % users + 1) for i in range(n)])
    await store.fetchall("ANALYZE")


def median_ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:8.1f} ms"


class Timed:
    """Wraps the store's transaction() to time each one (the write lock is held that long)."""

    def __init__(self, store: Store) -> None:
        self.longest = 0.0
        self.count = 0
        inner = store.transaction

        @asynccontextmanager
        async def timed() -> AsyncIterator[Any]:
            t0 = time.perf_counter()
            async with inner() as c:
                yield c
            self.longest = max(self.longest, time.perf_counter() - t0)
            self.count += 1

        store.transaction = timed  # type: ignore[method-assign]


async def one_size(n: int, repeat: int) -> dict[str, str]:
    slett, purge, longest, heads, due = [], [], [], [], []
    txs = 0
    for r in range(repeat):
        with tempfile.TemporaryDirectory() as d:
            store = await Store.open(str(Path(d) / "scale.db"))
            try:
                await fill(store, n)
                # SLETT: three recent users, one at a time, each in one transaction
                for uid in (n // 20 + 2 + r, n // 20 + 5 + r, n // 20 + 8 + r):
                    t0 = time.perf_counter()
                    async with store.transaction() as c:
                        await erase_user(c, store._sealer, uid, NOW)
                    slett.append(time.perf_counter() - t0)
                # the sender's queries with 100 rows waiting behind a million sent
                async with store.transaction() as c:
                    await c.executemany(
                        "INSERT INTO outbox (channel, address, text, created_at, due_at) "
                        "VALUES ('sms', ?, 'Hei', ?, ?)",
                        [(f"+4791{i:06d}", iso(NOW), iso(NOW)) for i in range(100)])
                t0 = time.perf_counter()
                got = await O.heads(store, "sms", NOW)
                heads.append(time.perf_counter() - t0)
                assert len(got) == 100, len(got)
                t0 = time.perf_counter()
                await store.due(NOW, 500)
                due.append(time.perf_counter() - t0)
                timer = Timed(store)
                t0 = time.perf_counter()
                await store.purge(NOW)
                purge.append(time.perf_counter() - t0)
                longest.append(timer.longest)
                txs = timer.count
            finally:
                await store.close()
    return {"rows": f"{n:>9,}", "SLETT": median_ms(slett), "purge": median_ms(purge),
            "longest purge tx": median_ms(longest), "purge txs": f"{txs:6d}",
            "heads": median_ms(heads), "due": median_ms(due)}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    results = [await one_size(n, a.repeat) for n in a.rows]
    keys = list(results[0])
    print("  ".join(f"{k:>16}" for k in keys))
    for res in results:
        print("  ".join(f"{res[k]:>16}" for k in keys))


if __name__ == "__main__":
    asyncio.run(main())
