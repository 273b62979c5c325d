"""What a message from outside may cost (issue 16, finding 4): per person a minute and a day,
a daily budget per channel, a few answers to unclear messages in a row. A crisis is always
answered. Through the pure engine and the pipeline; the flood through the real HTTP route is
in tests/test_flood.py."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app.demo import DEMO_USER_PHONE, DEMO_VEILEDER_PHONE, seed_demo
from bot.engine import State, UserText, load, step
from bot.engine.model import FlowSet
from bot.engine.runtime import UNCLEAR_ANSWERED, Desk, Reply, SetStopped
from bot.service.pipeline import Inbound, Limits, Pipeline
from bot.store import Store

from .conftest import NOW, ManualClock, own_flows, said_yes
from .ownflows import ALL

CLEAR = "jeg vil ikke leve mer"  # the crisis flow at once
POSSIBLE = "orker ikke mer"  # a check-in first


@pytest.mark.parametrize("state", [State(), State(consent=True), State(consent=True,
                                                                       flow="menu")])
def test_over_a_limit_only_a_crisis_is_answered(flows: FlowSet, state: State) -> None:
    """The engine decides: a limited message gets nothing and changes nothing; a crisis
    message gets exactly what it gets without a limit (both tiers, and the notice to whoever
    is on duty); STOPP still stops, without an answer."""
    limited = Desk(limited=True)
    for text in ("hei", "HJELP", "MENY", "SLETT", "1", "ja"):
        r = step(flows, state, UserText(text), NOW, {}, limited)
        assert (r.replies, r.effects, r.state) == ((), (), state), text
    for text in (CLEAR, POSSIBLE):
        free = step(flows, state, UserText(text), NOW, {}, Desk())
        assert free.replies  # it is answered at all
        assert step(flows, state, UserText(text), NOW, {}, limited) == free, text
    r = step(flows, state, UserText("STOPP"), NOW, {}, limited)
    assert r.replies == () and r.state.stopped and SetStopped(True) in r.effects


def test_unclear_answers_get_a_few_answers_then_silence(tmp_path: Path) -> None:
    report = load([own_flows(tmp_path / "flows", ALL)])
    assert report.flowset is not None
    flows = report.flowset
    r = step(flows, State(), UserText("hei"), NOW, {})  # the welcome's first question
    state = r.state
    answered = 0
    for _ in range(20):
        r = step(flows, state, UserText("qqq zzz"), NOW, {})
        state = r.state
        answered += bool(r.replies)
    assert answered == UNCLEAR_ANSWERED
    r = step(flows, state, UserText("1"), NOW, {})  # a clear answer goes on as before
    assert r.replies and r.state.step != state.step
    r = step(flows, r.state, UserText("qqq zzz"), NOW, {})
    assert r.replies  # and the count starts again


async def start(tmp_path: Path, flows: FlowSet, clock: ManualClock,
                limits: Limits) -> tuple[Store, Pipeline]:
    store = await Store.open(tmp_path / "l.db")
    await seed_demo(store, clock.now, channel="sms")
    await said_yes(store, channel="sms")
    p = Pipeline(store, flows, clock, limits=limits)
    await p.start()
    return store, p


async def to(store: Store, phone: str) -> int:
    return (await store.fetchall("SELECT count(*) FROM outbox WHERE address = ?",
                                 (phone,)))[0][0]


def crisis_answered(flows: FlowSet, replies: tuple[Reply, ...]) -> bool:
    """The crisis flow's texts (the numbers) are all among the replies."""
    free = step(flows, State(consent=True), UserText(CLEAR), NOW, {}, Desk())
    crisis = {r.text for r in free.replies[:-1]}  # the last: nobody at NAV (no desk here)
    return bool(crisis) and crisis <= {r.text for r in replies} and "113" in " ".join(crisis)


async def urgent_notices(store: Store) -> int:
    return len(await store.fetchall("SELECT 1 FROM outbox WHERE address = ? AND text LIKE "
                                    "'HASTER%'", (DEMO_VEILEDER_PHONE,)))


