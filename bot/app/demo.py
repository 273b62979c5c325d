"""Demo data for a fresh local database: one young user, one veileder, one first meeting."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.service.meetings import register
from bot.store.protocol import Database
from bot.timing.display import OSLO

DEMO_USER_PHONE = "+4791234567"
DEMO_VEILEDER_PHONE = "+4740012345"


def next_working_day_at_ten(now: datetime) -> datetime:
    """10.00 Europe/Oslo on the next weekday after `now`."""
    day = now.astimezone(OSLO).date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=OSLO)


async def seed_demo(store: Database, now: datetime, channel: str = "console") -> None:
    office = await store.add_office("NAV Gjøvik")
    veileder = await store.add_veileder("Kari Nordmann", DEMO_VEILEDER_PHONE, office)
    await store.add_user(phone=DEMO_USER_PHONE, channel=channel, first_name="Sara",
                         last_name="Hansen", veileder_id=veileder, now=now)
    # planned like any meeting: the preparation is due at once, reminders and survey later
    await register(store, phone=DEMO_USER_PHONE, starts_at=next_working_day_at_ten(now),
                   place="NAV Gjøvik", first=True, now=now)
