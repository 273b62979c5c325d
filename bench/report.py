"""How long the resource group's report takes on a large database, against a bare SQL baseline,
measured in one run.

    python bench/report.py [--people 20000]

- report: `make_report` (reads both periods' anonymous rows, builds every question with
  small-group protection, groups feedback) and the HTML page, as `veivis report` does.
- baseline: one `SELECT flow, question, value, COUNT(*) ... GROUP BY` over the same weeks with
  the standard library's sqlite3: the least any report must do, with no protection or text.

Prints both times (best of 5) and `ratio: X.XX` (baseline time over report time; 1.0 would be
as fast as the bare query).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.engine import load  # noqa: E402
from bot.reports.digest import make_report  # noqa: E402
from bot.reports.formats import html  # noqa: E402
from bot.reports.report import period_of  # noqa: E402
from bot.store import AnonymousRow, Store  # noqa: E402
from bot.store.anonymous import write_anonymous  # noqa: E402

NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
YESNO = ["viktigst", "plan", "rettigheter", "forsto", "telefon", "neste_mote"]
OFFICES = ["NAV Gjøvik", "NAV Nordre Land", "NAV Søndre Land", "NAV Vestre Toten",
           "NAV Østre Toten"]
TOPICS = ["melding", "melding_mote", "melding_aktivitet", "melding_penger", "melding_annet"]


async def seed(store: Store, people: int, rng: random.Random) -> int:
    rows = 0
    for week in range(4):  # two periods of two weeks
        when = NOW - timedelta(weeks=4 - week)
        batch: list[AnonymousRow] = []
        for _ in range(people // 4):
            office = rng.choice(OFFICES)
            batch += [AnonymousRow("first_meeting_survey", q, rng.choice(["ja", "ja", "nei"]),
                                   office) for q in YESNO]
            batch.append(AnonymousRow("first_meeting_survey", "karakter",
                                      str(rng.randint(1, 5)), office))
            if rng.random() < 0.2:
                batch.append(AnonymousRow(  # every text different, as in real life
                    "feedback", rng.choice(TOPICS),
                    f"Kurset er for langt unna og bussen går sjelden ({rng.random():.12f}).",
                    office))
        async with store.transaction() as c:
            await write_anonymous(c, batch, when)
        rows += len(batch)
    return rows


def best(times: list[float]) -> float:
    return min(times)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=20000)
    args = ap.parse_args()
    report = load([ROOT / "flows"])
    assert report.flowset is not None
    flows = report.flowset
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "bench.db"
        store = await Store.open(db)
        n = await seed(store, args.people, random.Random(7))
        period = period_of(NOW, days=14)
        weeks = period.keys + period.before().keys
        ours: list[float] = []
        for _ in range(5):
            t = time.perf_counter()
            rep = await make_report(store, flows, NOW, period=period)
            page = html(rep)
            ours.append(time.perf_counter() - t)
        await store.close()
        con = sqlite3.connect(db)
        base: list[float] = []
        for _ in range(5):
            t = time.perf_counter()
            con.execute(
                "SELECT flow, question, value, COUNT(*) FROM anonymous_answers WHERE week IN "
                f"({','.join('?' * len(weeks))}) GROUP BY flow, question, value",
                weeks).fetchall()
            base.append(time.perf_counter() - t)
        con.close()
    print(f"rows: {n:,} anonymous answers from {args.people:,} people over 4 weeks")
    print(f"report (make_report + HTML, {len(page):,} bytes): {best(ours) * 1000:.0f} ms")
    print(f"baseline (one GROUP BY in sqlite3): {best(base) * 1000:.0f} ms")
    print(f"ratio: {best(base) / best(ours):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
