"""The outbox sender: takes due rows from the database and hands them to a channel's
transport, at the channel's rate, fairly across users, in order per user, with retries.

- Rate: sends start at least 1/rate seconds apart (so never more than `rate` in any one
  second), and up to `concurrency` sends may be waiting for the provider at once.
- Fairness: each round takes only the oldest unsent row of each user (their head), and among
  heads the users served least recently go first, so one user with many messages cannot
  starve the rest.
- Order: a user's next row is not a head until the one before it is sent or failed.
- Claimed only when handed over: a row becomes 'sending' as its rate slot comes (at most
  RateLimiter.PREPARE = 25 ms before), right before the provider call. A crash can leave in
  doubt only the requests in flight at that moment (at most `concurrency`; at SMS_RATE=1 with
  a provider that answers within a second, one). Rows that were waiting for their slot are
  still pending and go out after the restart.
- Retries: a send the provider certainly did not accept (429, no connection made) comes
  back later with exponential backoff (at least as long as Retry-After says), up to
  `max_tries`; other 4xx fail at once. Failed rows are kept, with the reason, for
  `veivis outbox list --failed`.
- Doubt: after a timeout, a dropped connection, a 5xx, or a crash mid-request, the provider
  may have accepted the message. If the transport can be asked (`ask_after` is set: Twilio),
  the row is 'unsure': after `ask_after` seconds the sender asks the provider (`find`) and
  sends again only if it has no such message; a status callback that names the row settles
  it sooner. If it cannot be asked (Telegram), the row is sent again: the person may get that
  message twice, which is better than never getting a reminder or a question.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.phone import mask_address
from bot.store import OutboxItem
from bot.store import outbox as O
from bot.store.protocol import OutboxStore

log = logging.getLogger(__name__)

# How far a provider's clock may be behind ours when a lookup compares its creation time
# with the attempt's (which is stored to the second). Kept tight on purpose: a message with
# the same text to the same number that Veivis has no record of (an earlier row erased by
# SLETT) and that was made within this margin before the attempt would be taken for it.
CLOCK_SKEW = timedelta(seconds=2)


class SendError(Exception):
    """A send that did not go through. `temporary` ones are retried; `stop_user` means the
    person asked not to get messages (carrier STOP, blocked bot); `doubt` means the provider
    may have accepted it anyway (no answer, a 5xx), so it must be asked before a resend."""

    def __init__(self, reason: str, *, temporary: bool, retry_after: float | None = None,
                 stop_user: bool = False, code: str | None = None,
                 doubt: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.temporary = temporary
        self.retry_after = retry_after
        self.stop_user = stop_user
        self.code = code
        self.doubt = doubt


class Transport(Protocol):
    channel: str
    # seconds to wait after a send in doubt before asking the provider about it (long enough
    # for the provider's list to show it); None: this provider cannot be asked
    ask_after: float | None

    async def send(self, item: OutboxItem) -> str:
        """Send one row; return the provider's message id, or raise SendError."""
        ...

    async def find(self, item: OutboxItem, since: datetime, known: Collection[str]) -> str | None:
        """The provider's id of a message this row made at or after `since` (not one of
        `known`), or None if the provider has none; raises SendError if it cannot tell now.
        Only called when `ask_after` is set."""
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
    later than that (the sender was idle or stalled) begins a new grid from then.

    `acquire(prepare)` runs `prepare` (the sender's claim of the row) just before the slot,
    at most PREPARE seconds ahead, so the claim's own time does not make the start late, and
    a row is claimed only when its start is that close.
    """

    LATE = 0.010
    PREPARE = 0.025

    def __init__(self, rate: float, now: Callable[[], float] = time.monotonic) -> None:
        self.interval = (1.0 + SLACK) / rate
        self._now = now
        self._next: float | None = None
        self._lock = asyncio.Lock()

    async def acquire(self, prepare: Callable[[], Awaitable[bool]] | None = None) -> bool:
        """Wait for the next start. With `prepare`: False if it said there is nothing to
        start (the slot stays free for the next one)."""
        async with self._lock:
            now = self._now()
            if self._next is None or now - self._next > self.LATE:
                self._next = now
            slot = self._next
            if prepare is not None:
                if slot - self.PREPARE > now:
                    await asyncio.sleep(slot - self.PREPARE - now)
                if not await prepare():
                    return False
                now = self._now()
            if slot > now:
                await asyncio.sleep(slot - now)
            elif now - slot > self.LATE:  # too late for the grid: a new one from this start
                slot = now
            self._next = slot + self.interval
            return True


class SharedRateLimiter:
    """The same limit for every instance sending from one number: each start takes the next
    slot `(1 + SLACK) / rate` seconds after the one before from the shared database, on the
    database server's clock (bot/store/pg.py, `rate_slot`), and waits for it. The row is
    claimed first (a row another instance took costs no slot), so a claimed row may wait up
    to one slot per instance before its start; one at a time per instance and channel. A
    start later than its slot by more than RateLimiter.LATE moves the slots not yet taken
    by as much, so any `rate` starts still span more than a second."""

    def __init__(self, store: OutboxStore, channel: str, rate: float) -> None:
        self.interval = (1.0 + SLACK) / rate
        self._store = store
        self._channel = channel
        self._lock = asyncio.Lock()

    async def acquire(self, prepare: Callable[[], Awaitable[bool]] | None = None) -> bool:
        async with self._lock:
            if prepare is not None and not await prepare():
                return False
            asked = time.monotonic()  # the slot is at or after asked + wait (the server's
            wait = await self._store.rate_slot(self._channel, self.interval)  # clock)
            due = asked + wait  # so a slow answer counts as lateness, never as time to spare
            if wait > 0:
                await asyncio.sleep(wait)
            late = time.monotonic() - due
            if late > RateLimiter.LATE:  # a late start: the slots after it move by as much
                await self._store.rate_late(self._channel, late)
            return True


@dataclass
class SenderStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unsure: int = 0  # sends in doubt
    found: int = 0  # of those, found at the provider: not sent again
    resent: int = 0  # of those, not at the provider: sent again


class Sender:
    def __init__(self, store: OutboxStore, transport: Transport, clock: Callable[[], datetime], *,
                 rate: float, max_tries: int = 6, timeout: float = 15.0,
                 concurrency: int | None = None, backoff: float = 2.0,
                 max_backoff: float = 900.0, poll: float = 1.0) -> None:
        self.store = store
        self.transport = transport
        self.channel = transport.channel
        self.clock = clock
        # one limit per number: shared through the database when other instances use it
        self.limiter: RateLimiter | SharedRateLimiter = (
            SharedRateLimiter(store, self.channel, rate) if store.shared else RateLimiter(rate))
        self.rate = rate
        self.max_tries = max_tries
        self.timeout = timeout
        self.concurrency = concurrency or max(4, min(64, math.ceil(rate * 4)))
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.poll = poll
        # a claim older than this was left by a sender that is gone (a send is given up after
        # `timeout` and recorded right after): another instance on the same database may
        # take it over
        self.lease = timedelta(seconds=2 * timeout + 5)
        self._next_takeover = 0.0
        self.stats = SenderStats()
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._busy: set[int] = set()  # rows being sent or asked about now
        self._asked: dict[int, int] = {}  # row -> lookups that could not get an answer
        self._served: dict[str, int] = {}
        self._turn = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # rounds under way (the loop's, drain()'s): a round may hold a claimed row that is
        # waiting for its rate slot and not yet in `_inflight`
        self._rounds = 0
        self._round_over = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------
    def wake(self) -> None:
        """Something was queued: look now instead of at the next poll."""
        self._wake.set()

    async def start(self) -> None:
        ask = self.transport.ask_after
        n = await self.store.recover_outbox(self.channel, self.clock(), ask_after=ask,
                                            lease=self.lease, at_start=True)
        if n and ask is not None:
            log.warning("%d %s messages were in flight at a crash: %s will be asked whether "
                        "they arrived before any is sent again", n, self.channel, self.channel)
        elif n:
            log.warning("%d %s messages were in flight at a crash; %s cannot be asked, so "
                        "they are sent again (each may arrive twice)", n, self.channel,
                        self.channel)
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
            for t in pending:  # left 'sending': in doubt, asked about at the next start
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
        """Start one round of lookups and sends; returns how many were started."""
        self._rounds += 1
        try:
            return await self._round()
        finally:
            self._rounds -= 1
            self._round_over.set()

    async def _round(self) -> int:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
            return 1
        if self.store.shared and time.monotonic() >= self._next_takeover:
            await self._take_over()
        heads = [h for h in await self.store.outbox_heads(self.channel, self.clock())
                 if h.item.id not in self._busy]
        started = 0
        now = self.clock()
        for h in [h for h in heads if h.status == O.UNSURE][:free]:
            if await self.store.claim_check(h.item.id, now,
                                   now + timedelta(seconds=2 * self.timeout)):
                self._spawn(h.item.id, self._check(h))
                started += 1
        # least recently served first; a round is about one second of sends
        items = sorted((h.item for h in heads if h.status == O.PENDING),
                       key=lambda it: (self._served.get(it.address, 0), it.id))
        for it in items[:min(free - started, max(1, math.ceil(self.rate)))]:
            async def claim(row_id: int = it.id) -> bool:
                # claimed only now, as its rate slot comes, right before the provider call
                return not self._stopping and await self.store.claim_outbox(row_id, self.clock())
            if not await self.limiter.acquire(claim):
                if self._stopping:
                    break
                continue
            self._served[it.address] = next(self._turn)
            self._spawn(it.id, self._send(it))
            started += 1
        if len(self._served) > 100_000:
            self._served.clear()
        return started

    async def _take_over(self) -> None:
        """Rows another instance claimed and never settled (it died mid-send): in doubt,
        like this process's own after a crash."""
        self._next_takeover = time.monotonic() + self.lease.total_seconds() / 2
        n = await self.store.recover_outbox(self.channel, self.clock(),
                                            ask_after=self.transport.ask_after,
                                            lease=self.lease, at_start=False)
        if n:
            log.warning("%d %s messages were left in flight by another instance: taken over",
                        n, self.channel)

    def _spawn(self, row_id: int, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._busy.add(row_id)
        self._inflight.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            self._inflight.discard(t)
            self._busy.discard(row_id)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s send task failed: %s", self.channel,
                          type(t.exception()).__name__)
        task.add_done_callback(finished)

    async def drain(self) -> None:
        """Send everything due now and wait for it (tests, benchmarks, the console). With the
        loop running too (after start()), a row its round has claimed is waited for as well:
        such a row is no longer a head, and not yet in flight until its rate slot comes."""
        while True:
            if await self.round() == 0:
                if self._inflight:
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                elif self._rounds:  # the loop's round: it may be holding a claimed row
                    self._round_over.clear()
                    await self._round_over.wait()
                else:
                    return

    async def _send(self, item: OutboxItem) -> None:
        tries = item.tries + 1
        try:
            pid = await asyncio.wait_for(self.transport.send(item), self.timeout)
        except SendError as e:
            await self._failed(item, tries, e)
            return
        except TimeoutError:
            await self._failed(item, tries, SendError("no answer in time", temporary=True,
                                                      doubt=True))
            return
        except Exception as e:  # a library error we do not know: in doubt, never crash
            log.warning("%s send raised %s", self.channel, type(e).__name__)
            await self._failed(item, tries, SendError(type(e).__name__, temporary=True,
                                                      doubt=True))
            return
        try:
            first = await self.store.record_sent(item.id, pid, self.clock())
        except Exception:  # sent but not recorded: stays 'sending', asked about at next start
            log.exception("%s message %d was sent but could not be recorded", self.channel,
                          item.id)
            return
        self.stats.sent += 1
        if not first:
            log.error("%s message %d went out twice (an earlier copy was accepted after all)",
                      self.channel, item.id)

    def _delay(self, tries: int, e: SendError | None = None) -> float:
        delay = float(min(self.max_backoff, self.backoff * 2 ** (tries - 1)))
        delay *= random.uniform(0.8, 1.2)
        if e is not None and e.retry_after is not None:
            delay = max(delay, e.retry_after)
        return delay

    async def _failed(self, item: OutboxItem, tries: int, e: SendError) -> None:
        who = mask_address(item.address)
        now = self.clock()
        if e.stop_user:
            dropped = await self.store.stop_address(self.channel, item.address, e.reason)
            await self.store.record_failed(item.id, e.reason, e.code)
            self.stats.failed += 1
            log.warning("%s: %s does not want messages (%s); user stopped, %d queued dropped",
                        self.channel, who, e.reason, dropped)
            return
        ask = self.transport.ask_after
        if e.doubt and ask is not None:
            delay = max(ask, self._delay(tries, e))
            await self.store.record_unsure(item.id, e.reason,
                                  now + timedelta(seconds=delay))
            self.stats.unsure += 1
            self._wake.set()
            log.info("%s message %d to %s: %s; asking %s in %.1f s whether it arrived",
                     self.channel, item.id, who, e.reason, self.channel, delay)
            return
        if not e.temporary or tries >= self.max_tries:
            reason = e.reason + ("; it may have arrived" if e.doubt else "")
            await self.store.record_failed(item.id, reason, e.code)
            self.stats.failed += 1
            log.warning("%s message %d to %s failed after %d tries: %s", self.channel, item.id,
                        who, tries, reason)
            return
        delay = self._delay(tries, e)
        await self.store.record_retry(item.id, e.reason, now + timedelta(seconds=delay))
        self.stats.retried += 1
        self._wake.set()
        log.info("%s message %d to %s: %s; retry in %.1f s%s", self.channel, item.id, who,
                 e.reason, delay, " (it may arrive twice)" if e.doubt else "")

    async def _check(self, head: O.Head) -> None:
        """A row in doubt: ask the provider; record what it has, or send again."""
        item = head.item
        since = (head.attempt_at or self.clock()) - CLOCK_SKEW
        try:
            known = await self.store.known_ids(self.channel, item.address, since)
            pid = await asyncio.wait_for(self.transport.find(item, since, known), self.timeout)
        except Exception as e:
            n = self._asked[item.id] = self._asked.get(item.id, 0) + 1
            reason = e.reason if isinstance(e, SendError) else type(e).__name__
            delay = self._delay(n, e if isinstance(e, SendError) else None)
            await self.store.record_unsure(item.id, f"could not ask: {reason}",
                                  self.clock() + timedelta(seconds=delay))
            log.warning("%s message %d: could not ask whether it arrived (%s); again in %.1f s",
                        self.channel, item.id, reason, delay)
            return
        self._asked.pop(item.id, None)
        if pid is not None:
            await self.store.record_sent(item.id, pid, self.clock())
            self.stats.found += 1
            self.stats.sent += 1
            log.info("%s message %d had arrived after all: recorded, not sent again",
                     self.channel, item.id)
        elif item.tries >= self.max_tries:
            await self.store.record_failed(item.id, f"not accepted in {item.tries} tries "
                                  f"({self.channel} has no such message)")
            self.stats.failed += 1
            log.warning("%s message %d failed after %d tries", self.channel, item.id,
                        item.tries)
        else:
            await self.store.record_resend(item.id, self.clock())
            self.stats.resent += 1
            self._wake.set()
            log.info("%s message %d had not arrived: sending it again", self.channel, item.id)
