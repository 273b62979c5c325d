"""Pipeline and store together: what survives a restart, what is processed once, what is kept."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import pytest

from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.engine import State, UserText, step
from bot.engine.model import FlowSet, Kind
from bot.engine.runtime import SAVE_HEAR_BACK, Forward, system_text
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.store import Changes, PgStore, Store
from bot.store.migrations import MIGRATIONS

from .conftest import NOW, ManualClock, answers, open_backend, said, said_yes

U = DEMO_USER_PHONE


def texts(h: object) -> list[str]:
    return [r.text for r in h.replies]  # type: ignore[attr-defined]


async def open_seeded(target: str | Path) -> Store:
    store = await open_backend(str(target))
    if store.created:
        await seed_demo(store, NOW)
        await said_yes(store)  # the welcome is answered
    return store


async def test_conversation_survives_a_restart(tmp_path: Path, flows: FlowSet,
                                               clock: ManualClock) -> None:
    db = tmp_path / "v.db"
    store = await open_seeded(db)
    async with Pipeline(store, flows, clock) as p:
        await p.submit(FlowRequest("console", U, "first_meeting_survey"))
        await p.submit(Inbound("console", U, "ja", "m1"))
        await p.submit(Inbound("console", U, "ja", "m2"))
    await store.close()  # the process ends here

    store = await open_seeded(db)
    assert not store.created
    async with Pipeline(store, flows, clock) as p:
        h = await p.submit(Inbound("console", U, "ja", "m3"))
    # intro, question 1 and (after the restart) question 2 answered: question 3 comes
    fourth = answers(flows.flows["first_meeting_survey"])[3][0]
    assert texts(h) == [said(flows, f"first_meeting_survey.{fourth.id}")]
    await store.close()


async def test_a_repeated_provider_id_is_processed_once(backend: str, flows: FlowSet,
                                                        clock: ManualClock) -> None:
    store = await open_seeded(backend)
    async with Pipeline(store, flows, clock) as p:
        await p.submit(FlowRequest("console", U, "menu"))
        first = await p.submit(Inbound("sms", U, "1", "SM123"))
        again = await p.submit(Inbound("sms", U, "1", "SM123"))
        # both copies in the same batch, as a retried webhook racing the first
        a, b = await asyncio.gather(p.submit(Inbound("sms", U, "hjelp", "SM9")),
                                    p.submit(Inbound("sms", U, "hjelp", "SM9")))
    assert not first.duplicate and again.duplicate and again.replies == ()
    assert sorted([a.duplicate, b.duplicate]) == [False, True]
    rows = await store.fetchall("SELECT count(*) FROM inbound WHERE provider_id = 'SM123'")
    assert rows == [(1,)]
    sent = await store.fetchall("SELECT text FROM outbox WHERE channel = 'sms'")
    assert len(sent) == 2  # one answer to '1', one help text
    await store.close()


async def everything(store: Store, target: str) -> bytes:
    """What someone holding the database has: SQLite's file and WAL as bytes; on PostgreSQL
    every row of every table as the server gives it (its files: deploy/README.md)."""
    if not isinstance(store, PgStore):
        return Path(target).read_bytes() + Path(target + "-wal").read_bytes()
    tables = [r[0] for r in await store.fetchall(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
    out = b""
    for t in tables:
        out += str(await store.fetchall(f"SELECT * FROM {t}")).encode()
    return out


async def columns(store: Store, table: str) -> list[str]:
    if not isinstance(store, PgStore):
        return [r[1] for r in await store.fetchall(f"PRAGMA table_info({table})")]
    return [r[0] for r in await store.fetchall(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", (table,))]


async def test_anonymous_answers_leave_no_text_behind(backend: str, flows: FlowSet,
                                                      clock: ManualClock) -> None:
    store = await open_seeded(backend)
    secret = "Veilederen var sen og ufin"
    # a flow with a text question as it is now: the survey, or else the feedback
    survey = flows.flows["first_meeting_survey"]
    flow = (survey if any(st.kind is Kind.TEXT for st, _ in answers(survey))
            else flows.flows["feedback"])
    given = answers(flow, secret)
    phones = [U] + [f"+4790000{n:03d}" for n in range(4)]
    async with Pipeline(store, flows, clock) as p:
        for k, phone in enumerate(phones):
            await said_yes(store, phone)
            await p.submit(FlowRequest("console", phone, flow.id))
            for i, (_, t) in enumerate(given):
                await p.submit(Inbound("console", phone, t, f"a{k}-{i}"))
            raw = await everything(store, backend)
            if k < 4:  # fewer than 5 people: sealed in the pool, readable nowhere
                assert secret.encode() not in raw
                assert await store.fetchall("SELECT count(*) FROM anonymous_answers") == [(0,)]
    assert await store.fetchall("SELECT count(*) FROM inbound") == [(0,)]  # nothing typed kept
    conv = await store.fetchall("SELECT state FROM conversations")
    assert secret not in str(conv)
    anon = await store.fetchall("SELECT flow, question, value, week, office "
                                "FROM anonymous_answers ORDER BY question")
    for st, _ in given:
        if st.kind is Kind.TEXT:  # 5 answered; not 5 from one office
            assert anon.count((flow.id, st.save, secret, "2026-W48", "Hele regionen")) == 5
    saved = [st for st, _ in given if st.save and st.save != SAVE_HEAR_BACK]
    assert len(anon) == 5 * len(saved)
    assert await store.fetchall("SELECT count(*) FROM anonymous_pool") == [(0,)]
    cols = await columns(store, "anonymous_answers")
    assert cols == ["id", "flow", "question", "value", "week", "office"]
    await store.close()


async def test_erase_removes_the_person_but_keeps_anonymous_rows(backend: str, flows: FlowSet,
                                                                 clock: ManualClock) -> None:
    store = await open_seeded(backend)
    async with Pipeline(store, flows, clock) as p:
        await p.submit(Inbound("console", U, "hei", "e1"))  # welcome, with consent
        for i, (_, t) in enumerate(answers(flows.flows["welcome"])):
            await p.submit(Inbound("console", U, t, f"e2-{i}"))
        await p.submit(FlowRequest("console", U, "first_meeting_survey"))
        await p.submit(Inbound("console", U, "ja", "e4"))
        await p.submit(Inbound("console", U, "ja", "e4b"))
        await p.submit(Inbound("console", U, "SLETT", "e5"))
        h = await p.submit(Inbound("console", U, "ja", "e6"))
        assert texts(h) == [said(flows, "system.erased")]
        # the same person writes again: a new, empty user
        h2 = await p.submit(Inbound("console", U, "hei", "e7"))
        # a retried webhook from before SLETT is still recognised
        assert (await p.submit(Inbound("console", U, "hei", "e1"))).duplicate
    assert h2.user_id != h.user_id
    for table in ("meetings", "answers"):
        assert await store.fetchall(f"SELECT count(*) FROM {table}") == [(0,)]
    assert await store.fetchall("SELECT first_name FROM users") == [(None,)]
    # her message log is gone; the ids live on only as keyed hashes, with the day
    assert await store.fetchall("SELECT * FROM inbound WHERE provider_id < 'e7'") == []
    assert await store.fetchall("SELECT COUNT(*) FROM seen_keys") == [(7,)]
    # the answer she gave waits, sealed, with nothing that says whose it is
    assert await store.fetchall("SELECT count(*) FROM anonymous_pool") == [(1,)]
    pending = await store.fetchall("SELECT user_id, text FROM outbox WHERE status = 'pending' "
                                   "AND text = ?", (said(flows, "system.erased"),))
    assert pending and pending[0][0] is None  # the confirmation still goes out
    await store.close()


async def test_many_users_at_once_each_in_order(backend: str, flows: FlowSet,
                                                clock: ManualClock) -> None:
    """Concurrent users share batches; every user's replies equal a one-by-one replay."""
    store = await open_backend(backend)
    rng = random.Random(7)
    words = ["hei", "1", "2", "3", "ja", "nei", "meny", "hjelp", "kanskje", "4", "stopp",
             "start"]
    users = [f"+47400{i:05d}" for i in range(60)]
    scripts = {u: [rng.choice(words) for _ in range(8)] for u in users}
    async with Pipeline(store, flows, clock, max_batch=32) as p:
        async def run(u: str) -> list[str]:
            out: list[str] = []
            for i, t in enumerate(scripts[u]):
                out.extend(texts(await p.submit(Inbound("sms", u, t, f"{u}-{i}"))))
            return out
        results = await asyncio.gather(*(run(u) for u in users))
        assert p.batches < 60 * 8  # group commit happened
    for u, got in zip(users, results, strict=True):
        state, expected = State(), []
        for t in scripts[u]:
            r = step(flows, state, UserText(t), NOW, {})
            state = r.state
            if any(isinstance(e, Forward) for e in r.effects):
                # the shell's part: these users have no veileder to forward to
                expected.append(system_text(flows, state.lang, "forward_no_veileder", {}))
            else:
                expected.extend(x.text for x in r.replies)
        assert got == expected, u
    await store.close()


