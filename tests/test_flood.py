"""Nobody can run up the bill (issue 16, finding 4), through the real HTTP route: signed
Twilio webhooks on loopback, the pipeline, the outbox and the sender against a fake Twilio.
The old service sent 1,001 SMS for 1,000 messages from one number, and two per new number.
(`bench/flood.py` measures the same floods, with the old behaviour beside them.)"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import timedelta
from pathlib import Path

import aiohttp

from bot.app.demo import seed_demo
from bot.store import Store

from .conftest import NOW, said_yes
from .fakes import FakeTwilio
from .livekit import PUBLIC, SID, sms_live

FLOODER = "+4798000000"


async def flood(url: str, fake: FakeTwilio, messages: list[tuple[str, str]],
                concurrency: int = 16) -> None:
    """POST each (from, text) as Twilio would, signed, a few at a time; each must get 200."""
    queue = list(reversed(messages))
    async with aiohttp.ClientSession() as s:
        async def worker() -> None:
            while queue:
                sender, text = queue.pop()
                sid = "SM" + secrets.token_hex(16)
                params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": SID,
                          "From": sender, "To": "+4759440000", "Body": text, "NumMedia": "0"}
                headers = {"X-Twilio-Signature": fake.sign(PUBLIC + "/twilio/sms", params)}
                async with s.post(url + "/twilio/sms", data=params, headers=headers) as r:
                    await r.read()
                    assert r.status == 200
        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def seed(store: Store) -> None:
    await seed_demo(store, NOW, channel="sms")
    await said_yes(store, FLOODER, channel="sms")
    async with store.transaction() as c:  # the flooder has used Veivis for a while
        await c.execute("UPDATE users SET created_at = ?",
                        ((NOW - timedelta(days=30)).isoformat(),))


async def test_one_number_sending_a_thousand_messages_is_capped(tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed, LIMIT_PER_MINUTE="30", LIMIT_PER_DAY="150") as (
            live, fake):
        t0 = time.monotonic()
        texts = ["hei", "MENY", "HJELP", "1", "ja", "hva?"]
        await flood(live.url, fake, [(FLOODER, texts[i % len(texts)]) for i in range(1000)])
        minutes = (time.monotonic() - t0) / 60
        await live.settled()
        inbound = await live.store.fetchall("SELECT count(*) FROM inbound")
        assert inbound == [(1000,)]  # every message was taken (and logged for dedupe)
        sent = len(fake.texts_to(FLOODER))
        # a minute's worth per minute the flood lasted, never more than the day's cap
        assert 0 < sent <= min(150, 30 * (int(minutes) + 2)) + 5, (sent, minutes)
        assert sent / 1000 < 0.2  # the old service: 1.0 SMS per inbound


async def test_a_thousand_new_numbers_get_an_hours_worth_of_welcomes(tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed, LIMIT_NEW_PER_HOUR="60") as (live, fake):
        await flood(live.url, fake, [(f"+4791{i:06d}", "hei") for i in range(1000)])
        await live.settled()
        welcomed = {m.to for m in fake.sent}
        assert len(welcomed) == 60  # the old service: every one, 2,000 SMS in all
        assert len(fake.sent) / 1000 < 0.2
        # one of those not answered writes again after the hour: now it is
        live.clock.jump(live.clock() + timedelta(hours=1, minutes=1))
        later = next(f"+4791{i:06d}" for i in range(1000) if f"+4791{i:06d}" not in welcomed)
        await flood(live.url, fake, [(later, "hei")])
        await live.settled()
        assert fake.texts_to(later)


async def test_a_thousand_new_numbers_are_capped_by_the_days_budget(tmp_path: Path) -> None:
    async with sms_live(tmp_path, seed, LIMIT_NEW_PER_HOUR="0", SMS_DAILY_BUDGET="300") as (
            live, fake):
        await flood(live.url, fake, [(f"+4791{i:06d}", "hei") for i in range(1000)])
        await live.settled()
        assert 300 <= len(fake.sent) < 310  # the old service: 2 a number, 2,000 in all
        async with aiohttp.ClientSession() as s, s.get(live.url + "/readyz") as r:
            assert r.status == 200  # still ready: it takes messages and answers a crisis
            assert (await r.json())["sms budget"].startswith("used up today")
