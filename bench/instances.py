"""Messages per second and reply latency with 1, 2 and 3 instances on PostgreSQL, against one
SQLite instance and a raw PostgreSQL baseline, measured in one run on this machine.

    python bench/instances.py [--messages 6000] [--users 300]

Needs PostgreSQL installed (Debian: apt-get install postgresql): it starts a throwaway
cluster (tests/pgserver.py) on 127.0.0.1 with fsync on and synchronous_commit off, the
durability SQLite has here (WAL, synchronous=NORMAL: a power cut may lose the last commits,
never corrupt). Each case gets a new database.

- sqlite x1: one process, the real Store + Pipeline + engine + outbox on a WAL file; every
  user sends their messages one after another (waiting for each reply), all users at once.
- postgresql xN: N processes (instances), each with its own PgStore + Pipeline, the users
  split between them; the same messages. Wall time from a common start to the last reply.
- raw postgresql: the same kinds of rows per message (inbound log, conversation state,
  outbox row), one transaction per message, with psycopg and no engine, N=1 connection per
  user group, as many groups as the 1-instance case has users at once: what the server
  alone gives for this work. It leaves out the engine, the batching and the write lock.

Latency: per message, from submit to the reply (p50 / p95), inside the instance.
What limits it: every write transaction of the service takes one advisory lock (bot/store/
pg.py), so writes from all instances are serialised, as SQLite serialises them; more
instances add availability and spread the engine's CPU, not write throughput. On this
2-core machine the instances and the server share the same cores.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the same traffic as bench/pipeline.py (this folder is on sys.path when run as a script)
from pipeline import NOW, messages_for  # noqa: E402

from bot.engine import load  # noqa: E402
from bot.service.pipeline import Inbound, Pipeline  # noqa: E402
from bot.store import open_store  # noqa: E402


async def _instance(target: str, script: dict[str, list[str]], start: Any) -> tuple[
        float, float, list[float]]:
    report = load([ROOT / "flows"])
    assert report.flowset is not None
    store = await open_store(target)
    lat: list[float] = []
    async with Pipeline(store, report.flowset, lambda: NOW) as p:
        async def user(phone: str, msgs: list[str]) -> None:
            for i, t in enumerate(msgs):
                t0 = time.perf_counter()
                await p.submit(Inbound("sms", phone, t, f"{phone}-{i}"))
                lat.append(time.perf_counter() - t0)
        start.wait()
        t0 = time.time()
        await asyncio.gather(*(user(u, m) for u, m in script.items()))
        t1 = time.time()
    await store.close()
    return t0, t1, lat


def _worker(target: str, key: str, script: dict[str, list[str]], start: Any, out: Any) -> None:
    os.environ["VEIVIS_SEAL_KEY_FILE"] = key
    out.put(asyncio.run(_instance(target, script, start)))


def run_instances(target: str, key: str, script: dict[str, list[str]], n: int) -> dict[
        str, float]:
    """n instance processes, the users split between them; all start together."""
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    phones = list(script)
    shares = [{p: script[p] for p in phones[i::n]} for i in range(n)]
    procs = [ctx.Process(target=_worker, args=(target, key, s, start, out)) for s in shares]
    for pr in procs:
        pr.start()
    time.sleep(3.0)  # each opens its store and loads the flows before the common start
    start.set()
    results = [out.get(timeout=900) for _ in procs]
    for pr in procs:
        pr.join()
    total = sum(len(v) for v in script.values())
    wall = max(r[1] for r in results) - min(r[0] for r in results)
    lat = sorted(x for r in results for x in r[2])
    return {"msgs": total, "rate": total / wall, "p50": statistics.median(lat) * 1000,
            "p95": lat[int(len(lat) * 0.95)] * 1000}


async def raw_postgres(url: str, script: dict[str, list[str]]) -> dict[str, float]:
    """The same rows per message with psycopg, one transaction each, no engine; 20
    connections (a pool's worth) shared by the users."""
    import json

    import psycopg

    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(20)]
    state = json.dumps({"flow": "welcome", "step": "q1", "answers": {"a": "ja"}})
    queue: asyncio.Queue[psycopg.AsyncConnection[Any]] = asyncio.Queue()
    for c in conns:
        queue.put_nowait(c)
    ts = NOW.isoformat()
    lat: list[float] = []

    async def user(phone: str, msgs: list[str]) -> None:
        c0 = await queue.get()
        try:
            async with c0.transaction():
                cur = await c0.execute("INSERT INTO users (phone, channel, created_at) "
                                       "VALUES (%s, 'sms', %s) RETURNING id", (phone, ts))
                row = await cur.fetchone()
                assert row is not None
                uid = row[0]
        finally:
            queue.put_nowait(c0)
        for i, t in enumerate(msgs):
            t0 = time.perf_counter()
            c = await queue.get()
            try:
                async with c.transaction():
                    await c.execute("SELECT state FROM conversations WHERE user_id = %s",
                                    (uid,))
                    await c.execute("INSERT INTO inbound (user_id, channel, provider_id, text, "
                                    "received_at) VALUES (%s, 'sms', %s, %s, %s)",
                                    (uid, f"{phone}-{i}", t, ts))
                    await c.execute("INSERT INTO conversations (user_id, state, updated_at) "
                                    "VALUES (%s, %s, %s) ON CONFLICT (user_id) DO UPDATE SET "
                                    "state = excluded.state, updated_at = excluded.updated_at",
                                    (uid, state, ts))
                    await c.execute("INSERT INTO outbox (user_id, channel, address, text, "
                                    "created_at, due_at) VALUES (%s, 'sms', %s, %s, %s, %s)",
                                    (uid, phone, "Takk! Neste spørsmål kommer her.", ts, ts))
            finally:
                queue.put_nowait(c)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(user(u, m) for u, m in script.items()))
    dt = time.perf_counter() - t0
    for c in conns:
        await c.close()
    total = sum(len(v) for v in script.values())
    lat.sort()
    return {"msgs": total, "rate": total / dt, "p50": statistics.median(lat) * 1000,
            "p95": lat[int(len(lat) * 0.95)] * 1000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=6000)
    ap.add_argument("--users", type=int, default=300)
    args = ap.parse_args()
    from tests import pgserver

    script = messages_for(args.users, args.messages)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, pgserver.cluster(fsync=True) as base:
        key = str(Path(tmp) / "seal-key")
        results["sqlite x1"] = run_instances(str(Path(tmp) / "v.db"), key, script, 1)
        for n in (1, 2, 3):
            results[f"postgresql x{n}"] = run_instances(pgserver.new_database(base), key,
                                                        script, n)
        raw_url = pgserver.new_database(base)
        asyncio.run(_migrate(raw_url, key))
        results["raw postgresql"] = asyncio.run(raw_postgres(raw_url, script))
    for name, r in results.items():
        print(f"{name:16} {int(r['msgs'])} messages: {r['rate']:7,.0f} msg/s, reply latency "
              f"p50 {r['p50']:6.1f} ms, p95 {r['p95']:6.1f} ms")
    one = results["postgresql x1"]["rate"]
    print(f"ratio postgresql x2 / x1: {results['postgresql x2']['rate'] / one:.2f}")
    print(f"ratio postgresql x3 / x1: {results['postgresql x3']['rate'] / one:.2f}")
    print(f"ratio postgresql x1 / sqlite x1: {one / results['sqlite x1']['rate']:.2f}")
    print(f"ratio postgresql x1 / raw postgresql: {one / results['raw postgresql']['rate']:.2f}")


async def _migrate(url: str, key: str) -> None:
    os.environ["VEIVIS_SEAL_KEY_FILE"] = key
    store = await open_store(url)
    await store.close()


if __name__ == "__main__":
    main()
