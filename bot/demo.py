"""Demo data for a fresh local database: one young user, one veileder, one first meeting."""

from __future__ import annotations

from datetime import datetime, timedelta

from .store import Store
from .timefmt import OSLO

DEMO_USER_PHONE = "+4791234567"
DEMO_VEILEDER_PHONE = "+4740012345"


def next_working_day_at_ten(now: datetime) -> datetime:
    """10.00 Europe/Oslo on the next weekday after `now`."""
    day = now.astimezone(OSLO).date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, 10, 0, tzinfo=OSLO)


async def seed_demo(store: Store, now: datetime, channel: str = "console") -> None:
    office = await store.add_office("NAV Gjøvik")
    veileder = await store.add_veileder("Kari Nordmann", DEMO_VEILEDER_PHONE, office)
    user = await store.add_user(phone=DEMO_USER_PHONE, channel=channel, first_name="Sara",
                                last_name="Hansen", veileder_id=veileder, now=now)
    await store.add_meeting(user_id=user, veileder_id=veileder,
                            starts_at=next_working_day_at_ten(now), place="NAV Gjøvik",
                            kind="first")
