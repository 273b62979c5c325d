"""Throughput of the inbound pipeline against a plain sqlite3 baseline, measured in one run.

    python bench/pipeline.py [--messages 20000] [--users 500]

- pipeline: the real Store + Pipeline + engine + outbox on a WAL database file; every user
  sends their messages one after another (waiting for each reply), all users at once. Every
  statement it sends to SQLite is recorded (text, parameters, in order, with its BEGIN and
  COMMIT).
- replay (the honest baseline): the standard library's sqlite3 on a copy of the database as
  it was before the run, with the same pragmas, executing exactly the recorded statements
  with the same parameters in the same transactions (the same batches, reads fetched in
  full). What it leaves out is the pipeline's own work and nothing else: the engine's steps,
  building rows and JSON, the keyed hashes (their values are in the recorded parameters),
  asyncio and aiosqlite's hop to its thread.
- old baseline: 3 writes per message in one transaction per message, no reads (what earlier
  versions compared with: it does less work per message but 250x the commits, so the ratio
  against it says little); kept for reference.
- naive: aiosqlite with one awaited call per statement and one transaction per message
  (what the pipeline would be without group commit), for reference.
- engine: pure engine steps per second on one core (no database).

The last line is `ratio: X.XX`: pipeline messages/s over the replay's, measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiosqlite  # noqa: E402

from bot.engine import FlowSet, StartFlow, State, UserText, load, step  # noqa: E402
from bot.service.pipeline import Inbound, Pipeline  # noqa: E402
from bot.store import Store  # noqa: E402
from bot.store.db import _statements  # noqa: E402
from bot.store.migrations import MIGRATIONS  # noqa: E402
from bot.store.sql import _run_steps  # noqa: E402

NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
SCRIPT = ["hei", "2", "ja", "ja", "nei", "ja", "ja", "ja", "nei", "4", "Fint møte", "meny",
          "1", "hjelp", "meny", "3"]


def messages_for(users: int, total: int) -> dict[str, list[str]]:
    per = max(1, total // users)
    return {f"+4790{i:06d}": [SCRIPT[j % len(SCRIPT)] for j in range(per)]
            for i in range(users)}


Recorded = list[tuple[str, str, Any]]  # ("execute" | "executemany", sql, parameters)


def record(conn: Any, log: Recorded) -> None:
    """Note every statement this aiosqlite connection is given (the store's only one)."""
    execute, executemany, fetchall = conn.execute, conn.executemany, conn.execute_fetchall
    thread_call = conn._execute

    def rec_execute(sql: str, params: Any = None) -> Any:
        log.append(("execute", sql, tuple(params) if params is not None else ()))
        return execute(sql, log[-1][2])

    def rec_fetchall(sql: str, params: Any = None) -> Any:  # execute, then fetch every row
        log.append(("execute", sql, tuple(params) if params is not None else ()))
        return fetchall(sql, log[-1][2])

    def rec_executemany(sql: str, params: Any) -> Any:
        rows = [tuple(r) for r in params]
        log.append(("executemany", sql, rows))
        return executemany(sql, rows)

    def rec_thread_call(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if fn is _run_steps:  # several statements in one call to the thread (run_steps)
            db, steps = args
            steps = [(sql, [tuple(r) for r in params] if many else tuple(params), many)
                     for sql, params, many in steps]
            log.extend(("executemany" if many else "execute", sql, params)
                       for sql, params, many in steps)
            return thread_call(fn, db, steps)
        return thread_call(fn, *args, **kwargs)  # execute & co. (noted above)

    conn.execute, conn.executemany = rec_execute, rec_executemany
    conn.execute_fetchall = rec_fetchall
    conn._execute = rec_thread_call
    # any other way to send SQL would go unrecorded (and the replay would do less): none is used
    for name in ("execute_insert", "executescript"):
        setattr(conn, name, _unrecorded(name))


def _unrecorded(name: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the pipeline used {name}, which the recorder does not note")
    return refuse


async def run_pipeline(db: Path, script: dict[str, list[str]], flows: FlowSet,
                       snapshot: Path, log: Recorded) -> float:
    store = await Store.open(db)
    await store.fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(db, snapshot)  # the database as the run finds it, for the replay
    n = sum(len(v) for v in script.values())
    record(store._conn, log)
    async with Pipeline(store, flows, lambda: NOW) as p:
        async def user(phone: str, msgs: list[str]) -> None:
            for i, t in enumerate(msgs):
                await p.submit(Inbound("sms", phone, t, f"{phone}-{i}"))
        t0 = time.perf_counter()
        await asyncio.gather(*(user(u, m) for u, m in script.items()))
        dt = time.perf_counter() - t0
        batches = p.batches
    # every message is logged, or (typed inside an anonymous flow) kept as a keyed hash only
    rows = await store.fetchall("SELECT (SELECT count(*) FROM inbound) + "
                                "(SELECT count(*) FROM seen_keys)")
    assert rows[0][0] == n, rows
    await store.close()
    print(f"pipeline: {n} messages in {dt:.2f} s = {n / dt:,.0f} msg/s "
          f"({batches} transactions, {n / batches:.1f} messages each)")
    return n / dt


def run_replay(snapshot: Path, log: Recorded, n: int) -> float:
    """The pipeline's own statements, parameters and transactions, replayed with sqlite3."""
    conn = sqlite3.connect(snapshot, isolation_level=None)
    for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON",
                   "secure_delete = ON", "busy_timeout = 5000"):
        conn.execute(f"PRAGMA {pragma}")
    begins = sum(1 for kind, sql, _ in log if sql.startswith("BEGIN"))
    t0 = time.perf_counter()
    for kind, sql, params in log:
        if kind == "execute":
            conn.execute(sql, params).fetchall()
        else:
            conn.executemany(sql, params)
    dt = time.perf_counter() - t0
    conn.close()
    print(f"replay (sqlite3, the pipeline's {len(log)} statements in {begins} transactions): "
          f"{n} messages in {dt:.2f} s = {n / dt:,.0f} msg/s")
    return n / dt


def _schema(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    for sql in MIGRATIONS:
        for stmt in _statements(sql):
            conn.execute(stmt)


STATE_JSON = json.dumps({"flow": "first_meeting_survey", "version": "0123456789ab",
                         "step": "plan", "greeted": True, "started_at": NOW.isoformat()})
REPLY = "Fikk du se planen din, og hørte du at det er din plan?"


def run_baseline(db: Path, script: dict[str, list[str]]) -> float:
    ids = _baseline_db(db, script)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous = NORMAL")
    now = NOW.isoformat()
    order = [(u, i, msgs[i]) for i in range(max(map(len, script.values())))
             for u, msgs in script.items() if i < len(msgs)]
    t0 = time.perf_counter()
    for u, i, t in order:
        uid = ids[u]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO inbound (user_id, channel, provider_id, text, received_at) "
                     "VALUES (?, 'sms', ?, ?, ?)", (uid, f"{u}-{i}", t, now))
        conn.execute("INSERT INTO conversations (user_id, state, updated_at) VALUES (?, ?, ?) "
                     "ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, "
                     "updated_at = excluded.updated_at", (uid, STATE_JSON, now))
        conn.execute("INSERT INTO outbox (user_id, channel, address, text, created_at, due_at) "
                     "VALUES (?, 'sms', ?, ?, ?, ?)", (uid, u, REPLY, now, now))
        conn.execute("COMMIT")
    dt = time.perf_counter() - t0
    conn.close()
    n = len(order)
    print(f"old baseline (sqlite3, 3 writes, 1 transaction/message): {n} messages in {dt:.2f} s "
          f"= {n / dt:,.0f} msg/s")
    return n / dt


def _baseline_db(db: Path, script: dict[str, list[str]]) -> dict[str, int]:
    """Schema plus one user per phone, as the pipeline creates them; returns phone -> id."""
    conn = sqlite3.connect(db, isolation_level=None)
    _schema(conn)
    now = NOW.isoformat()
    conn.executemany("INSERT INTO users (phone, channel, created_at) VALUES (?, 'sms', ?)",
                     [(phone, now) for phone in script])
    ids = {phone: uid for phone, uid in conn.execute("SELECT phone, id FROM users")}
    conn.close()
    return ids


async def run_naive(db: Path, script: dict[str, list[str]]) -> float:
    ids = _baseline_db(db, script)
    conn = await aiosqlite.connect(db, isolation_level=None)
    await conn.execute("PRAGMA synchronous = NORMAL")
    now = NOW.isoformat()
    n = sum(len(v) for v in script.values())
    lock = asyncio.Lock()  # one connection: one transaction at a time

    async def one(phone: str, i: int, text: str) -> None:
        async with lock:
            uid = ids[phone]
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute("INSERT INTO inbound (user_id, channel, provider_id, text, "
                               "received_at) VALUES (?, 'sms', ?, ?, ?)",
                               (uid, f"{phone}-{i}", text, now))
            await conn.execute("INSERT INTO conversations (user_id, state, updated_at) "
                               "VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
                               "state = excluded.state, updated_at = excluded.updated_at",
                               (uid, STATE_JSON, now))
            await conn.execute("INSERT INTO outbox (user_id, channel, address, text, "
                               "created_at, due_at) VALUES (?, 'sms', ?, ?, ?, ?)",
                               (uid, phone, REPLY, now, now))
            await conn.execute("COMMIT")

    async def user(phone: str, msgs: list[str]) -> None:
        for i, t in enumerate(msgs):
            await one(phone, i, t)

    t0 = time.perf_counter()
    await asyncio.gather(*(user(u, m) for u, m in script.items()))
    dt = time.perf_counter() - t0
    await conn.close()
    print(f"naive (aiosqlite, a call per statement): {n} messages in {dt:.2f} s "
          f"= {n / dt:,.0f} msg/s")
    return n / dt


def run_engine(flows: FlowSet, answers: int) -> float:
    start = step(flows, State(consent=True), StartFlow("first_meeting_survey"), NOW, {}).state
    inputs = ["ja", "jepp", "ja", "nei", "ja", "ok", "nope", "4", "Fint møte"]
    t0 = time.perf_counter()
    done = 0
    while done < answers:
        state = step(flows, start, UserText("ja"), NOW, {}).state
        for t in inputs[1:]:
            state = step(flows, state, UserText(t), NOW, {}).state
        done += len(inputs)
    dt = time.perf_counter() - t0
    print(f"engine: {done} answers in {dt:.2f} s = {done / dt:,.0f} answers/s (one core)")
    return done / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--engine-answers", type=int, default=200_000)
    ap.add_argument("--no-naive", action="store_true")
    a = ap.parse_args()
    report = load([ROOT / "flows"])
    assert report.flowset is not None
    script = messages_for(a.users, a.messages)
    with tempfile.TemporaryDirectory() as d:
        run_engine(report.flowset, a.engine_answers)
        old = run_baseline(Path(d) / "base.db", script)
        if not a.no_naive:
            naive = asyncio.run(run_naive(Path(d) / "naive.db", script))
            print(f"naive / old baseline: {naive / old:.2f}")
        log: Recorded = []
        snapshot = Path(d) / "replay.db"
        pipe = asyncio.run(run_pipeline(Path(d) / "pipe.db", script, report.flowset,
                                        snapshot, log))
        base = run_replay(snapshot, log, sum(len(v) for v in script.values()))
    print(f"pipeline / old baseline: {pipe / old:.2f}")
    print(f"ratio: {pipe / base:.2f}")


if __name__ == "__main__":
    main()
