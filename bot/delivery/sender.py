"""The outbox sender: takes due rows from the database and hands them to a channel's
transport, at the channel's rate, fairly across users, in order per user, with retries.

- Rate: sends start at least 1/rate seconds apart (so never more than `rate` in any one
  second), and up to `concurrency` sends may be waiting for the provider at once.
- Fairness: each round takes only the oldest unsent row of each user (their head), and among
  heads the users served least recently go first, so one user with many messages cannot
  starve the rest.
- Order: a user's next row is not a head until the one before it is sent or failed.
- Retries: timeouts, 5xx and 429 come back later with exponential backoff (at least as long
  as Retry-After says), up to `max_tries`; other 4xx fail at once. Failed rows are kept for
  `veivis outbox list --failed`.
- Never twice: a row is claimed ('sending') before the provider call and the provider's id is
  recorded right after it. The one window is a crash between the two: at the next start such
  rows are marked failed (`INTERRUPTED`), not sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.phone import mask_address
from bot.store import OutboxItem, Store
from bot.store import outbox as O

log = logging.getLogger(__name__)


class SendError(Exception):
    """A send that did not go through. `temporary` ones are retried; `stop_user` means the
    person asked not to get messages (carrier STOP, blocked bot)."""

    def __init__(self, reason: str, *, temporary: bool, retry_after: float | None = None,
                 stop_user: bool = False, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary
        self.retry_after = retry_after
        self.stop_user = stop_user
        self.code = code


class Transport(Protocol):
    channel: str

    async def send(self, item: OutboxItem) -> str:
        """Send one row; return the provider's message id, or raise SendError."""
        ...


# Starts are spaced 1.5% wider than the limit: the provider counts arrivals, and a request
# can reach it a little later than it started (connection setup, a busy event loop), which
# would otherwise let a late one and the next on-time ones share a second. Costs 1.5% of
# the rate; `bench/live.py` measures both sides.
SLACK = 0.015


class RateLimiter:
    """Starts on a grid `(1 + SLACK) / rate` seconds apart, on the monotonic clock.

    A start may come a little after its slot (a timer wakes late, the loop is busy); the grid
    keeps its place as long as that lateness stays under LATE, so small delays are not lost
    from the rate. Any `rate` starts then span at least (1 + SLACK) - LATE > 1 second. A start
    later than that (the sender was idle or stalled) begins a new grid from now.
    """

    LATE = 0.010

    def __init__(self, rate: float, now: Callable[[], float] = time.monotonic) -> None:
        self.interval = (1.0 + SLACK) / rate
        self._now = now
        self._next: float | None = None
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = self._now()
            if self._next is None or now - self._next > self.LATE:
                self._next = now
            elif self._next > now:
                await asyncio.sleep(self._next - now)
            self._next += self.interval


@dataclass
class SenderStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0


class Sender:
    def __init__(self, store: Store, transport: Transport, clock: Callable[[], datetime], *,
                 rate: float, max_tries: int = 6, timeout: float = 15.0,
                 concurrency: int | None = None, backoff: float = 2.0,
                 max_backoff: float = 900.0, poll: float = 1.0) -> None:
        self.store = store
        self.transport = transport
        self.channel = transport.channel
        self.clock = clock
        self.limiter = RateLimiter(rate)
        self.rate = rate
        self.max_tries = max_tries
        self.timeout = timeout
        self.concurrency = concurrency or max(4, min(64, math.ceil(rate * 4)))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.poll = poll
        self.stats = SenderStats()
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._served: dict[str, int] = {}
        self._turn = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------
    def wake(self) -> None:
        """Something was queued: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        n = await O.recover_channel(self.store, self.channel)
        if n:
            log.warning("%d %s messages were interrupted mid-send by a crash; marked failed "
                        "(see veivis outbox list --failed)", n, self.channel)
        self._task = asyncio.create_task(self._run(), name=f"veivis-sender-{self.channel}")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, grace: float = 20.0) -> None:
        """Take no new rows; let sends in flight finish and be recorded (up to `grace` s)."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            _done, pending = await asyncio.wait(self._inflight, timeout=grace)
            for t in pending:  # left in 'sending': the documented crash window
                t.cancel()

    # -- the loop ----------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if self._stopping:
                break
            try:
                took = await self.round()
            except Exception:
                log.exception("%s sender round failed; trying again", self.channel)
                took = 0
            if took == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)

    async def round(self) -> int:
        """Claim and start one round of sends; returns how many were started."""
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            return 1
        items = await O.heads(self.store, self.channel, self.clock())
        if not items:
            return 0
        # least recently served first; a round is about one second of sends
        items.sort(key=lambda it: (self._served.get(it.address, 0), it.id))
        budget = min(free, max(1, math.ceil(self.rate)))
        chosen = items[:budget]
        claimed = set(await O.claim(self.store, [it.id for it in chosen]))
        started = 0
        for it in chosen:
            if it.id not in claimed:
                continue
            self._served[it.address] = next(self._turn)
            await self.limiter.acquire()
            task = asyncio.create_task(self._send(it))
            self._inflight.add(task)
            task.add_done_callback(self._finished)
            started += 1
        if len(self._served) > 100_000:
            self._served.clear()
        return started

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s send task failed: %s", self.channel,
                      type(task.exception()).__name__)

    async def drain(self) -> None:
        """Send everything due now and wait for it (tests, benchmarks)."""
        while True:
            if await self.round() == 0:
                if not self._inflight:
                    return
                await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)

    async def _send(self, item: OutboxItem) -> None:
        tries = item.tries + 1
        try:
            pid = await asyncio.wait_for(self.transport.send(item), self.timeout)
        except SendError as e:
            await self._failed(item, tries, e)
            return
        except (TimeoutError, OSError) as e:
            await self._failed(item, tries, SendError(f"no answer: {type(e).__name__}",
                                                      temporary=True))
            return
        except Exception as e:  # a library error we do not know: retry, never crash
            log.warning("%s send raised %s", self.channel, type(e).__name__)
            await self._failed(item, tries, SendError(type(e).__name__, temporary=True))
            return
        try:
            await O.record_sent(self.store, item.id, pid, self.clock())
        except Exception:  # sent but not recorded: stays 'sending', failed at next start
            log.exception("%s message %d was sent but could not be recorded", self.channel,
                          item.id)
            return
        self.stats.sent += 1

    async def _failed(self, item: OutboxItem, tries: int, e: SendError) -> None:
        who = mask_address(item.address)
        if e.stop_user:
            dropped = await O.stop_address(self.store, self.channel, item.address, e.reason)
            await O.record_failed(self.store, item.id, e.reason, e.code)
            self.stats.failed += 1
            log.warning("%s: %s does not want messages (%s); user stopped, %d queued dropped",
                        self.channel, who, e.reason, dropped)
            return
        if not e.temporary or tries >= self.max_tries:
            await O.record_failed(self.store, item.id, e.reason, e.code)
            self.stats.failed += 1
            log.warning("%s message %d to %s failed after %d tries: %s", self.channel, item.id,
                        who, tries, e.reason)
            return
        delay = min(self.max_backoff, self.backoff * 2 ** (tries - 1)) * random.uniform(0.8, 1.2)
        if e.retry_after is not None:
            delay = max(delay, e.retry_after)
        await O.record_retry(self.store, item.id, e.reason,
                             self.clock() + timedelta(seconds=delay))
        self.stats.retried += 1
        self._wake.set()
        log.info("%s message %d to %s: %s; retry in %.1f s", self.channel, item.id, who,
                 e.reason, delay)
