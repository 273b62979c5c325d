"""`veivis migrate-to postgresql://...`: an SQLite database moved to PostgreSQL keeps every
row (sealed pool rows and keyed hashes byte for byte), new ids come after the old ones, and a
person's conversation goes on where it was, with the same answers as on the SQLite file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.engine.model import FlowSet
from bot.service.pipeline import Inbound, Pipeline
from bot.store import PgStore, Store
from bot.store.anonymous import AnonymousRow, pool_anonymous

from .conftest import NOW, ROOT, ManualClock, said_yes

TABLES = ["offices", "veiledere", "users", "meetings", "conversations", "inbound", "outbox",
          "answers", "anonymous_answers", "anonymous_pool", "scheduled", "invites", "threads",
          "thread_events", "digests", "seen_keys"]


def migrate_to(url: str, db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "migrate-to", url, "--db", str(db)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={k: v for k, v in os.environ.items()
                               if k != "VEIVIS_SEAL_KEY_FILE"})


async def say(store: Store, flows: FlowSet, clock: ManualClock, text: str, pid: str
              ) -> list[str]:
    async with Pipeline(store, flows, clock) as p:
        h = await p.submit(Inbound("console", DEMO_USER_PHONE, text, pid))
    return [r.text for r in h.replies]


async def test_a_conversation_goes_on_after_the_move(pg_url: str, tmp_path: Path,
                                                     flows: FlowSet, clock: ManualClock,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "v.db"
    store = await Store.open(db)
    await seed_demo(store, NOW)
    await said_yes(store)
    first = await say(store, flows, clock, "hei", "m1")
    assert first
    async with store.transaction() as c:
        await pool_anonymous(c, store._sealer, [AnonymousRow("feedback", "q", "bra", "NAV",
                                                             "r1")])
        await c.execute("INSERT INTO seen_keys (key, day) VALUES (?, ?)",
                        (bytes(range(16)), "2026-11-23"))
    before = {t: (await store.fetchall(f"SELECT COUNT(*) FROM {t}"))[0][0] for t in TABLES}
    pool = await store.fetchall("SELECT id, sealed FROM anonymous_pool")
    top = (await store.fetchall("SELECT MAX(id) FROM users"))[0][0]
    await store.close()
    reference = tmp_path / "ref.db"  # the same database, staying on SQLite
    shutil.copy(db, reference)
    shutil.copy(str(db) + ".seal-key", str(reference) + ".seal-key")

    r = migrate_to(pg_url, db)
    assert r.returncode == 0, r.stderr
    assert f"VEIVIS_SEAL_KEY_FILE={db}.seal-key" in r.stdout

    monkeypatch.setenv("VEIVIS_SEAL_KEY_FILE", f"{db}.seal-key")
    pg = await PgStore.open(pg_url)
    after = {t: (await pg.fetchall(f"SELECT COUNT(*) FROM {t}"))[0][0] for t in TABLES}
    assert after == before and before["users"] and before["outbox"] and before["anonymous_pool"]
    assert sorted((int(i), bytes(s)) for i, s in await pg.fetchall(
        "SELECT id, sealed FROM anonymous_pool")) == sorted((int(i), bytes(s)) for i, s in pool)
    assert await pg.fetchall("SELECT key FROM seen_keys") == [(bytes(range(16)),)]
    # the conversation goes on as it would have on SQLite
    ref = await Store.open(reference)
    nxt = await say(ref, flows, clock, "1", "m2")
    assert nxt and await say(pg, flows, clock, "1", "m2") == nxt
    # a retried webhook from before the move is still recognised
    assert await say(pg, flows, clock, "hei", "m1") == []
    # new people get ids after the old ones (the sequences were moved past them)
    uid = await pg.add_user(phone="+4799999999", channel="sms", first_name=None,
                            last_name=None, veileder_id=None, now=NOW)
    assert uid > top
    await ref.close()
    await pg.close()


async def test_it_refuses_a_database_that_is_not_empty(pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    store = await Store.open(db)
    await seed_demo(store, NOW)
    await store.close()
    assert migrate_to(pg_url, db).returncode == 0
    again = migrate_to(pg_url, db)
    assert again.returncode == 1 and "ikke tom" in again.stderr, again.stderr
    assert "Traceback" not in again.stderr
    bad = migrate_to("mysql://x", db)
    assert bad.returncode == 2 and "postgresql://" in bad.stderr


def test_a_postgresql_address_without_a_seal_key_or_a_server_gets_a_plain_answer(
        pg_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "VEIVIS_SEAL_KEY_FILE"}
    for url, says in ((pg_url, "VEIVIS_SEAL_KEY_FILE må peke på seglnøkkelen"),
                      ("postgresql://veivis@127.0.0.1:1/veivis", "127.0.0.1")):
        r = subprocess.run([sys.executable, "-m", "bot", "outbox", "list", "--db", url],
                           capture_output=True, text=True, cwd=ROOT, timeout=60,
                           env={**env, "VEIVIS_SEAL_KEY_FILE": str(tmp_path / "key")}
                           if url.endswith(":1/veivis") else env)
        assert r.returncode == 1 and says in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
