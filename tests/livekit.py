"""The whole bot as `veivis run` builds it, on loopback, against the fake providers.

The clock runs with real time from a chosen start, so retries and backoff happen for real, and
a test can jump it forward to a reminder or a survey. The scheduler's tick is called by the
test after a jump (APScheduler itself is tested elsewhere); everything else (web server,
pipeline, senders, Telegram polling) runs as in production.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bot.app import server
from bot.app.settings import Settings
from bot.store import Store
from bot.store.db import iso

from .conftest import DEMO, NOW, Mirror, as_sms  # noqa: F401  (the live tests use them)
from .fakes import FakeTelegram, FakeTwilio

TOKEN = "123456:TEST-token-for-the-fake-telegram-server"
SID = "AC" + "0123456789abcdef" * 2
AUTH = "fake-twilio-auth-token"
PUBLIC = "https://veivis.example.no"  # what Twilio calls; a proxy forwards to loopback
SECRET = "webhook-secret_123"


class RunningClock:
    """Real time, moved to start at `start`; `jump()` moves it forward."""

    def __init__(self, start: datetime = NOW) -> None:
        self._base = start
        self._t0 = time.monotonic()

    def __call__(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._t0)

    def jump(self, to: datetime) -> None:
        self._base, self._t0 = to, time.monotonic()


def settings(tmp_path: Path, **values: str) -> Settings:
    base = {"VEIVIS_DB": str(tmp_path / "veivis.db"), "VEIVIS_PUBLIC_URL": PUBLIC,
            "VEIVIS_CONFIG": "", "SEND_TIMEOUT": "0.5", "SMS_CHECK_SECONDS": "0.2",
            "OUTBOX_MAX_TRIES": "12", "SMS_RATE": "500", "TELEGRAM_RATE": "500",
            "VEIVIS_SHUTDOWN_SECONDS": "5"}
    base.update(values)
    return Settings(base)


def sms_settings(tmp_path: Path, api_url: str, **values: str) -> Settings:
    return settings(tmp_path, TWILIO_ACCOUNT_SID=SID, TWILIO_AUTH_TOKEN=AUTH,
                    TWILIO_FROM="+4759440000", TWILIO_API_URL=api_url, **values)


def telegram_settings(tmp_path: Path, api_url: str, **values: str) -> Settings:
    return settings(tmp_path, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=api_url, **values)


class Live:
    """A running service and its address."""

    def __init__(self, svc: server.Service, running: server.Running,
                 clock: RunningClock) -> None:
        self.svc = svc
        self.running = running
        self.clock = clock

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.running.port}"

    @property
    def store(self) -> Store:
        return self.svc.store

    async def tick(self) -> None:
        await self.svc.ticker.tick()

    async def settled(self, timeout: float = 30.0) -> None:
        """Wait until nothing due is queued or being sent (retries included) on the channels
        this service sends on. A message held for later (an SMS to a work phone after hours)
        or for a channel that is not set up is not waited for."""
        deadline = time.monotonic() + timeout
        channels = sorted(self.svc.senders)
        while True:
            rows = await self.store.fetchall(
                "SELECT COUNT(*) FROM outbox WHERE (status IN ('sending', 'unsure') OR "
                "(status = 'pending' "
                "AND (due_at <= ? OR tries > 0))) "
                f"AND channel IN ({','.join('?' * len(channels))})",
                (iso(self.clock()), *channels))
            if rows[0][0] == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{rows[0][0]} messages still unsent after {timeout} s")
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.running.runner.cleanup()
        await server.stop(self.svc, grace=5)


async def start_live(s: Settings, clock: RunningClock,
                     seed: Callable[[Store], Any] | None = None) -> Live:
    svc = await server.build(s, clock, sender_poll=0.02, backoff=0.05)
    if seed is not None:
        await seed(svc.store)
    await server.start(svc, scheduler=False)
    running = await server.listen(svc, "127.0.0.1", 0, 5)
    return Live(svc, running, clock)


async def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait for a condition that another task makes true (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def sms_live(tmp_path: Path, seed: Callable[[Store], Any] | None = None,
                   **values: str) -> AsyncIterator[tuple[Live, FakeTwilio]]:
    """A fake Twilio and the bot running against it; both closed at the end."""
    async with FakeTwilio(SID, AUTH) as fake:
        clock = RunningClock()
        fake.clock = clock  # Twilio's clock agrees with ours (lookups compare times)
        live = await start_live(sms_settings(tmp_path, fake.url, **values), clock, seed)
        try:
            yield live, fake
        finally:
            await live.close()


@asynccontextmanager
async def telegram_live(tmp_path: Path, seed: Callable[[Store], Any] | None = None,
                        **values: str) -> AsyncIterator[tuple[Live, FakeTelegram]]:
    """A fake Bot API server and the bot running against it; both closed at the end."""
    async with FakeTelegram(TOKEN) as fake:
        live = await start_live(telegram_settings(tmp_path, fake.url, **values),
                                RunningClock(), seed)
        try:
            yield live, fake
        finally:
            await live.close()