async def test_a_flooding_sender_is_capped_and_still_gets_the_crisis_numbers(
        tmp_path: Path, flows: FlowSet, clock: ManualClock) -> None:
    """One number sends 1,000 messages within a minute: it gets at most a minute's worth of
    answers; the next minute some more, up to the day's cap. When it then writes a crisis
    message, the crisis answers come all the same."""
    limits = Limits(per_minute=30, per_day=150)
    store, p = await start(tmp_path, flows, clock, limits)
    for i in range(1000):
        await p.submit(Inbound("sms", DEMO_USER_PHONE, ["hei", "MENY", "HJELP", "1"][i % 4],
                               f"SM{i:032x}"))
    first = await to(store, DEMO_USER_PHONE)
    assert limits.per_minute <= first < limits.per_minute + 10
    for minute in range(1, 30):  # a slow, steady flood
        clock.now = NOW.replace(minute=minute)
        for i in range(40):  # words that are always answered (unclear ones go quiet)
            await p.submit(Inbound("sms", DEMO_USER_PHONE, ["HJELP", "MENY"][i % 2],
                                   f"SMa{minute:03d}{i:027x}"))
    day = await to(store, DEMO_USER_PHONE)
    assert limits.per_day <= day < limits.per_day + 10
    h = await p.submit(Inbound("sms", DEMO_USER_PHONE, CLEAR, "SM" + "c" * 32))
    assert crisis_answered(flows, h.replies)
    assert await to(store, DEMO_USER_PHONE) == day + len(h.replies)
    assert await urgent_notices(store) == 1  # whoever is on duty is told, too
    await p.stop()
    await store.close()


async def test_the_daily_budget_stops_answers_but_not_a_crisis(
        tmp_path: Path, flows: FlowSet, clock: ManualClock,
        caplog: pytest.LogCaptureFixture) -> None:
    """1,000 new numbers write once each: answers stop at the channel's budget for the day
    (one log line, /readyz says so); the next day there is a new budget; a crisis message
    is answered even when the budget is used up."""
    limits = Limits(per_minute=30, per_day=150, budgets={"sms": 200})
    store, p = await start(tmp_path, flows, clock, limits)
    caplog.set_level(logging.WARNING)
    for i in range(1000):
        await p.submit(Inbound("sms", f"+4790{i:06d}", "hei", f"SM{i:032x}"))
    queued = (await store.fetchall("SELECT count(*) FROM outbox WHERE channel = 'sms'"))[0][0]
    assert 200 <= queued < 210
    assert caplog.text.count("budget of 200 messages for today is used up") == 1
    assert p.budget_status(clock.now, ["sms"]) == {
        "sms budget": "used up today (only crisis answers until midnight)"}
    h = await p.submit(Inbound("sms", DEMO_USER_PHONE, CLEAR, "SM" + "c" * 32))
    assert crisis_answered(flows, h.replies)
    assert await urgent_notices(store) == 1
    clock.now = NOW + timedelta(days=1)  # the next day
    h = await p.submit(Inbound("sms", "+4799999999", "hei", "SM" + "d" * 32))
    assert h.replies and p.budget_status(clock.now, ["sms"]) == {"sms budget": "ok"}
    await p.stop()
    await store.close()


async def test_without_limits_every_message_is_answered(tmp_path: Path, flows: FlowSet,
                                                        clock: ManualClock) -> None:
    """The old behaviour, still there with the limits set to 0 (the benchmark's baseline)."""
    store, p = await start(tmp_path, flows, clock, Limits())
    for i in range(100):
        await p.submit(Inbound("sms", DEMO_USER_PHONE, "HJELP", f"SM{i:032x}"))
    assert await to(store, DEMO_USER_PHONE) >= 100
    await p.stop()
    await store.close()


async def test_only_so_many_new_people_an_hour_are_answered(tmp_path: Path, flows: FlowSet,
                                                            clock: ManualClock) -> None:
    """Numbers Veivis never answered, writing in a flood: the first ones an hour get the
    welcome; the rest get nothing now (a crisis is answered all the same) and the welcome
    when they write again after the hour. A veileder's new user is not a stranger."""
    store, p = await start(tmp_path, flows, clock, Limits(new_per_hour=20))
    answered = [bool((await p.submit(Inbound("sms", f"+4790{i:06d}", "hei", f"SM{i:032x}")
                      )).replies) for i in range(100)]
    assert answered == [True] * 20 + [False] * 80
    h = await p.submit(Inbound("sms", "+4790000050", CLEAR, "SM" + "c" * 32))
    assert crisis_answered(flows, h.replies)
    clock.now = NOW + timedelta(hours=1, minutes=1)
    h = await p.submit(Inbound("sms", "+4790000060", "hei", "SM" + "d" * 32))
    assert h.replies
    await p.stop()
    await store.close()