async def test_a_failing_message_is_rolled_back_alone(tmp_path: Path, flows: FlowSet,
                                                      clock: ManualClock) -> None:
    """A write that fails half-way leaves nothing of that message and spares the others."""
    store = await open_seeded(tmp_path / "v.db")  # (SQLite's own trigger syntax)
    await store._conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON outbox WHEN NEW.address = '+4740000666' "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    async with Pipeline(store, flows, clock) as p:
        ok, bad = await asyncio.gather(
            p.submit(Inbound("sms", "+4740000001", "hei", "ok1")),
            p.submit(Inbound("sms", "+4740000666", "hei", "bad1")),
            return_exceptions=True)
    assert not isinstance(ok, BaseException) and isinstance(bad, RuntimeError)
    for table, col in (("inbound", "provider_id"), ("users", "phone")):
        rows = await store.fetchall(f"SELECT {col} FROM {table}")
        assert ("bad1",) not in rows and ("+4740000666",) not in rows
    assert ("ok1",) in await store.fetchall("SELECT provider_id FROM inbound")
    await store.close()


async def test_a_batch_takes_nothing_after_its_write(backend: str) -> None:
    """A batch's writes go with its commit: a statement after them is refused (it would
    run outside what the commit holds), the batch is rolled back, the store goes on."""
    store = await open_seeded(backend)
    with pytest.raises(RuntimeError, match="written"):
        async with store.batch(NOW) as b:
            users = await b.users_for([("sms", "+4740000777")])
            await b.write(Changes(inbound=[(users["sms", "+4740000777"].id, "sms", "w1",
                                            "hei", NOW.isoformat())]))
            await b.states([users["sms", "+4740000777"].id])
    assert await store.fetchall("SELECT 1 FROM users WHERE phone = '+4740000777'") == []
    async with store.batch(NOW) as b:
        users = await b.users_for([("sms", "+4740000777")])
        await b.write(Changes(inbound=[(users["sms", "+4740000777"].id, "sms", "w1", "hei",
                                        NOW.isoformat())]))
    assert await store.fetchall("SELECT provider_id FROM inbound WHERE provider_id = 'w1'") \
        == [("w1",)]
    await store.close()


