"""Reminders end to end: store + pipeline + ticker, with a clock moved by hand."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.engine.model import FlowSet
from bot.service import meetings
from bot.service.pipeline import Inbound, Pipeline
from bot.service.scheduler import Ticker
from bot.store import Store
from bot.timing.planner import OSLO

from .conftest import NOW, ManualClock, Mirror, answers, open_backend, said, said_yes

U = DEMO_USER_PHONE


def oslo(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=OSLO)


async def sent(store: Store) -> list[str]:
    rows = await store.fetchall("SELECT text FROM outbox ORDER BY id")
    return [r[0] for r in rows]


class World:
    """A store with the demo user, a pipeline and a ticker sharing one hand-moved clock."""

    def __init__(self, store: Store, flows: FlowSet, clock: ManualClock) -> None:
        self.store, self.clock = store, clock
        self.pipeline = Pipeline(store, flows, clock)
        self.ticker = Ticker(store, self.pipeline, clock)

    async def at(self, when: datetime) -> list[str]:
        """Move the clock to `when` (ticking every 5 minutes on the way); new messages."""
        before = len(await sent(self.store))
        while self.clock.now < when:
            self.clock.now = min(when, self.clock.now + timedelta(minutes=5))
            await self.ticker.tick()
        return (await sent(self.store))[before:]

    async def say(self, text: str, pid: str) -> list[str]:
        h = await self.pipeline.submit(Inbound("console", U, text, pid))
        return [r.text for r in h.replies]


async def world(backend: str, flows: FlowSet, clock: ManualClock) -> World:
    store = await open_backend(backend)
    await seed_demo(store, clock.now)  # first meeting Tuesday 24.11 10.00
    await said_yes(store)  # the welcome is answered (tests/test_young_user.py: before it)
    w = World(store, flows, clock)
    await w.pipeline.start()
    return w


async def test_a_first_meeting_from_preparation_to_survey(backend: str, flows: FlowSet,
                                                          clock: ManualClock) -> None:
    w = await world(backend, flows, clock)
    got = await w.at(NOW + timedelta(minutes=1))
    assert got == Mirror(flows, NOW + timedelta(minutes=1)).texts("first_meeting_prep")
    for i, (_, t) in enumerate(answers(flows.flows["first_meeting_prep"])):
        await w.say(t, f"p{i}")
    assert await w.at(oslo(2026, 11, 23, 17, 55)) == []
    got = await w.at(oslo(2026, 11, 23, 18, 5))
    m = Mirror(flows, oslo(2026, 11, 23, 18, 5))
    assert got == m.texts("meeting_reminder")  # 18.00 the evening before (ticks of 5 min)
    (question, reply), *_ = answers(flows.flows["meeting_reminder"])
    assert await w.say(reply, "r1") == [r.text for r in m.say(reply)]
    rows = await w.store.list_meetings()
    # what the veileder sees in `veivis meeting list`: the option the young person chose
    assert rows[0].reply == question.options[int(reply) - 1].value
    got = await w.at(oslo(2026, 11, 24, 8, 5))
    assert got == Mirror(flows, oslo(2026, 11, 24, 8, 5)).texts("meeting_reminder")  # 2 h before
    got = await w.at(oslo(2026, 11, 24, 13, 5))
    intro = Mirror(flows).texts("first_meeting_survey")
    assert got == intro
    # no answer: one gentle nudge the next day, then it expires quietly
    got = await w.at(oslo(2026, 11, 25, 13, 5))
    assert got == [said(flows, "system.nudge"), *intro]
    assert await w.at(oslo(2026, 11, 28, 12)) == []
    # the survey has expired: a late «ja» is not taken as an answer to it
    late = await w.say("ja", "late")
    assert late == Mirror(flows).texts("menu")  # idle: the menu, not the survey
    await w.pipeline.stop()
    await w.store.close()


async def test_reminders_survive_a_restart(backend: str, flows: FlowSet,
                                           clock: ManualClock) -> None:
    w = await world(backend, flows, clock)
    await w.at(NOW + timedelta(minutes=1))
    await w.pipeline.stop()
    await w.store.close()  # the process stops; 18.00 comes while it is down
    clock.now = oslo(2026, 11, 23, 19, 0)
    store = await open_backend(backend)
    w2 = World(store, flows, clock)
    await w2.pipeline.start()
    got = await w2.at(oslo(2026, 11, 23, 19, 1))
    # still before the meeting: sent now
    assert got == Mirror(flows, oslo(2026, 11, 23, 19, 1)).texts("meeting_reminder")
    await w2.pipeline.stop()
    await store.close()


async def test_after_downtime_stale_reminders_are_dropped_not_sent(
        backend: str, flows: FlowSet, clock: ManualClock) -> None:
    w = await world(backend, flows, clock)
    await w.at(NOW + timedelta(minutes=1))
    before = len(await sent(w.store))
    clock.now = oslo(2026, 11, 24, 10, 30)  # down from Monday noon until after the meeting
    await w.ticker.tick()
    new = (await sent(w.store))[before:]
    assert new == []
    dropped = await w.store.fetchall("SELECT slot FROM scheduled WHERE status = 'dropped'")
    assert len(dropped) == 2  # the evening and the 2-hours-before reminders
    await w.pipeline.stop()
    await w.store.close()


async def test_nothing_is_sent_at_night(backend: str, flows: FlowSet,
                                        clock: ManualClock) -> None:
    clock.now = oslo(2026, 11, 23, 22, 30)
    w = await world(backend, flows, clock)  # registered at night: prep waits for 08.00
    assert await w.at(oslo(2026, 11, 24, 7, 59)) == []
    got = await w.at(oslo(2026, 11, 24, 8, 0))
    prep = Mirror(flows, oslo(2026, 11, 24, 8, 0)).texts("first_meeting_prep")
    assert got[:len(prep)] == prep  # the preparation first (the 2-hour reminder is due too)
    await w.pipeline.stop()
    await w.store.close()


async def test_a_crash_while_sending_loses_nothing_and_sends_nothing_twice(
        tmp_path: Path, flows: FlowSet, clock: ManualClock) -> None:
    w = await world(str(tmp_path / "v.db"), flows, clock)  # (SQLite's own trigger syntax)
    # the write of the messages fails (as a crash before commit would): nothing is marked done
    await w.store._conn.execute("CREATE TRIGGER crash BEFORE INSERT ON outbox "
                               "BEGIN SELECT RAISE(ABORT, 'power cut'); END")
    clock.now = NOW + timedelta(minutes=1)
    with pytest.raises(RuntimeError):
        await w.ticker.tick()
    assert await sent(w.store) == []
    assert await w.store.fetchall("SELECT status FROM scheduled WHERE slot = 'prep'") == [
        ("pending",)]
    await w.store._conn.execute("DROP TRIGGER crash")
    await w.ticker.tick()
    await w.ticker.tick()
    assert await sent(w.store) == Mirror(flows, clock.now).texts("first_meeting_prep")
    await w.pipeline.stop()
    await w.store.close()


async def test_moved_and_cancelled_meetings_take_their_reminders_with_them(
        backend: str, flows: FlowSet, clock: ManualClock) -> None:
    w = await world(backend, flows, clock)
    await w.at(NOW + timedelta(minutes=1))
    mid = (await w.store.list_meetings())[0].id
    await meetings.move(w.store, mid, oslo(2026, 11, 26, 14), "Kafé Hunndalen", clock.now)
    got = await w.at(NOW + timedelta(minutes=10))
    moved = {"meeting": oslo(2026, 11, 26, 14), "møtested": "Kafé Hunndalen"}
    assert got == Mirror(flows, NOW + timedelta(minutes=5), **moved).texts("meeting_moved")
    got = await w.at(oslo(2026, 11, 24, 12))
    assert got == []  # no reminder for the old time
    got = await w.at(oslo(2026, 11, 25, 18, 5))
    assert got == Mirror(flows, oslo(2026, 11, 25, 18, 5), **moved).texts("meeting_reminder")
    await meetings.cancel(w.store, mid, clock.now)
    got = await w.at(oslo(2026, 11, 27, 12))
    assert got == Mirror(flows, oslo(2026, 11, 25, 18, 10), **moved).texts("meeting_cancelled")
    await w.pipeline.stop()
    await w.store.close()


async def test_500_meetings_moved_and_cancelled_at_random(backend: str, flows: FlowSet,
                                                          clock: ManualClock) -> None:
    """No reminder fires for a cancelled meeting or an old time; every valid one fires once."""
    rng = random.Random(2026)
    store = await open_backend(backend)
    office = await store.add_office("NAV Gjøvik")
    vid = await store.add_veileder("Kari Nordmann", "+4740012345", office)
    phones = [f"+479{i:07d}" for i in range(500)]
    for p in phones:
        await store.add_user(phone=p, channel="sms", first_name="Ung", last_name=None,
                             veileder_id=vid, now=clock.now)
    w = World(store, flows, clock)
    await w.pipeline.start()
    start = clock.now
    ids = []
    for p in phones:
        when = start + timedelta(hours=rng.randint(20, 120), minutes=rng.choice([0, 15, 30]))
        ids.append(await meetings.register(store, phone=p, starts_at=when, place="NAV",
                                           first=rng.random() < 0.3, now=clock.now))
    violations: list[str] = []
    seen_done: set[int] = set()
    end = start + timedelta(days=6)
    while clock.now < end:
        clock.now += timedelta(minutes=15)
        for mid in rng.sample(ids, 3):
            m = {r.id: r for r in await store.list_meetings(include_cancelled=True)}[mid]
            if m.status != "planned" or m.starts_at <= clock.now + timedelta(hours=1):
                continue
            if rng.random() < 0.5:
                await meetings.cancel(store, mid, clock.now)
            else:
                new = clock.now + timedelta(hours=rng.randint(3, 60))
                await meetings.move(store, mid, new, None, clock.now)
        await w.ticker.tick()
        rows = await store.fetchall(
            "SELECT s.id, s.slot, s.kind, m.status, m.starts_at FROM scheduled s "
            "JOIN meetings m ON m.id = s.meeting_id WHERE s.status = 'done'")
        for sid, slot, kind, status, starts in rows:
            if sid in seen_done:
                continue
            seen_done.add(sid)
            if kind == "reminder":
                if status != "planned":
                    violations.append(f"reminder {slot} for a cancelled meeting")
                if not slot.endswith("@" + datetime.fromisoformat(starts).isoformat(
                        timespec="minutes")):
                    violations.append(f"reminder {slot} for an old time ({starts})")
    assert violations == []
    # every reminder planned for a meeting's final time, due before the end, fired once
    pending = await store.fetchall(
        "SELECT count(*) FROM scheduled s JOIN meetings m ON m.id = s.meeting_id "
        "WHERE s.kind = 'reminder' AND s.status = 'pending' AND s.due_at < ? "
        "AND m.status = 'planned'", (end.isoformat(timespec="seconds"),))
    assert pending == [(0,)]
    dup = await store.fetchall("SELECT meeting_id, slot, count(*) FROM scheduled "
                               "GROUP BY meeting_id, slot HAVING count(*) > 1")
    assert dup == []
    fired = await store.fetchall("SELECT count(*) FROM scheduled WHERE kind = 'reminder' "
                                 "AND status = 'done'")
    assert fired[0][0] > 300
    await w.pipeline.stop()
    await store.close()


async def test_a_discreet_user_gets_reminders_that_do_not_name_nav(
        backend: str, flows: FlowSet, clock: ManualClock) -> None:
    w = await world(backend, flows, clock)
    async with w.store.transaction() as c:
        await c.execute("UPDATE users SET discreet = 1")
    got = await w.at(oslo(2026, 11, 23, 18, 5))
    m = Mirror(flows, oslo(2026, 11, 23, 18, 5))
    reminder = m.texts("meeting_reminder_discreet")
    assert got[-len(reminder):] == reminder
    (question, _), *_ = answers(flows.flows["meeting_reminder_discreet"])
    assert await w.say("2", "d1") == [r.text for r in m.say("2")]
    assert (await w.store.list_meetings())[0].reply == question.options[1].value
    await w.pipeline.stop()
    await w.store.close()
