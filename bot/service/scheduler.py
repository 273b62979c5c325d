"""Waking up what is due. The database is the source of truth; APScheduler only wakes us.

`Ticker.tick()` takes the scheduled rows that are due and handles each by rule:
- the meeting was cancelled (and this is not the cancellation notice) -> dropped;
- it could only go out after its deadline (a reminder after the meeting started, a survey
  after it expired) -> dropped and logged, never a burst of stale reminders after downtime;
- it is a message and now is quiet hours -> left for the morning;
- otherwise it goes through the pipeline as a FlowRequest, which marks the row done in the
  same transaction as the messages it produces (so a crash loses nothing and sends nothing
  twice).

`start_scheduler()` runs the tick on an AsyncIOScheduler: a one-off job at the next due time
(rescheduled after every tick) plus an interval job as a safety net for rows added by other
processes (the CLI). Jobs live in memory only; nothing is pickled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.engine.language import DISCREET
from bot.service.clock import Clock
from bot.service.pipeline import FlowRequest, Pipeline
from bot.store import meetings as M
from bot.store.protocol import Database
from bot.timing.planner import DEFAULT_RULES, Rules, is_quiet

log = logging.getLogger(__name__)

SILENT_KINDS = {"survey_expire"}  # handled at night too: they send nothing
ACTIONS = {"survey_nudge": "nudge", "survey_expire": "expire"}


@dataclass
class TickResult:
    sent: int = 0
    dropped: int = 0
    deferred: int = 0
    lag: float = 0.0  # seconds the most overdue row sent was late


class Ticker:
    def __init__(self, store: Database, pipeline: Pipeline, clock: Clock,
                 rules: Rules = DEFAULT_RULES, batch: int = 10_000) -> None:
        self.store = store
        self.pipeline = pipeline
        self.clock = clock
        self.rules = rules
        self.batch = batch
        self._lock = asyncio.Lock()
        # for /metrics: when the last tick ended (this clock), and how late the most overdue
        # row it sent was (seconds; 0 when nothing was due)
        self.last_tick: datetime | None = None
        self.last_lag = 0.0

    async def tick(self) -> TickResult:
        """Handle everything due now. Ticks never overlap, within a process or across the
        instances sharing a database (an instance that finds another one ticking skips)."""
        async with self._lock, self.store.job_lock("tick") as mine:
            total = TickResult()
            if not mine:
                return total
            lag = 0.0
            while True:
                r, more = await self._once()
                total.sent += r.sent
                total.dropped += r.dropped
                total.deferred += r.deferred
                lag = max(lag, r.lag)
                if not more:
                    self.last_tick, self.last_lag = self.clock(), lag
                    return total

    def _flow_for(self, r: M.Due) -> str:
        """A user who shares a phone gets the discreet variant where there is one."""
        flow = r.flow or ""
        if r.discreet and self.pipeline.flows.get(flow + DISCREET) is not None:
            return flow + DISCREET
        return flow

    async def _once(self) -> tuple[TickResult, bool]:
        now = self.clock()
        rows = await self.store.due(now, self.batch)
        result = TickResult()
        drop: list[int] = []
        send: list[M.Due] = []
        quiet = is_quiet(now, self.rules)
        for r in rows:
            if r.meeting_status == "cancelled" and r.kind != "cancelled":
                drop.append(r.id)
            elif r.not_after is not None and now >= r.not_after:
                log.info("dropped stale %s for meeting %d (due %s)", r.kind, r.meeting_id,
                         r.due_at.isoformat())
                drop.append(r.id)
            elif quiet and r.kind not in SILENT_KINDS:
                result.deferred += 1
            elif r.flow is not None:
                send.append(r)
            else:
                drop.append(r.id)
        await self.store.drop_scheduled(drop, now)
        result.dropped = len(drop)
        await asyncio.gather(*(self.pipeline.submit(FlowRequest(
            r.channel, r.address, self._flow_for(r), r.meeting_id, r.id,
            ACTIONS.get(r.kind, "start"))) for r in send))
        result.sent = len(send)
        if send:
            result.lag = max(0.0, max((now - r.due_at).total_seconds() for r in send))
        # a full batch that made progress: there may be more due right now
        return result, len(rows) == self.batch and (result.sent or result.dropped) > 0


class Scheduler(AsyncIOScheduler):  # type: ignore[misc]
    """APScheduler's AsyncIOScheduler, with a stop that lets the jobs in progress finish:
    its own shutdown cancels them wherever they are (a tick cut off between two batches,
    and a traceback in the log)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.in_progress: set[asyncio.Task[Any]] = set()

    def add_job(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if asyncio.iscoroutinefunction(func):
            inner = func

            @functools.wraps(inner)
            async def tracked(*a: Any, **k: Any) -> Any:
                task = asyncio.current_task()
                if task is not None:
                    self.in_progress.add(task)
                try:
                    return await inner(*a, **k)
                finally:
                    self.in_progress.discard(task)
            func = tracked
        return super().add_job(func, *args, **kwargs)

    async def stop(self, timeout: float) -> None:
        """No new runs; the ones in progress get up to `timeout` seconds; then shut down."""
        if not self.running:
            return
        self.pause()
        if self.in_progress:
            _, late = await asyncio.wait(set(self.in_progress), timeout=timeout)
            if late:
                log.warning("%d scheduled jobs did not finish in %.0f s: stopped", len(late),
                            timeout)
        self.shutdown(wait=False)


def start_scheduler(ticker: Ticker, *, safety_interval: float = 10.0,
                    run_now: bool = True) -> Scheduler:
    """Run ticks on an AsyncIOScheduler on the running loop; returns the started scheduler."""
    sched = Scheduler(timezone="UTC")

    async def wake() -> None:
        try:
            await ticker.tick()
        except Exception:
            log.exception("tick failed; the next one tries again")
        if ticker.store.history_pending:  # erased data still in the WAL: try again now
            await ticker.store.forget_history()
        nxt = await ticker.store.next_due()
        if nxt is not None:
            now = ticker.clock()
            # APScheduler counts on the wall clock; ours may be shifted (VEIVIS_CLOCK_OFFSET)
            run_at = datetime.now(UTC) + (max(nxt, now + timedelta(milliseconds=50)) - now)
            sched.add_job(wake, "date", run_date=run_at, id="wake", replace_existing=True,
                          misfire_grace_time=None)

    async def purge() -> None:
        async with ticker.store.job_lock("purge") as mine:
            if not mine:  # another instance on the same database is purging
                return
            counts = await ticker.store.purge(ticker.clock())
        log.info("retention: deleted %s", counts)
        await ticker.store.forget_history()

    # the daily retention purge; a run missed during downtime runs once at start
    sched.add_job(purge, "cron", hour=3, minute=15, timezone="Europe/Oslo", id="purge",
                  coalesce=True, misfire_grace_time=None)
    first = datetime.now(ticker.clock().tzinfo) if run_now else None
    sched.add_job(wake, "interval", seconds=safety_interval, id="safety", max_instances=1,
                  coalesce=True, **({"next_run_time": first} if first else {}))
    sched.start()
    return sched
