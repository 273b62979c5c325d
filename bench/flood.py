"""What a flood costs, and what it does to everyone else, on loopback in one run.

    python bench/flood.py [--messages 1000] [--concurrency 16] [--rate 100] [--budget 500]

Two floods, each through the real service (`veivis run`'s server, pipeline, outbox and
sender) with signed Twilio webhooks against a fake Twilio:

1. one number sends `--messages` messages;
2. `--messages` new numbers send one message each.

While a flood runs and until what it made is sent (at least 10 s), 100 ordinary users
(each one message every 4 s, well under the limits) write HJELP in turn; their reply latency
is the time from their webhook to the reply reaching Twilio (webhook, pipeline, outbox, the
sender's queue at `--rate` SMS/s). One that gets no answer in 20 s is counted apart.

Each flood runs three times: with the shipped settings; with SMS_DAILY_BUDGET=`--budget` and
LIMIT_NEW_PER_HOUR=0 (the shipped budget, 3,000 a day, is more than flood 2 needs; this shows
what a budget alone does); and with every limit set to 0, the old behaviour. Prints, for each,
`sms per inbound: X` (SMS sent to the flooding numbers / messages they sent) and the ordinary
users' reply p50/p99.

What the baseline leaves out: it is this code with the limits at 0, not the old code. The
rest of issue 16 stays on in it: three answers to unclear messages in a row (the floods send
HJELP and MENY, which are always answered, so this does not lower the baseline's count), the
webhook checks and the keyed dedupe hashes (a few microseconds a request).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bot.app.demo import seed_demo  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.conftest import NOW, said_yes  # noqa: E402
from tests.fakes import FakeTwilio  # noqa: E402
from tests.livekit import AUTH, PUBLIC, SID, RunningClock, sms_settings, start_live  # noqa: E402

FLOODER = "+4798000000"
ORDINARY = [f"+4797{i:06d}" for i in range(100)]
WORDS = ["HJELP", "MENY"]  # always answered


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))] if s else float("nan")


def signed(fake: FakeTwilio, sender: str, text: str) -> tuple[dict[str, str], dict[str, str]]:
    sid = "SM" + secrets.token_hex(16)
    params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": SID, "From": sender,
              "To": "+4759440000", "Body": text, "NumMedia": "0"}
    return params, {"X-Twilio-Signature": fake.sign(PUBLIC + "/twilio/sms", params)}


async def seed(store: Store) -> None:
    await seed_demo(store, NOW, channel="sms")
    for phone in [FLOODER, *ORDINARY]:
        await said_yes(store, phone, channel="sms")
    async with store.transaction() as c:  # they have used Veivis for a while
        await c.execute("UPDATE users SET created_at = ?",
                        ((NOW - timedelta(days=30)).isoformat(),))


async def run(tmp: Path, name: str, flood: list[tuple[str, str]], concurrency: int,
              **settings: str) -> tuple[float, list[float], int]:
    async with FakeTwilio(SID, AUTH) as fake:
        clock = RunningClock()
        fake.clock = clock
        live = await start_live(sms_settings(tmp, fake.url, VEIVIS_DB=str(tmp / f"{name}.db"),
                                             **settings), clock, seed)
        url = live.url + "/twilio/sms"
        done = asyncio.Event()
        latencies: list[float] = []
        unanswered: list[str] = []
        try:
            async with aiohttp.ClientSession() as s:
                async def post(sender: str, text: str) -> None:
                    params, headers = signed(fake, sender, text)
                    async with s.post(url, data=params, headers=headers) as r:
                        await r.read()
                        if r.status != 200:
                            raise SystemExit(f"webhook answered {r.status}")

                queue = list(reversed(flood))

                async def flooder() -> None:
                    while queue:
                        await post(*queue.pop())

                arrived: dict[str, asyncio.Event] = {p: asyncio.Event() for p in ORDINARY}

                async def watch() -> None:  # what reaches Twilio, as it arrives
                    seen = 0
                    while True:
                        for m in fake.sent[seen:]:
                            if m.to in arrived:
                                arrived[m.to].set()
                        seen = len(fake.sent)
                        await asyncio.sleep(0.002)

                async def ordinary(i: int) -> None:
                    phone = ORDINARY[i]
                    await asyncio.sleep(i * 0.04)  # one of them every 40 ms
                    while not done.is_set():
                        arrived[phone].clear()
                        t0 = time.perf_counter()
                        await post(phone, "HJELP")
                        try:
                            await asyncio.wait_for(arrived[phone].wait(), 20)
                            latencies.append(time.perf_counter() - t0)
                        except TimeoutError:
                            unanswered.append(phone)
                        await asyncio.sleep(max(0.0, 4.0 - (time.perf_counter() - t0)))

                watcher = asyncio.create_task(watch())
                probes = [asyncio.create_task(ordinary(i)) for i in range(len(ORDINARY))]
                t0 = time.perf_counter()
                await asyncio.gather(*(flooder() for _ in range(concurrency)))
                await live.settled(timeout=600)  # and until what it made is sent
                await asyncio.sleep(max(0.0, 10 - (time.perf_counter() - t0)))  # >= 10 s
                done.set()
                await asyncio.gather(*probes)
                watcher.cancel()
            await live.settled(timeout=600)
            flooders = {sender for sender, _ in flood}
            sent = sum(1 for m in fake.sent if m.to in flooders)
        finally:
            await live.close()
    return sent / len(flood), latencies, len(unanswered)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rate", default="100", help="SMS_RATE: SMS per second to Twilio")
    ap.add_argument("--budget", default="500", help="SMS_DAILY_BUDGET for the second run")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    n = args.messages
    floods = {
        f"one number, {n} messages": [(FLOODER, WORDS[i % 2]) for i in range(n)],
        f"{n} new numbers, one each": [(f"+4791{i:06d}", "hei") for i in range(n)],
    }
    modes = {
        "limits on (shipped settings)": {},
        f"budget {args.budget}, no new-number limit": {"SMS_DAILY_BUDGET": args.budget,
                                                      "LIMIT_NEW_PER_HOUR": "0"},
        "limits off (the old behaviour)": {"LIMIT_PER_MINUTE": "0", "LIMIT_PER_DAY": "0",
                                           "LIMIT_NEW_PER_HOUR": "0",
                                           "SMS_DAILY_BUDGET": "0"},
    }
    with tempfile.TemporaryDirectory() as d:
        for fname, flood in floods.items():
            print(f"{fname} (SMS_RATE={args.rate}, {args.concurrency} in flight; "
                  f"{len(ORDINARY)} ordinary users meanwhile)")
            for i, (mode, values) in enumerate(modes.items()):
                tmp = Path(d) / f"{len(fname)}-{i}"
                tmp.mkdir()
                t0 = time.perf_counter()
                per, lat, lost = await run(tmp, "flood", flood, args.concurrency,
                                           SMS_RATE=args.rate, **values)
                print(f"  {mode:38} sms per inbound: {per:.3f}   others' reply "
                      f"p50 {percentile(lat, 50) * 1000:6.0f} ms  "
                      f"p99 {percentile(lat, 99) * 1000:6.0f} ms  (n={len(lat)}"
                      + (f"; {lost} got no answer in 20 s" if lost else "")
                      + f"; {time.perf_counter() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