async def test_user_stopped_outside_the_chat_gets_nothing(backend: str, flows: FlowSet,
                                                          clock: ManualClock) -> None:
    store = await open_seeded(backend)
    async with store.transaction() as c:
        await c.execute("UPDATE users SET stopped = 1")
    async with Pipeline(store, flows, clock) as p:
        h = await p.submit(FlowRequest("console", U, "first_meeting_survey"))
        h2 = await p.submit(Inbound("console", U, "hei", "s1"))
    assert h.replies == () and h2.replies == ()
    await store.close()


async def test_schema_is_migrated_once_and_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    store = await Store.open(db)
    assert store.created and await store.schema_version() == len(MIGRATIONS)
    await store.close()
    store = await Store.open(db)
    assert not store.created
    await store.close()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone() == ("wal",)


ODD = ["", "x" * 5000, "👍👍👍", "\x00\x07\x1b", "hei Привет مرحبا 你好"]


@pytest.mark.parametrize("text", ODD)
async def test_odd_messages_never_crash(backend: str, flows: FlowSet, clock: ManualClock,
                                        text: str) -> None:
    store = await open_seeded(backend)
    async with Pipeline(store, flows, clock) as p:
        await p.submit(FlowRequest("console", U, "first_meeting_survey"))
        h = await p.submit(Inbound("console", U, text, "odd"))
        h2 = await p.submit(Inbound("console", U, "ja", "after"))
    assert len(h.replies) <= 2
    assert texts(h2)  # the conversation goes on
    stored = await store.fetchall("SELECT length(text) FROM inbound WHERE provider_id = 'odd'")
    assert stored == []  # typed inside the survey: no row tied to the person at all
    await store.close()


async def test_what_was_loaded_before_the_pipeline_is_not_walked_by_the_collector(
        tmp_path: Path, flows: FlowSet, clock: ManualClock) -> None:
    """The flows and the crisis reader live as long as the process: once a pipeline runs,
    the garbage collector's full collections no longer walk them (gc.freeze); objects are
    still freed, and a new pipeline does not freeze again."""
    import gc
    import weakref

    store = await open_seeded(tmp_path / "v.db")
    async with Pipeline(store, flows, clock) as p:
        await p.submit(Inbound("console", U, "hei", "m1"))
    frozen = gc.get_freeze_count()
    assert frozen > 1000

    class Garbage:
        pass

    g = Garbage()
    g.me = g  # type: ignore[attr-defined]  # a cycle made after the freeze: still collected
    ref = weakref.ref(g)
    del g
    async with Pipeline(store, flows, clock) as p:
        await p.submit(Inbound("console", U, "hei", "m2"))
    gc.collect()
    assert ref() is None
    assert gc.get_freeze_count() <= frozen  # (frozen objects are still freed)
    await store.close()
