"""Reminders at scale: 100,000 meetings, then 10,000 reminders falling due at once.

    python bench/reminders.py [--meetings 100000] [--burst 10000]

Prints, in one run:
- the time to register the meetings (with their reminders, preparation and survey rows) in
  batches of 1,000 through the store, and how many scheduled rows that made;
- the resident memory (RSS) of this process with the store, the pipeline, the ticker and a
  started APScheduler holding everything (targets: under 150 MB);
- the time for one `Ticker.tick()` to claim and enqueue a burst of reminders that fall due at
  the same minute, to the outbox (target: under 2 s for 10,000);
- the lag from due time to outbox for each of them, p50 and p99 (target p99 under 2 s).
  The clock is virtual and frozen at the due minute plus the real seconds elapsed, so the lag
  is real processing time; outbox rows carry whole seconds, so the lag is read per item
  from the pipeline's completion instead (see `lag`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.engine import load  # noqa: E402
from bot.service.pipeline import Pipeline  # noqa: E402
from bot.service.scheduler import Ticker, start_scheduler  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.store import meetings as M  # noqa: E402
from bot.store.db import iso  # noqa: E402
from bot.timing.planner import OSLO, plan  # noqa: E402

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class BenchClock:
    """Frozen at `at` plus the real time since `go()`."""

    def __init__(self, at: datetime) -> None:
        self.at = at
        self.t0 = time.perf_counter()

    def go(self, at: datetime) -> None:
        self.at, self.t0 = at, time.perf_counter()

    def __call__(self) -> datetime:
        return self.at + timedelta(seconds=time.perf_counter() - self.t0)


async def main(n_meetings: int, burst: int) -> None:
    rng = random.Random(1)
    flows = load([ROOT / "flows"]).flowset
    assert flows is not None
    with tempfile.TemporaryDirectory() as d:
        store = await Store.open(Path(d) / "r.db")
        office = await store.add_office("NAV Gjøvik")
        vid = await store.add_veileder("Kari Nordmann", "+4740012345", office)
        async with store.transaction() as c:
            await c.executemany(
                "INSERT INTO users (phone, channel, first_name, veileder_id, created_at, "
                "consent) VALUES (?, 'sms', 'Ung', ?, ?, 1)",
                [(f"+479{i:07d}", vid, NOW.isoformat()) for i in range(n_meetings)])
        # the burst: `burst` meetings on Wednesday at 12.00, so their 2-hours-before reminders
        # all fall due at 10.00; the rest spread over four weeks of working hours
        burst_start = datetime(2026, 11, 25, 12, 0, tzinfo=OSLO)
        def meeting(uid: int) -> M.NewMeeting:
            if uid <= burst:
                start = burst_start
            else:
                day = rng.randint(1, 28)
                start = datetime(2026, 11, 23, rng.randint(9, 15), rng.choice([0, 30]),
                                 tzinfo=OSLO) + timedelta(days=day)
            first = rng.random() < 0.4
            return M.NewMeeting(uid, vid, start, "NAV Gjøvik", "first" if first else "followup",
                                plan(start, first, NOW))

        t0 = time.perf_counter()  # planning included: what `veivis meeting import` does
        for i in range(1, n_meetings + 1, 1000):
            chunk = [meeting(uid) for uid in range(i, min(i + 1000, n_meetings + 1))]
            async with store.tx(NOW) as tx:
                await tx.add_meetings(chunk, NOW)
        reg = time.perf_counter() - t0
        rows = (await store.fetchall("SELECT count(*) FROM scheduled "
                                     "WHERE status = 'pending'"))[0][0]
        print(f"register: {n_meetings} meetings, {rows} pending scheduled rows in {reg:.1f} s "
              f"({n_meetings / reg:,.0f} meetings/s)")
        # what falls due before the burst (preparations, earlier reminders) is set aside, so
        # the tick below measures the burst alone
        due_at = burst_start - timedelta(hours=2)
        async with store.transaction() as c:
            await c.execute("UPDATE scheduled SET status = 'dropped' WHERE status = 'pending' "
                            "AND due_at < ?", (iso(due_at - timedelta(minutes=1)),))
        clock = BenchClock(NOW)
        pipeline = Pipeline(store, flows, clock)
        await pipeline.start()
        ticker = Ticker(store, pipeline, clock)
        sched = start_scheduler(ticker, safety_interval=3600, run_now=False)
        print(f"memory: {rss_mb():.0f} MB RSS with {rows} scheduled rows, the scheduler "
              f"running (target < 150 MB)")
        # the burst
        done_at: list[float] = []
        submit = pipeline.submit

        async def timed(item):  # type: ignore[no-untyped-def]
            h = await submit(item)
            done_at.append(time.perf_counter())
            return h

        pipeline.submit = timed  # type: ignore[method-assign]
        clock.go(due_at.astimezone(UTC))
        start = time.perf_counter()
        result = await ticker.tick()
        took = time.perf_counter() - start
        out = (await store.fetchall("SELECT count(*) FROM outbox"))[0][0]
        lags = sorted(t - start for t in done_at)
        p50, p99 = lags[len(lags) // 2], lags[int(len(lags) * 0.99) - 1]
        print(f"burst: {result.sent} reminders due at once claimed and enqueued in {took:.2f} s "
              f"({out} outbox rows; target < 2 s)")
        print(f"lag due -> outbox: p50 {p50:.2f} s, p99 {p99:.2f} s (target p99 < 2 s)")
        print(f"memory after the burst: {rss_mb():.0f} MB RSS")
        sched.shutdown(wait=False)
        await pipeline.stop()
        await store.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--meetings", type=int, default=100_000)
    ap.add_argument("--burst", type=int, default=10_000)
    a = ap.parse_args()
    asyncio.run(main(a.meetings, a.burst))
