"""Reports for the resource group, made from the database: `veivis report` and the 14-day
digest (delivered to a folder, a Telegram group and coordinators' phones)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.engine.model import FlowSet
from bot.reports.formats import html
from bot.reports.report import AnonRow, Period, Report, build, last_finished, period_of
from bot.store.protocol import Database

if TYPE_CHECKING:  # python-telegram-bot: loaded by the server, not by every command
    from telegram import Bot

log = logging.getLogger(__name__)


async def make_report(store: Database, flows: FlowSet, now: datetime, *,
                      period: Period | None = None, week: date | None = None) -> Report:
    """The report of one fixed period that is over (the latest, or the one `week` falls in),
    compared with the period before. Never of an unfinished period, never of a part of the
    region: two reports can then never be subtracted to show what one of them hid."""
    p = period or period_of(now, week=week)
    rows = [AnonRow(*r) for r in await store.anonymous_counts(p.keys)]
    before = [AnonRow(*r) for r in await store.anonymous_counts(p.before().keys)]
    return build(flows, rows, before, p, now)


@dataclass
class DigestJob:
    """The 14-day digest: at each fire time, the report of the two full weeks before, saved in
    a folder, sent to the resource group's Telegram group (summary and the HTML file), and
    coordinators told by SMS. Each period is made once (the `digests` table), so a run
    missed while the service was down is made once at start, and never twice."""

    store: Database
    flows: FlowSet
    trigger: CronTrigger
    folder: Path | None = None
    bot: Bot | None = None
    chat_id: str | None = None
    phones: tuple[str, ...] = ()

    async def run(self, fire_time: datetime) -> Report | None:
        """Make and deliver the digest for the period before `fire_time`; None if it was
        made already (or another instance on the same database is making it now)."""
        async with self.store.job_lock("digest") as mine:
            return await self._run(fire_time) if mine else None

    async def _run(self, fire_time: datetime) -> Report | None:
        period = last_finished(fire_time)
        key = f"{period.keys[0]}..{period.keys[-1]}"
        if await self.store.digest_made(key):
            return None
        rep = await make_report(self.store, self.flows, fire_time, period=period)
        page = html(rep)
        name = f"veivis-rapport-{period.keys[0]}-{period.keys[-1][-3:]}.html"
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / name).write_text(page, encoding="utf-8")
        if self.bot is not None and self.chat_id:
            await self.bot.send_message(self.chat_id, "\n".join([rep.title, "", *rep.summary]))
            from telegram import InputFile

            await self.bot.send_document(self.chat_id, InputFile(page.encode(), filename=name),
                                         caption="Hele rapporten. Åpne filen i nettleseren.")
        told = (f"Veivis: rapporten for ressursgruppa er klar ({period.label()}). "
                f"{rep.summary[0]}")
        await self.store.record_digest(key, [("sms", phone, told) for phone in self.phones],
                                       fire_time)
        log.info("digest for %s made", key)
        return rep

    def last_fire_time(self, now: datetime) -> datetime | None:
        """The latest time the digest should have run, up to `now` (within 60 days)."""
        last, t = None, self.trigger.get_next_fire_time(None, now - timedelta(days=60))
        while t is not None and t <= now:
            last, t = t, self.trigger.get_next_fire_time(t, t + timedelta(seconds=1))
        return last

    async def catch_up(self, now: datetime) -> Report | None:
        """At start: make the last digest if it was missed (once)."""
        last = self.last_fire_time(now)
        return await self.run(last) if last is not None else None

    def schedule(self, sched: AsyncIOScheduler, clock: Callable[[], datetime]) -> None:
        async def job() -> None:
            try:
                await self.run(clock())
            except Exception:
                log.exception("the digest failed; it is made at the next start or run")
        sched.add_job(job, self.trigger, id="digest", coalesce=True, misfire_grace_time=3600)
