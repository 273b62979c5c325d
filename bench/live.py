"""The live path, measured on loopback in one run.

    python bench/live.py [--webhooks 4000] [--users 400] [--concurrency 32]
                         [--rates 10,50] [--seconds 15]

1. Webhooks: signed Twilio inbound SMS webhooks through the real aiohttp server, signature
   check, pipeline and commit (the reply lands in the outbox before the 200), from `--users`
   phones at `--concurrency` requests in flight: requests/s and p50/p99 latency. Baseline: the
   same signed requests to a bare endpoint on the same server stack that checks the signature
   and answers empty TwiML (the HTTP + signature ceiling). `ratio` = ours / baseline.
2. Sender: for each rate limit, a backlog for 100 users sent through the real Twilio client to
   a fake Twilio; the fake timestamps arrivals. Reports the achieved rate over the limit
   (target >= 0.98) and the most arrivals in any 1-second window (must not exceed the limit).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bot.app import server  # noqa: E402
from bot.app.settings import Settings  # noqa: E402
from bot.channels import sms as S  # noqa: E402
from bot.channels.sms import TwilioTransport  # noqa: E402
from bot.delivery.sender import Sender  # noqa: E402
from bot.store import Store  # noqa: E402
from tests.fakes import FakeTwilio  # noqa: E402

NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
SID = "AC" + "0123456789abcdef" * 2
AUTH = "bench-auth-token"
PUBLIC = "https://veivis.example.no"
TEXTS = ["hei", "HJELP", "ja", "2", "MENY", "nei", "hva skjer?", "1"]


def percentile(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


async def fire(url: str, requests: list[tuple[dict[str, str], str]],
               concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[dict[str, str], str]] = asyncio.Queue()
    for r in requests:
        queue.put_nowait(r)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async def worker() -> None:
            while not queue.empty():
                params, sig = queue.get_nowait()
                t0 = time.perf_counter()
                async with s.post(url, data=params, headers={"X-Twilio-Signature": sig}) as r:
                    await r.read()
                    if r.status != 200:
                        raise SystemExit(f"webhook answered {r.status}")
                latencies.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0, latencies


def signed(fake: FakeTwilio, n: int, users: int, tag: str) -> list[tuple[dict[str, str], str]]:
    out = []
    for i in range(n):
        params = {"MessageSid": f"SM{ord(tag):024x}{i:08x}",  # Twilio's form
                  "From": f"+479{i % users:07d}",
                  "To": "+4759440000", "Body": TEXTS[(i // users) % len(TEXTS)],
                  "NumMedia": "0", "AccountSid": SID}
        out.append((params, fake.sign(PUBLIC + S.SMS_PATH, params)))
    return out


async def bench_webhooks(tmp: Path, n: int, users: int, concurrency: int) -> float:
    async with FakeTwilio(SID, AUTH) as fake:
        settings = Settings({"VEIVIS_DB": str(tmp / "wh.db"), "VEIVIS_PUBLIC_URL": PUBLIC,
                             "VEIVIS_CONFIG": "", "TWILIO_ACCOUNT_SID": SID,
                             "TWILIO_AUTH_TOKEN": AUTH, "TWILIO_FROM": "+4759440000",
                             "TWILIO_API_URL": fake.url, "SMS_RATE": "1"})
        svc = await server.build(settings)
        await server.start(svc, scheduler=False)
        app = server.web_app(svc)
        hooks = S.Webhooks(AUTH, PUBLIC)

        async def bare(request: web.Request) -> web.Response:
            form = {k: str(v) for k, v in (await request.post()).items()}
            if not hooks.valid(request.path_qs, form, request.headers.get("X-Twilio-Signature")):
                return web.Response(status=403)
            return S.twiml()
        app.router.add_post("/bare" + S.SMS_PATH, bare)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        # the baseline is signed for its own path
        bare_reqs = []
        for params, _ in signed(fake, n, users, "b"):
            bare_reqs.append((params, fake.sign(PUBLIC + "/bare" + S.SMS_PATH, params)))
        await fire(base + "/bare" + S.SMS_PATH, bare_reqs[:200], concurrency)  # warm up
        t_bare, lat_bare = await fire(base + "/bare" + S.SMS_PATH, bare_reqs, concurrency)
        t_ours, lat_ours = await fire(base + S.SMS_PATH, signed(fake, n, users, "o"),
                                      concurrency)
        queued = await svc.store.fetchall("SELECT COUNT(*) FROM outbox")
        await runner.cleanup()
        await server.stop(svc, 5)
    ours, bare_rate = n / t_ours, n / t_bare
    print(f"webhooks: {n} from {users} phones, {concurrency} in flight")
    print(f"  ours:     {ours:8.0f} req/s  p50 {percentile(lat_ours, 50) * 1000:6.1f} ms  "
          f"p99 {percentile(lat_ours, 99) * 1000:6.1f} ms  ({queued[0][0]} replies queued)")
    print(f"  baseline: {bare_rate:8.0f} req/s  p50 {percentile(lat_bare, 50) * 1000:6.1f} ms  "
          f"p99 {percentile(lat_bare, 99) * 1000:6.1f} ms  (signature check + TwiML only)")
    ratio = ours / bare_rate
    print(f"  webhook ratio: {ratio:.2f}")
    return ratio


async def bench_sender(tmp: Path, rate: float, seconds: float) -> tuple[float, int]:
    n = int(rate * seconds)
    store = await Store.open(tmp / f"send{rate:g}.db")
    async with store.transaction() as c:
        await c.executemany(
            "INSERT INTO outbox (channel, address, text, created_at, due_at) "
            "VALUES ('sms', ?, ?, ?, ?)",
            [(f"+479{i % 100:07d}", f"melding {i}", NOW.isoformat(), NOW.isoformat())
             for i in range(n)])
    async with FakeTwilio(SID, AUTH) as fake:
        t = TwilioTransport(SID, AUTH, "+4759440000", status_callback=None, api_url=fake.url)
        sender = Sender(store, t, lambda: NOW, rate=rate)
        await sender.drain()
        await t.close()
        times = sorted(s.at for s in fake.sent)
    await store.close()
    achieved = (len(times) - 1) / (times[-1] - times[0])
    j = 0
    worst = 0
    for i in range(len(times)):  # most arrivals in any window [t, t + 1 s)
        while times[i] - times[j] >= 1.0:
            j += 1
        worst = max(worst, i - j + 1)
    print(f"sender at {rate:g}/s: {len(times)} sent, achieved {achieved:.2f}/s = "
          f"{achieved / rate:.3f} of the limit; most in any 1 s window: {worst} "
          f"({'ok' if worst <= rate else 'ABOVE THE LIMIT'})")
    return achieved / rate, worst


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--webhooks", type=int, default=4000)
    ap.add_argument("--users", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--rates", default="10,50")
    ap.add_argument("--seconds", type=float, default=15)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ratio = await bench_webhooks(tmp, args.webhooks, args.users, args.concurrency)
        shares = []
        for r in (float(x) for x in args.rates.split(",")):
            share, _ = await bench_sender(tmp, r, args.seconds)
            shares.append(share)
    print(f"sender: lowest share of the limit {min(shares):.3f} (target >= 0.98); "
          f"median {statistics.median(shares):.3f}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
