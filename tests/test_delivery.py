"""Exactly once when it matters: the sender against a fake Twilio (and Telegram) that accepts
and then hangs, times out without accepting, or loses the process mid-request.

Crashes are made the way they happen: the sender is abandoned where it stands (its tasks
cancelled, nothing recorded) and a new one starts on the same database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.channels import telegram as T
from bot.channels.sms import TwilioTransport
from bot.delivery.sender import Sender
from bot.store import PgStore, Store

from .conftest import NOW, ManualClock, open_backend
from .fakes import FakeTelegram, FakeTwilio
from .livekit import AUTH, PUBLIC, SID, TOKEN, eventually, sms_live

PHONES = ["+4790000001", "+4790000002", "+4790000003"]


async def queue(store: Store, rows: list[tuple[str, str]], channel: str = "sms") -> None:
    async with store.transaction() as c:
        await c.executemany(
            "INSERT INTO outbox (channel, address, text, created_at, due_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(channel, a, t, NOW.isoformat(), NOW.isoformat()) for a, t in rows])


async def statuses(store: Store) -> list[tuple[str, str | None]]:
    return [(str(r[0]), r[1]) for r in await store.fetchall(
        "SELECT status, provider_id FROM outbox ORDER BY id")]


def twilio(fake: FakeTwilio, timeout: float = 0.3) -> TwilioTransport:
    return TwilioTransport(SID, AUTH, "+4759440000", status_callback=PUBLIC + "/twilio/status",
                           api_url=fake.url, timeout=timeout, ask_after=0.0)


def crash(sender: Sender) -> None:
    """The process dies: the sender stops where it stands; nothing more is recorded."""
    assert sender._task is not None
    sender._task.cancel()
    for t in list(sender._inflight):
        t.cancel()


async def after_crash(store: Store) -> Store:
    """The store the next start uses. SQLite: the same file, and the crashed sender's process
    goes on (the store stays open). PostgreSQL: a crash ends the instance's sessions with
    it, so the next start is a new instance with sessions of its own."""
    if not isinstance(store, PgStore):
        return store
    await store.close()
    new = await open_backend(store.path)
    # the server notices closed sessions a moment later; a restart takes longer than that
    gone = f"veivis-{store.instance}"
    while await new.fetchall("SELECT 1 FROM pg_stat_activity WHERE application_name = ?",
                             (gone,)):
        await asyncio.sleep(0.01)
    return new


class Gate:
    """A rate limiter the test opens one slot at a time."""

    def __init__(self) -> None:
        self.slots = asyncio.Semaphore(0)
        self.waiting = asyncio.Event()

    async def acquire(self, prepare: Callable[[], Awaitable[bool]]) -> bool:
        self.waiting.set()
        await self.slots.acquire()
        self.waiting.clear()
        return await prepare()


def exactly_once(fake: FakeTwilio, rows: list[tuple[str, str | None]]) -> None:
    """Every row sent, each with its own message at Twilio, and Twilio has nothing else."""
    assert [s for s, _ in rows] == ["sent"] * len(rows)
    assert sorted(str(p) for _, p in rows) == sorted(m.extra["sid"] for m in fake.sent)


async def test_rows_waiting_for_their_rate_slot_are_not_claimed_and_go_out_after_a_crash(
        backend: str) -> None:
    store = await open_backend(backend)
    clock = ManualClock(NOW)
    async with FakeTwilio(SID, AUTH) as fake:
        fake.clock = clock
        await queue(store, [(p, f"hei {i}") for i, p in enumerate(PHONES)])
        t = twilio(fake)
        sender = Sender(store, t, clock, rate=1, poll=0.01)
        gate = Gate()
        sender.limiter = gate  # type: ignore[assignment]
        await sender.start()
        gate.slots.release()  # one slot: the first row goes out
        await eventually(lambda: len(fake.sent) == 1)
        await eventually(lambda: sender._inflight == set() and gate.waiting.is_set())
        # the next row waits for its slot: it is not claimed, so a crash now leaves no doubt
        assert [s for s, _ in await statuses(store)] == ["sent", "pending", "pending"]
        crash(sender)
        store = await after_crash(store)
        again = Sender(store, t, clock, rate=50)
        await again.start()
        await again.drain()
        await again.stop()
        await t.close()
        exactly_once(fake, await statuses(store))
        assert fake.lists == 0  # nothing was in doubt
    await store.close()


class HeldSlot:
    """A rate limiter that claims the row first, as SharedRateLimiter does, and then holds its
    start until the test opens the slot: a row in hand, not yet handed to the provider."""

    def __init__(self) -> None:
        self.claimed = asyncio.Event()
        self.slot = asyncio.Event()

    async def acquire(self, prepare: Callable[[], Awaitable[bool]]) -> bool:
        if not await prepare():
            return False
        self.claimed.set()
        await self.slot.wait()
        return True


async def test_drain_waits_for_a_row_the_running_sender_has_claimed_but_not_yet_sent(
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """drain() promises that what is due has gone out when it returns, also when the sender's
    own loop runs (a restart: start() then drain()) and holds a claimed row waiting for its
    rate slot, which drain() cannot see as a head any more."""
    store = await open_backend(backend)
    clock = ManualClock(NOW)
    async with FakeTwilio(SID, AUTH) as fake:
        fake.clock = clock
        await queue(store, [(PHONES[0], "hei")])
        t = twilio(fake)
        sender = Sender(store, t, clock, rate=50)
        held = HeldSlot()
        sender.limiter = held  # type: ignore[assignment]
        heads = store.outbox_heads

        async def looked(*args: Any) -> list[Any]:
            got = await heads(*args)
            if held.claimed.is_set():  # drain() looked while the loop held the row
                held.slot.set()
            return got
        monkeypatch.setattr(store, "outbox_heads", looked)
        await sender.start()
        await eventually(held.claimed.is_set)
        await sender.drain()
        exactly_once(fake, await statuses(store))
        await sender.stop()
        await t.close()
    await store.close()


async def test_a_send_accepted_then_hung_is_found_at_twilio_and_not_sent_again(
        backend: str) -> None:
    store = await open_backend(backend)
    clock = ManualClock(NOW)
    async with FakeTwilio(SID, AUTH) as fake:
        fake.clock = clock
        fake.hang_seconds = 1.0  # Twilio has it; the answer comes after the client gave up
        fake.fail.queue = ["hang"]
        await queue(store, [(PHONES[0], "Husk møtet i morgen"), (PHONES[0], "Neste melding")])
        t = twilio(fake)
        sender = Sender(store, t, clock, rate=50, backoff=0.01)
        await sender.drain()
        await t.close()
        exactly_once(fake, await statuses(store))
        assert fake.texts_to(PHONES[0]) == ["Husk møtet i morgen", "Neste melding"]
        assert fake.lists == 1 and sender.stats.found == 1 and sender.stats.resent == 0
    await store.close()


async def test_a_drill_clock_ahead_of_twilio_still_finds_the_hung_send(backend: str) -> None:
    """A drill runs the bot's clock hours ahead (VEIVIS_CLOCK_OFFSET); Twilio stamps messages
    with the real time. The lookup compares in Twilio's time, so the hung send is found, not
    sent a second time (it was: its creation looked earlier than the attempt)."""
    store = await open_backend(backend)
    offset = timedelta(hours=17, minutes=26)
    clock = ManualClock(NOW + offset)
    async with FakeTwilio(SID, AUTH) as fake:
        fake.clock = lambda: NOW  # Twilio's clock is the real one
        fake.hang_seconds = 1.0
        fake.fail.queue = ["hang"]
        await queue(store, [(PHONES[0], "Husk møtet i morgen")])
        t = TwilioTransport(SID, AUTH, "+4759440000", status_callback=None, api_url=fake.url,
                            timeout=0.3, ask_after=0.0, clock_offset=offset)
        sender = Sender(store, t, clock, rate=50, backoff=0.01)
        await sender.drain()
        await t.close()
        exactly_once(fake, await statuses(store))
        assert fake.texts_to(PHONES[0]) == ["Husk møtet i morgen"]
        assert sender.stats.found == 1 and sender.stats.resent == 0
    await store.close()


async def test_a_send_that_timed_out_unaccepted_is_sent_again_after_asking(
        backend: str) -> None:
    store = await open_backend(backend)
    clock = ManualClock(NOW)
    async with FakeTwilio(SID, AUTH) as fake:
        fake.clock = clock
        fake.hang_seconds = 1.0
        fake.fail.queue = ["timeout", "503"]  # neither accepted anything
        await queue(store, [(PHONES[0], "hei")])
        t = twilio(fake)
        sender = Sender(store, t, clock, rate=50, backoff=0.01)
        await sender.drain()
        await t.close()
        exactly_once(fake, await statuses(store))
        assert fake.lists == 2 and sender.stats.resent == 2
    await store.close()


async def test_the_same_text_sent_before_is_not_taken_for_the_one_in_doubt(
        backend: str) -> None:
    """A re-asked question has the same text as the one before; the lookup must not take the
    earlier message (recorded on the earlier row) for this one."""
    store = await open_backend(backend)
    clock = ManualClock(NOW)
    async with FakeTwilio(SID, AUTH) as fake:
        fake.clock = clock
        fake.hang_seconds = 1.0
        await queue(store, [(PHONES[0], "Kommer du?"), (PHONES[0], "Kommer du?")])
        fake.fail.queue = [None, "timeout"]  # the first arrives; the second never does
        t = twilio(fake)
        sender = Sender(store, t, clock, rate=50, backoff=0.01)
        await sender.drain()
        await t.close()
        exactly_once(fake, await statuses(store))
        assert fake.texts_to(PHONES[0]) == ["Kommer du?", "Kommer du?"]
    await store.close()


@pytest.mark.parametrize("accepted", [True, False])
async def test_a_crash_mid_request_is_settled_by_asking_twilio(backend: str,
                                                               accepted: bool) -> None:
    store = await open_backend(backend)
    clock = ManualClock(NOW)
    async with FakeTwilio(SID, AUTH) as fake:
        fake.clock = clock
        fake.hang_seconds = 1.5
        fake.fail.queue = ["hang" if accepted else "timeout"]
        await queue(store, [(PHONES[0], "Velkommen"), (PHONES[1], "Hei")])
        t = twilio(fake, timeout=10)
        sender = Sender(store, t, clock, rate=50, concurrency=1, timeout=10)
        await sender.start()
        await eventually(lambda: fake.requests == 1)  # handed over; no answer yet
        crash(sender)
        assert [s for s, _ in await statuses(store)] == ["sending", "pending"]
        store = await after_crash(store)
        again = Sender(store, t, clock, rate=50)
        await again.start()
        await again.drain()
        await t.close()
        exactly_once(fake, await statuses(store))
        assert fake.lists == 1
        assert (again.stats.found, again.stats.resent) == ((1, 0) if accepted else (0, 1))
    await store.close()


async def test_lookups_that_fail_are_tried_again_and_nothing_is_sent_meanwhile(
        backend: str, caplog: pytest.LogCaptureFixture) -> None:
    store = await open_backend(backend)
    clock = ManualClock(NOW)
    async with FakeTwilio(SID, AUTH) as fake:
        fake.clock = clock
        fake.hang_seconds = 1.0
        fake.fail.queue = ["hang"]
        fake.list_fail = ["500", "429", "503"]
        await queue(store, [(PHONES[0], "hei")])
        t = twilio(fake)
        sender = Sender(store, t, clock, rate=50, backoff=0.001)
        for _ in range(4):  # the 429 asks for a second's pause
            await sender.drain()
            clock.now += timedelta(seconds=1)
        await t.close()
        exactly_once(fake, await statuses(store))
        assert fake.lists == 4 and fake.requests == 1
        assert "could not ask whether it arrived" in caplog.text
        assert "+4790000001" not in caplog.text and "hei" not in caplog.text
    await store.close()


async def test_a_status_callback_naming_the_row_settles_it_before_any_lookup(
        tmp_path: Path) -> None:
    async with sms_live(tmp_path) as (live, fake):
        fake.callbacks_to, fake.public_url, fake.callback_delay = live.url, PUBLIC, 0.0
        fake.hang_seconds = 2.0
        fake.fail.queue = ["hang"]
        status, _ = await fake.sms(live.url, PUBLIC, PHONES[0], "HJELP")
        assert status == 200
        await live.settled()
        rows = await statuses(live.store)
        exactly_once(fake, rows)
        assert fake.lists == 0
        callbacks = {m.extra["StatusCallback"] for m in fake.sent}
        ids = [r[0] for r in await live.store.fetchall("SELECT id FROM outbox ORDER BY id")]
        assert callbacks == {f"{PUBLIC}/twilio/status?row={i}" for i in ids}


async def test_telegram_cannot_be_asked_so_a_send_in_doubt_is_sent_again(
        backend: str, caplog: pytest.LogCaptureFixture) -> None:
    """The documented policy: rather twice than never."""
    caplog.set_level(logging.INFO)
    store = await open_backend(backend)
    clock = ManualClock(NOW)
    async with FakeTelegram(TOKEN) as fake:
        fake.hang_seconds = 1.0
        fake.fail.queue = ["hang"]
        await queue(store, [("777001", "Husk møtet i morgen")], channel="telegram")
        bot = T.make_bot(TOKEN, fake.url, 0.3)
        await bot.initialize()
        sender = Sender(store, T.TelegramTransport(bot), clock, rate=50, timeout=0.3,
                        backoff=0.001)
        await sender.drain()
        assert fake.texts_to(777001) == ["Husk møtet i morgen", "Husk møtet i morgen"]
        assert [s for s, _ in await statuses(store)] == ["sent"]
        assert "it may arrive twice" in caplog.text
        await bot.shutdown()
        # a crash mid-request: the row is sent again at the next start. Telegram has it and
        # holds its answer until the crash; the bot would wait 10 s for it (with the 0.3 s
        # above, a busy test could see the bot give up first and a retry be queued instead)
        fake.fail.queue = ["hang"]
        fake.hold = True
        await queue(store, [("777001", "Hei")], channel="telegram")
        bot = T.make_bot(TOKEN, fake.url, 10)
        await bot.initialize()
        sender = Sender(store, T.TelegramTransport(bot), clock, rate=50, timeout=10)
        await sender.start()
        await eventually(lambda: len(fake.texts_to(777001)) == 3)
        crash(sender)
        assert [s for s, _ in await statuses(store)] == ["sent", "sending"]  # in flight
        store = await after_crash(store)
        again = Sender(store, T.TelegramTransport(bot), clock, rate=50)
        await again.start()
        await again.drain()
        assert fake.texts_to(777001)[2:] == ["Hei", "Hei"]
        assert [s for s, _ in await statuses(store)] == ["sent", "sent"]
        await bot.shutdown()
    await store.close()


async def test_a_report_for_a_second_copy_is_logged_and_a_bad_row_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with sms_live(tmp_path) as (live, fake):
        status, _ = await fake.sms(live.url, PUBLIC, PHONES[0], "HJELP")
        assert status == 200
        await live.settled()
        rid, sid = (await live.store.fetchall("SELECT id, provider_id FROM outbox"))[0]
        params = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered",
                  "AccountSid": SID}
        path = f"/twilio/status?row={rid}"
        assert await fake.webhook(live.url, PUBLIC, path, params) == 204
        assert "went out twice" in caplog.text  # counted, never hidden
        rows = await live.store.fetchall("SELECT provider_id, delivery FROM outbox")
        assert rows == [(sid, None)]  # the row keeps its own message
        for bad in ("x1", "-1", "1e3", "9" * 30, "", "1&row=2"):
            assert await fake.webhook(live.url, PUBLIC, f"/twilio/status?row={bad}",
                                      params) == 400
        # a signature over another row does not fit this one
        sig = fake.sign(PUBLIC + f"/twilio/status?row={rid + 1}", params)
        assert await fake.webhook(live.url, PUBLIC, path, params, signature=sig) == 403


async def test_a_checkpoint_while_the_sender_reads_is_postponed_not_an_error(
        tmp_path: Path) -> None:
    """Found by the crash test: after a batch that erased someone (SLETT) the pipeline
    checkpoints the WAL; if a read of the sender's was open on the shared connection at that
    moment, SQLite said «database table is locked», the committed batch was reported as
    failed and Twilio got a 500. Now the checkpoint is postponed, as for any reader."""
    store = await Store.open(tmp_path / "v.db")
    await queue(store, [(p, "hei") for p in PHONES])
    conn = store._conn
    async with conn.execute("SELECT id FROM outbox") as cur:  # a read in progress
        await cur.fetchone()
        assert await store.forget_history() is False
        assert store.history_pending
    assert await store.forget_history() is True
    await store.close()


async def test_an_earlier_copy_of_the_text_that_veivis_has_no_record_of_is_not_taken(
        backend: str) -> None:
    """Found by the crash test: after SLETT (which deletes the person's rows) the welcome
    goes to the same number again, word for word; the lookup for the new row in doubt took
    the old message for it and the new one never went out. Only a message made after the
    attempt (within a tight clock margin) can be this row's."""
    store = await open_backend(backend)
    clock = ManualClock(NOW)
    async with FakeTwilio(SID, AUTH) as fake:
        fake.clock = clock
        fake.hang_seconds = 1.0
        await queue(store, [(PHONES[0], "Hei! Jeg er Veivis.")])
        t = twilio(fake)
        sender = Sender(store, t, clock, rate=50, backoff=0.01)
        await sender.drain()
        async with store.transaction() as c:  # SLETT: the row and its provider id are gone
            await c.execute("DELETE FROM outbox")
        clock.now += timedelta(seconds=5)  # the person writes again a few seconds later
        await queue(store, [(PHONES[0], "Hei! Jeg er Veivis.")])
        fake.fail.queue = ["timeout"]  # this time Twilio does not get it
        await sender.drain()
        await t.close()
        assert fake.texts_to(PHONES[0]) == ["Hei! Jeg er Veivis."] * 2
        exactly_once(fake, await statuses(store) + [("sent", fake.sent[0].extra["sid"])])
    await store.close()


async def test_a_row_held_for_the_morning_does_not_hold_back_one_due_now(backend: str) -> None:
    """A forward to a work phone waits for working hours; the veileder's own confirmation of
    a reply sent at 20.00 must not wait with it."""
    store = await open_backend(backend)
    now = NOW + timedelta(hours=8)  # 20.00 in Oslo
    async with store.tx(now) as tx:
        await tx.queue_message("sms", "+4790000001", "held", now,
                               due=now + timedelta(hours=12))
        await tx.queue_message("sms", "+4790000001", "now", now)
    heads = await store.outbox_heads("sms", now)
    assert [h.item.text for h in heads] == ["now"]
    later = await store.outbox_heads("sms", now + timedelta(hours=13))
    assert [h.item.text for h in later] == ["held"]
    await store.close()


async def test_a_row_waiting_to_be_tried_again_keeps_its_place(backend: str) -> None:
    store = await open_backend(backend)
    async with store.tx(NOW) as tx:
        await tx.queue_message("sms", "+4790000001", "first", NOW)
        await tx.queue_message("sms", "+4790000001", "second", NOW)
    [head] = await store.outbox_heads("sms", NOW)
    assert await store.claim_outbox(head.item.id, NOW)
    await store.record_retry(head.item.id, "HTTP 503", NOW + timedelta(seconds=30))
    assert await store.outbox_heads("sms", NOW + timedelta(seconds=1)) == []  # «second» waits
    await store.close()
