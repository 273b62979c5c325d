"""Two `veivis run` instances on one PostgreSQL database, behind one webhook address list (a
load balancer: a webhook goes to either; when one does not answer, Twilio's retry goes to the
other). Many young people write; a fake Twilio fails a share of sends (500, 503, a timeout,
accepted-then-hang). One instance is SIGKILLed while it has messages in flight and started
again later. Judged from the fake Twilio and the database:

- every webhook Twilio got a 200 for is in the message log once (processed once);
- every outgoing row is sent, with its own message at Twilio, and Twilio has no message that
  no row accounts for: nothing sent twice, nothing lost, nothing stuck;
- each person's messages reached Twilio in the order they were queued;
- the killed instance's claimed-but-unsettled rows were taken over by the survivor.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from bot.app.demo import seed_demo
from bot.channels.sms import TwilioTransport
from bot.delivery.sender import Sender
from bot.engine.model import FlowSet
from bot.service.pipeline import Pipeline
from bot.service.scheduler import Ticker
from bot.store import OutboxItem
from bot.store.pg import PgStore
from bot.store.sql import iso

from .chaos import AUTH, OUR_NUMBER, PUBLIC, SID, VEILEDERE, Bot, _free_port, phone, start_time
from .conftest import NOW, ManualClock, Mirror, said_yes
from .fakes import FakeTwilio

# the full run: VEIVIS_INSTANCES_PHONES=715 (5,005 webhooks), with -o timeout=3000
PHONES = int(os.environ.get("VEIVIS_INSTANCES_PHONES", "40"))
SCRIPT = ["hei", "1", "ja", "HJELP", "VEILEDER", "Når er neste møte mitt?", "hei igjen"]
SEND_TIMEOUT = 1.0


def _env(url: str, key: Path, fake: FakeTwilio, offset: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TWILIO_", "TELEGRAM_", "VEIVIS_", "SMS_", "DIGEST_"))}
    env.update({
        "VEIVIS_DB": url, "VEIVIS_SEAL_KEY_FILE": str(key), "VEIVIS_PORT": str(_free_port()),
        "VEIVIS_PUBLIC_URL": PUBLIC, "VEIVIS_CLOCK_OFFSET": f"{offset:.3f}",
        "VEIVIS_SHUTDOWN_SECONDS": "5", "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": AUTH,
        "TWILIO_FROM": OUR_NUMBER, "TWILIO_API_URL": fake.url, "SMS_RATE": "40",
        "SEND_TIMEOUT": f"{SEND_TIMEOUT:g}", "SMS_CHECK_SECONDS": "0.5",
        "OUTBOX_MAX_TRIES": "12", "VEIVIS_FLOWS": str(Path(__file__).parent.parent / "flows"),
    })
    return env


def _rows(url: str, sql: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as c:
        return list(c.execute(sql, args).fetchall())


async def test_two_instances_one_killed_mid_send_every_message_once_in_order(
        pg_url: str, tmp_path: Path) -> None:
    key = tmp_path / "seal-key"
    os.environ["VEIVIS_SEAL_KEY_FILE"] = str(key)  # seeded with the instances' key
    try:
        store = await PgStore.open(pg_url)
    finally:
        del os.environ["VEIVIS_SEAL_KEY_FILE"]
    office = await store.add_office("NAV Gjøvik")
    vids = [await store.add_veileder(n, p, office) for n, p in VEILEDERE]
    for i in range(PHONES):
        await store.add_user(phone=phone(i), channel="sms", first_name=f"Ung{i}",
                             last_name="Test", veileder_id=vids[i % len(vids)],
                             now=datetime.now(UTC))
    await store.close()

    offset = (start_time(datetime.now(UTC)) - datetime.now(UTC)).total_seconds()
    rng = random.Random(19)
    async with FakeTwilio(SID, AUTH, seed=19) as fake:
        # Twilio stamps its messages with the real time (the default); the instances' clock
        # runs `offset` ahead, and their lookups compare in Twilio's time
        fake.public_url = PUBLIC
        fake.hang_seconds = SEND_TIMEOUT * 3
        fake.fail.rate, fake.fail.kinds = 0.15, ("500", "503", "timeout", "hang", "hang")
        bots = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            bots.append(Bot(tmp_path / name, _env(pg_url, key, fake, offset)))
        await asyncio.gather(*(b.start() for b in bots))
        a, b = bots

        acknowledged: set[str] = set()
        total = PHONES * len(SCRIPT)

        async def text(sender: str, body: str) -> None:
            """Twilio: sent (same id) until an instance answers 200; either instance."""
            sid = f"SM{rng.getrandbits(64):016x}{len(acknowledged):016x}"
            while True:
                live = [x for x in bots if x.up.is_set()]
                bot = rng.choice(live) if live else None
                status = 0
                if bot is not None:
                    try:
                        status, _ = await fake.sms(bot.url, PUBLIC, sender, body, sid=sid)
                    except (TimeoutError, aiohttp.ClientError, OSError):
                        status = 0
                if status == 200:
                    acknowledged.add(sid)
                    return
                await asyncio.sleep(0.05)

        async def person(i: int) -> None:
            for body in SCRIPT:
                await asyncio.sleep(rng.uniform(0, 0.2))
                await text(phone(i), body)

        in_flight: list[int] = []
        taken_over: list[bool] = []

        async def killer() -> None:
            """Once a third of the webhooks are in: SIGKILL whichever instance holds claimed,
            unsettled rows at that moment; start it again after another third."""
            deadline = time.monotonic() + 120
            while True:
                assert time.monotonic() < deadline, "no send was ever in flight"
                held = _rows(pg_url, "SELECT id, claimed_by FROM outbox "
                             "WHERE status = 'sending'") if len(acknowledged) >= total // 3 \
                    else []
                # claimed_by: host-pid-random (bot/store/pg.py)
                victims = [x for x in bots for _, by in held
                           if x.proc is not None and str(by).split("-")[-2] == str(x.proc.pid)]
                if victims:
                    victim = victims[0]
                    await victim.kill()
                    in_flight.extend(int(r) for r, by in held
                                     if str(by).split("-")[-2] == str(victim.proc.pid))
                    break
                await asyncio.sleep(0.01)
            # the survivor alone must settle what the dead one held: it is started again only
            # after none of its rows is left 'sending' (a row leaves 'sending' by a take-over,
            # or as 'sent' by a delivery report Twilio sends for it)
            deadline = time.monotonic() + 60
            while True:
                states = _rows(pg_url, "SELECT status FROM outbox WHERE id = ANY(%s)",
                               in_flight)
                if any(s != "sending" and s != "sent" for s, in states):
                    taken_over.append(True)
                if all(s != "sending" for s, in states):
                    break
                assert time.monotonic() < deadline, f"never taken over: {states}"
                await asyncio.sleep(0.05)
            while len(acknowledged) < 2 * total // 3:
                await asyncio.sleep(0.05)
            await victim.start()

        await asyncio.wait_for(asyncio.gather(killer(), *(person(i) for i in range(PHONES))),
                               max(300, PHONES * 2))
        # settled: nothing left to send, twice in a row a moment apart
        # (the number sends 40 a second, for both instances together)
        deadline, calm = time.monotonic() + max(120, total * 3 / 40), 0
        while calm < 2:
            left = _rows(pg_url, "SELECT COUNT(*) FROM outbox WHERE status IN "
                         "('pending', 'sending', 'unsure')")[0][0]
            calm = calm + 1 if left == 0 else 0
            assert time.monotonic() < deadline, f"not settled: {left} rows left"
            await asyncio.sleep(0.3)
        codes = [await x.stop() for x in bots]
        stderr = a.stderr() + b.stderr()

    assert codes == [0, 0], stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    # processed once: every acknowledged webhook is in the log, once (the log is unique)
    logged = {str(r[0]) for r in _rows(pg_url, "SELECT provider_id FROM inbound")}
    assert len(acknowledged) == total and acknowledged <= logged
    # every row sent exactly once: its own message at Twilio, and no message without a row
    rows = _rows(pg_url, "SELECT id, status, provider_id, address FROM outbox ORDER BY id")
    assert rows and {r[1] for r in rows} == {"sent"}, {r[1] for r in rows}
    ids = [str(r[2]) for r in rows]
    at_twilio = [s.extra["sid"] for s in fake.sent]
    assert len(set(ids)) == len(ids) and sorted(ids) == sorted(at_twilio), (
        len(ids), len(at_twilio))
    # each person's messages reached Twilio in the order they were queued
    order = {sid: i for i, sid in enumerate(at_twilio)}
    by_address: dict[str, list[int]] = defaultdict(list)
    for _rid, _s, pid, address in rows:
        by_address[str(address)].append(order[str(pid)])
    for address, seq in by_address.items():
        assert seq == sorted(seq), address
    # the killed instance had sends in flight; the survivor took them over
    assert in_flight
    if taken_over:  # seen 'unsure' (or 'pending') before the victim came back
        assert "left in flight by another instance: taken over" in stderr
    # the faults really happened
    assert fake.fail.counts["hang"] and fake.fail.counts["timeout"]


async def test_two_instances_keep_one_rate_limit_for_the_number_together(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SMS_RATE is the provider's limit for our number: two instances sending at once stay
    under it together (never more than `rate` starts in any one second), and together still
    reach it."""
    monkeypatch.setenv("VEIVIS_SEAL_KEY_FILE", str(tmp_path / "seal-key"))
    rate, n = 10, 60
    stores = [await PgStore.open(pg_url) for _ in range(2)]
    now = iso(datetime.now(UTC))  # stored times are to the second
    async with stores[0].transaction() as c:
        await c.executemany("INSERT INTO outbox (channel, address, text, created_at, due_at) "
                            "VALUES ('sms', ?, ?, ?, ?)",
                            [(phone(i), f"melding {i}", now, now)
                             for i in range(n)])
    async with FakeTwilio(SID, AUTH) as fake:
        transports = [TwilioTransport(SID, AUTH, OUR_NUMBER, api_url=fake.url, timeout=5,
                                      status_callback=PUBLIC + "/twilio/status",
                                      ask_after=0.5) for _ in stores]
        senders = [Sender(s, t, lambda: datetime.now(UTC), rate=rate)
                   for s, t in zip(stores, transports, strict=True)]
        starts: list[float] = []  # when each instance hands a message to the client
        for t in transports:
            send = t.send

            async def timed(item: OutboxItem, send: Any = send) -> str:
                starts.append(time.monotonic())
                return str(await send(item))
            t.send = timed  # type: ignore[method-assign]
        await asyncio.gather(*(s.drain() for s in senders))
        for t in transports:
            await t.close()
    for s in stores:
        await s.close()
    assert len(fake.sent) == n  # each once
    # the limiter's promise is about starts (the network may bunch arrivals a little; the
    # arrivals at a fake Twilio are measured by bench/live.py)
    starts.sort()
    most = max(sum(1 for b in starts[i:] if b - a < 1.0) for i, a in enumerate(starts))
    assert most <= rate, (most, [round(b - a, 3) for a, b in itertools.pairwise(starts)])
    # together at the limit, not at half of it (one instance waiting for the other)
    assert (n - 1) / (starts[-1] - starts[0]) > 0.8 * rate
    assert all(s.stats.sent for s in senders)  # both sent


