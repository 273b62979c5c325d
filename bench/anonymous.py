"""The anonymous path against the old one, in one run: what mixing and sealing cost.

    python bench/anonymous.py [--users 400] [--rounds 3]

Every user answers an anonymous survey of the bench's own (two questions: a yes/no and a
free text), all users at once, each waiting for each reply, through the real Store and
Pipeline on a WAL database file.

- new: answers sealed (AES-GCM) into the pool; a release (its own transaction) each time
  5 people have answered a question; messages typed in the flow leave a keyed hash, no
  message-log row.
- old: the design before issue 13, patched back in for comparison: every answer written at
  once to anonymous_answers in the user's own transaction, a message-log row for each
  message, and a WAL checkpoint (TRUNCATE) after every batch that wrote an answer. What it
  leaves out: the release transactions (there are none) and the sealing.

Each round runs both on fresh databases (old, new, old, new, ...); the figure is the median
round. The last line is `anonymous path: X.XX of the old one (messages/s)`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app.settings import load_flows  # noqa: E402
from bot.engine import FlowSet  # noqa: E402
from bot.service.pipeline import FlowRequest, Inbound, Pipeline  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.store import db as D  # noqa: E402
from bot.store.anonymous import write_anonymous  # noqa: E402

NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
SURVEY = """\
id: bench_survey
title: Bench
anonymous: true
steps:
  - id: q1
    ask: Fikk du et nummer du kan ringe?
    type: yesno
    save: nummer
  - id: q2
    ask: Skriv hva du synes om møtet.
    type: text
    save: tekst
  - id: takk
    say: Takk for svaret.
"""


@contextmanager
def old_design() -> Iterator[None]:
    """Patch the old anonymous path back in (for this process, for the duration)."""
    saved: dict[str, Any] = {"pool": D.pool_anonymous,
                             "release": Store.release_anonymous,
                             "forget": Store.forget_history}

    async def write_at_once(conn: Any, sealer: Any, rows: Any) -> None:
        await write_anonymous(conn, rows, NOW)

    async def no_release(self: Store, now: datetime) -> int:
        return 0

    async def truncate(self: Store) -> bool:
        await self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True

    D.pool_anonymous = write_at_once  # type: ignore[assignment]
    Store.release_anonymous = no_release  # type: ignore[method-assign]
    Store.forget_history = truncate  # type: ignore[method-assign]
    Store.history_pending = True  # type: ignore[assignment]  # the old code checkpointed
    try:
        yield
    finally:
        D.pool_anonymous = saved["pool"]
        Store.release_anonymous = saved["release"]  # type: ignore[method-assign]
        Store.forget_history = saved["forget"]  # type: ignore[method-assign]
        del Store.history_pending


async def run(db: Path, flows: FlowSet, users: int) -> tuple[float, int]:
    store = await Store.open(db)
    store.history_pending = getattr(Store, "history_pending", False)
    async with Pipeline(store, flows, lambda: NOW) as p:
        async def one(n: int) -> None:
            phone = f"+4790{n:06d}"
            await p.submit(FlowRequest("sms", phone, "bench_survey"))
            await p.submit(Inbound("sms", phone, "ja", f"{n}-a"))
            await p.submit(Inbound("sms", phone, f"Svar nummer {n}", f"{n}-b"))
        t0 = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(users)))
        dt = time.perf_counter() - t0
    rows = (await store.fetchall("SELECT COUNT(*) FROM anonymous_answers"))[0][0]
    await store.close()
    return users * 2 / dt, int(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    flows_dir = tmp / "flows"
    shutil.copytree(ROOT / "flows", flows_dir)
    (flows_dir / "bench_survey.yaml").write_text(SURVEY, encoding="utf-8")
    flows = load_flows(flows_dir)
    old: list[float] = []
    new: list[float] = []
    for r in range(args.rounds):
        with old_design():
            rate, rows = asyncio.run(run(tmp / f"old{r}.db", flows, args.users))
        old.append(rate)
        print(f"round {r + 1}: old {rate:,.0f} answers/s ({rows} rows)", flush=True)
        rate, rows = asyncio.run(run(tmp / f"new{r}.db", flows, args.users))
        new.append(rate)
        print(f"round {r + 1}: new {rate:,.0f} answers/s ({rows} rows released)", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    o, n = statistics.median(old), statistics.median(new)
    print(f"old: {o:,.0f} answers/s, new: {n:,.0f} answers/s (median of {args.rounds})")
    print(f"anonymous path: {n / o:.2f} of the old one (messages/s)")


if __name__ == "__main__":
    main()
