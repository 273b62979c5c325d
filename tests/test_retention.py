"""The retention purge keeps the welcome text's promise: logs are gone after 90 days."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.engine.model import FlowSet
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.store import Store

from .conftest import NOW, ManualClock, Mirror, open_backend, said_yes


async def test_old_logs_and_meetings_go_anonymous_rows_stay(backend: str, flows: FlowSet,
                                                            clock: ManualClock) -> None:
    store = await open_backend(backend)
    await seed_demo(store, NOW)
    await said_yes(store)
    async with Pipeline(store, flows, clock) as p:
        await p.submit(Inbound("console", DEMO_USER_PHONE, "hei", "old1"))
        await p.submit(FlowRequest("console", DEMO_USER_PHONE, "first_meeting_survey"))
        await p.submit(Inbound("console", DEMO_USER_PHONE, "ja", "old2"))
        await p.submit(Inbound("console", DEMO_USER_PHONE, "ja", "old3"))
        await store.mark_sent([r[0] for r in await store.fetchall("SELECT id FROM outbox")], NOW)
    counts = await store.purge(NOW + timedelta(days=89))
    assert counts["inbound"] == 0 and counts["outbox"] == 0
    counts = await store.purge(NOW + timedelta(days=91))
    # 90 days with no message, no conversation and no meeting: the person is deleted, as
    # the welcome says, with their log, messages and meeting
    assert counts["users"] == 1
    for table in ("users", "inbound", "outbox", "meetings", "conversations"):
        assert await store.fetchall(f"SELECT count(*) FROM {table}") == [(0,)], table
    assert await store.fetchall("SELECT count(*) FROM anonymous_pool") == [(1,)]
    await store.close()


async def test_apscheduler_wakes_the_ticker(backend: str, flows: FlowSet,
                                            clock: ManualClock) -> None:
    """The real AsyncIOScheduler: the safety job ticks at once, the preparation goes out, and
    a one-off wake-up is planned for the next due row; the daily purge job is there. (The
    bot's clock is the fixed Monday noon, so the preparation is not held by quiet hours.)"""
    import asyncio

    from bot.service.scheduler import Ticker, start_scheduler

    store = await open_backend(backend)
    await seed_demo(store, clock.now)  # its preparation is due now
    await said_yes(store)  # (else the welcome comes first)
    async with Pipeline(store, flows, clock) as p:
        sched = start_scheduler(Ticker(store, p, clock))
        try:
            async def prep_sent() -> None:
                while not await store.fetchall("SELECT 1 FROM outbox"):
                    await asyncio.sleep(0.05)
            await asyncio.wait_for(prep_sent(), timeout=10)
            async def wake_planned() -> None:
                while sched.get_job("wake") is None:
                    await asyncio.sleep(0.05)
            await asyncio.wait_for(wake_planned(), timeout=10)
            assert {j.id for j in sched.get_jobs()} >= {"safety", "purge", "wake"}
        finally:
            sched.shutdown(wait=False)
    rows = await store.fetchall("SELECT text FROM outbox ORDER BY id")
    assert [r[0] for r in rows] == Mirror(flows, clock.now).texts("first_meeting_prep")
    await store.close()


async def test_a_stop_lets_the_tick_in_progress_finish(
        flows: FlowSet, clock: ManualClock, caplog: pytest.LogCaptureFixture) -> None:
    """`veivis run` stopping (SIGTERM, or a port in use right after the start) while a tick
    is working: the tick ends as it would have, and nothing is cut off or logged as failed.
    APScheduler's own shutdown cancels running jobs mid-way."""
    from bot.service.scheduler import Ticker, start_scheduler

    store = await Store.open(":memory:")
    async with Pipeline(store, flows, clock) as p:
        ticker = Ticker(store, p, clock)
        started, release, finished = asyncio.Event(), asyncio.Event(), []

        async def slow_tick() -> None:
            started.set()
            await release.wait()
            await asyncio.sleep(0)
            finished.append(True)
        ticker.tick = slow_tick  # type: ignore[method-assign,assignment]
        sched = start_scheduler(ticker)
        await asyncio.wait_for(started.wait(), 10)
        stopping = asyncio.create_task(sched.stop(10))
        await asyncio.sleep(0)
        assert not stopping.done()  # waits for the tick
        release.set()
        await asyncio.wait_for(stopping, 10)
        assert finished == [True] and not sched.running
    await store.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_an_active_person_stays_and_old_logs_go(backend: str, flows: FlowSet,
                                                       clock: ManualClock) -> None:
    store = await open_backend(backend)
    await seed_demo(store, NOW)
    async with Pipeline(store, flows, clock) as p:
        await p.submit(Inbound("console", DEMO_USER_PHONE, "hei", "old1"))
        await store.mark_sent([r[0] for r in await store.fetchall("SELECT id FROM outbox")], NOW)
        clock.now = NOW + timedelta(days=60)  # she writes again two months later
        await p.submit(Inbound("console", DEMO_USER_PHONE, "hei igjen", "new1"))
    counts = await store.purge(NOW + timedelta(days=91))
    assert counts["users"] == 0 and counts["inbound"] == 1  # the old message goes, she stays
    assert await store.fetchall("SELECT provider_id FROM inbound") == [("new1",)]
    await store.close()


async def test_the_purge_works_in_short_transactions(tmp_path: Path, flows: FlowSet) -> None:
    """The purge never holds the write lock for the whole job: 25 old log rows go 10 at a
    time, each chunk committed on its own (the pipeline can take the lock between them; the
    time per chunk is in bench/scale.py), and a message arriving during the purge is handled
    and kept."""
    store = await Store.open(tmp_path / "v.db")
    try:
        await seed_demo(store, NOW)
        await said_yes(store)
        old = (NOW - timedelta(days=100)).isoformat()
        async with store.transaction() as c:
            await c.executemany(
                "INSERT INTO inbound (user_id, channel, provider_id, text, received_at) "
                "VALUES (NULL, 'console', ?, NULL, ?)", [(f"old-{i}", old) for i in range(25)])
        order: list[str] = []
        inner = store.transaction
        pipeline = Pipeline(store, flows, ManualClock())
        arrived: list[object] = []

        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def spy():  # type: ignore[no-untyped-def]
            async with inner() as c:
                yield c
            order.append("purge")
            if len(order) == 1:  # a young person writes after the first chunk
                arrived.append(asyncio.ensure_future(pipeline.submit(
                    Inbound("console", DEMO_USER_PHONE, "MENY", "new-1"))))
                await asyncio.sleep(0)

        store.transaction = spy  # type: ignore[method-assign]
        async with pipeline:
            counts = await store.purge(NOW, chunk=10)
            await asyncio.gather(*arrived)  # type: ignore[arg-type]
        assert counts["inbound"] == 25
        assert order.count("purge") >= 4  # 10 + 10 + 5 (+ the message's batch)
        rows = await store.fetchall("SELECT provider_id FROM inbound")
        assert rows == [("new-1",)]
    finally:
        await store.close()


async def test_every_channels_ids_outlive_the_purged_log(tmp_path: Path, flows: FlowSet,
                                                         clock: ManualClock) -> None:
    """A Telegram update id, a veileder's command and an unknown chat's message are kept
    as keyed hashes when the log goes after 90 days: replayed then, each is a duplicate."""
    from bot.app.demo import DEMO_VEILEDER_PHONE

    store = await Store.open(tmp_path / "r.db")
    await seed_demo(store, NOW)
    await said_yes(store)
    async with store.transaction() as c:  # still in touch: a meeting ahead
        await c.execute("UPDATE meetings SET starts_at = ?",
                        ((NOW + timedelta(days=200)).isoformat(),))
        await c.execute("UPDATE users SET telegram_chat_id = '555', channel = 'telegram'")
    async with Pipeline(store, flows, clock) as p:
        assert (await p.submit(Inbound("telegram", "555", "hei", "9001"))).replies
        assert (await p.submit(Inbound("sms", DEMO_VEILEDER_PHONE, "AVLYS 912 00 000",
                                       "SMv"))).replies
        async with store.tx(NOW) as tx:
            assert await tx.log_inbound_once("telegram", "9002", NOW)
    await store.purge(NOW + timedelta(days=91))
    assert await store.fetchall("SELECT count(*) FROM inbound") == [(0,)]
    assert await store.fetchall("SELECT count(*) FROM users") == [(1,)]
    clock.now = NOW + timedelta(days=91)
    async with Pipeline(store, flows, clock) as p:
        assert (await p.submit(Inbound("telegram", "555", "hei", "9001"))).duplicate
        assert (await p.submit(Inbound("sms", DEMO_VEILEDER_PHONE, "AVLYS 912 00 000",
                                       "SMv"))).duplicate
        async with store.tx(clock.now) as tx:
            assert not await tx.log_inbound_once("telegram", "9002", clock.now)
    await store.close()


async def test_another_seal_key_is_refused_and_nothing_changes(backend: str,
                                                               tmp_path: Path) -> None:
    """Found by the issue-19 attacker: an instance given another (or a newly made) seal key
    started silently and would have sealed and hashed apart from the rest. The database
    keeps a keyed hash of a constant; another key is refused at open, the first one still
    works."""
    from bot.store.pg import open_store
    from bot.store.seal import Sealer, SealError
    right, wrong = Sealer(b"\x01" * 32), Sealer(b"\x02" * 32)
    store = await open_store(backend, right)
    await store.close()
    with pytest.raises(SealError, match="seal-nøkkelen passer ikke"):
        await open_store(backend, wrong)
    store = await open_store(backend, right)
    await store.close()