async def test_a_reminder_due_on_two_instances_that_tick_at_once_goes_out_once(
        pg_url: str, tmp_path: Path, flows: FlowSet, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIVIS_SEAL_KEY_FILE", str(tmp_path / "seal-key"))
    clock = ManualClock(NOW)
    first = await PgStore.open(pg_url)
    await seed_demo(first, clock.now)  # its preparation is due now
    await said_yes(first)
    stores = [first, await PgStore.open(pg_url)]
    pipelines = [Pipeline(s, flows, clock) for s in stores]
    for p in pipelines:
        await p.start()
    tickers = [Ticker(s, p, clock) for s, p in zip(stores, pipelines, strict=True)]
    clock.now = NOW + timedelta(minutes=1)
    results = await asyncio.gather(*(t.tick() for t in tickers))
    assert sorted(r.sent for r in results) == [0, 1]  # one instance ran the tick
    await asyncio.gather(*(t.tick() for t in tickers))  # and later ticks find it done
    texts = [str(r[0]) for r in await first.fetchall("SELECT text FROM outbox ORDER BY id")]
    assert texts == Mirror(flows, clock.now).texts("first_meeting_prep")
    for p in pipelines:
        await p.stop()
    for s in stores:
        await s.close()


async def test_a_message_queued_on_one_instance_wakes_the_senders_of_another(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIVIS_SEAL_KEY_FILE", str(tmp_path / "seal-key"))
    a, b = await PgStore.open(pg_url), await PgStore.open(pg_url)
    woken = asyncio.Event()
    await b.watch_outbox(woken.set)
    async with a.tx(NOW) as tx:  # nothing queued: no wake
        await tx.log_inbound_once("sms", "SM1", NOW)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(woken.wait(), 0.5)
    async with a.tx(NOW) as tx:
        await tx.queue_message("sms", phone(1), "hei", NOW)
    await asyncio.wait_for(woken.wait(), 5)
    await a.close()
    await b.close()


async def test_a_job_runs_on_one_instance_at_a_time_and_its_lock_dies_with_it(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIVIS_SEAL_KEY_FILE", str(tmp_path / "seal-key"))
    a, b = await PgStore.open(pg_url), await PgStore.open(pg_url)
    async with a.job_lock("purge") as mine:
        assert mine
        async with b.job_lock("purge") as theirs, b.job_lock("digest") as other:
            assert not theirs and other
    async with b.job_lock("purge") as now_theirs:
        assert now_theirs  # released when the job ended
    with pytest.raises(psycopg.OperationalError):  # what is left of `a` finds it gone
        async with a.job_lock("purge") as mine:
            assert mine
            # the instance dies mid-job (its machine is gone): its sessions end
            _rows(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE application_name = %s", f"veivis-{a.instance}")
            # pg_terminate_backend only signals: the lock goes when the session has ended
            deadline = time.monotonic() + 30
            while _rows(pg_url, "SELECT 1 FROM pg_stat_activity WHERE application_name = %s",
                        f"veivis-{a.instance}"):
                assert time.monotonic() < deadline, "the killed sessions never ended"
                await asyncio.sleep(0.01)
            async with b.job_lock("purge") as theirs:
                assert theirs  # and the lock with them
    await a.close()
    await b.close()
