"""Reports for the resource group, made from the database: `veivis report` and the 14-day
digest (delivered to a folder, a Telegram group and coordinators' phones)."""

from __future__ import annotations

from datetime import date, datetime

from .engine.model import FlowSet
from .report import AnonRow, Period, Report, build, period_of
from .store import Store
from .store.anonymous import rows_in_weeks


async def make_report(store: Store, flows: FlowSet, now: datetime, *,
                      period: Period | None = None, days: int | None = None,
                      since: date | None = None, office: str | None = None) -> Report:
    p = period or period_of(now, days=days, since=since)
    rows = [AnonRow(*r) for r in await rows_in_weeks(store.conn, p.keys)]
    before = [AnonRow(*r) for r in await rows_in_weeks(store.conn, p.before().keys)]
    return build(flows, rows, before, p, now, office)
