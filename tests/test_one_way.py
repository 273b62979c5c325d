"""The one-way core: the engine decides once, the shell carries it out and edits nothing.

- The replies a user gets through the pipeline are exactly what `engine.step` returned for
  the same state, event, time, values and desk (replayed here from the inputs).
- What is said about a message to the veileder and about a crisis notice is decided in the
  step (from the `Desk` read before it), and the effects say where the SMS goes.
- No SQL outside bot/store.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from bot.app.demo import DEMO_USER_PHONE
from bot.engine import StartFlow, State, UserText, step
from bot.engine.model import FlowSet
from bot.engine.runtime import (
    FORWARDS_PER_HOUR,
    VEILEDER_FLOW,
    CrisisNotice,
    Desk,
    Forward,
    system_text,
)
from bot.timing.hours import Duty

from .conftest import NOW, ManualClock
from .conftest import Desk as DeskHarness

ROOT = Path(__file__).resolve().parent.parent
EVENING = datetime(2026, 11, 23, 19, 0, tzinfo=UTC)  # Monday 20.00 in Oslo: nobody reads
MORNING = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)  # Tuesday 08.00 in Oslo
KARI = "+4790000001"


def in_veileder_flow(flows: FlowSet, desk: Desk, now: datetime) -> State:
    started = step(flows, State(consent=True), StartFlow(VEILEDER_FLOW), now, {}, desk)
    assert started.state.flow == VEILEDER_FLOW
    return started.state


def test_a_message_after_hours_is_answered_honestly_by_the_engine(flows: FlowSet) -> None:
    duty = Duty(KARI, open_now=False, read_from=MORNING)
    desk = Desk(duty)
    res = step(flows, in_veileder_flow(flows, desk, EVENING), UserText("Kan du ringe meg?"),
               EVENING, {}, desk)
    assert [e for e in res.effects if isinstance(e, Forward)] == [
        Forward("Kan du ringe meg?", duty)]
    told = system_text(flows, "nb", "forward_closed", {"svartid": "i morgen, tirsdag 24. "
                                                                  "november kl. 08.00"})
    assert [r.text for r in res.replies] == [told]


def test_no_veileder_or_too_many_messages_sends_nothing(flows: FlowSet) -> None:
    for desk, key in ((Desk(None), "forward_no_veileder"),
                      (Desk(Duty(KARI, True, NOW), FORWARDS_PER_HOUR), "forward_limit")):
        res = step(flows, in_veileder_flow(flows, desk, NOW), UserText("Hei"), NOW, {}, desk)
        assert not [e for e in res.effects if isinstance(e, Forward)]
        assert [r.text for r in res.replies] == [system_text(flows, "nb", key, {})]


def test_the_crisis_notice_goes_where_the_step_said(flows: FlowSet) -> None:
    on = Duty(KARI, open_now=True, read_from=NOW)
    res = step(flows, State(consent=True), UserText("jeg vil ikke leve mer"), NOW, {},
               Desk(on))
    assert CrisisNotice(on) in res.effects
    assert system_text(flows, "nb", "crisis_told", {}) in [r.text for r in res.replies]
    off = step(flows, State(consent=True), UserText("jeg vil ikke leve mer"), EVENING, {},
               Desk(Duty(KARI, open_now=False, read_from=MORNING)))
    assert not [e for e in off.effects if isinstance(e, CrisisNotice)]
    assert system_text(flows, "nb", "crisis_nobody", {}) in [r.text for r in off.replies]


async def test_what_the_user_gets_is_what_the_engine_returned(d: DeskHarness,
                                                              clock: ManualClock) -> None:
    """Replay each step from the inputs the pipeline gave it: the replies queued for the user
    are the engine's, word for word (after hours too, where the old shell swapped texts
    after the step), and a message to the veileder is queued for the time the step said."""
    clock.now = EVENING
    d.pipeline.trace = []
    for text in ("VEILEDER", "Kan du ringe meg i morgen?", "jeg vil ikke leve mer", "STOPP"):
        await d.user(text)
    got = await d.to(DEMO_USER_PHONE)
    replayed = [r.text for i in d.pipeline.trace
                for r in step(d.flows, i.state, i.event, i.now, i.values, i.desk).replies]
    assert len(d.pipeline.trace) == 4
    assert got[-len(replayed):] == replayed
    forwards = [e for i in d.pipeline.trace
                for e in step(d.flows, i.state, i.event, i.now, i.values, i.desk).effects
                if isinstance(e, Forward)]
    assert len(forwards) == 1 and forwards[0].duty.read_from == MORNING
    assert (await d.store.fetchall("SELECT due_at FROM outbox WHERE address = ?",
                                   (forwards[0].duty.phone,)))[0][0] == "2026-11-24T07:00:00+00:00"


def test_no_sql_outside_the_store() -> None:
    sql = re.compile(r"\.(execute|executemany|executescript)\(|\.conn\b|fetchall\(|"
                     r"\b(SELECT|INSERT|UPDATE|DELETE)\s+\w")
    found = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "bot").rglob("*.py")
             if "store" not in p.relative_to(ROOT / "bot").parts
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
             if sql.search(line)]
    assert found == []


def test_one_crisis_notice_per_half_hour_is_the_steps_decision(flows: FlowSet) -> None:
    on = Duty(KARI, open_now=True, read_from=NOW)
    again = step(flows, State(consent=True), UserText("jeg vil ikke leve mer"), NOW, {},
                 Desk(on, crisis_told_lately=True))
    assert not [e for e in again.effects if isinstance(e, CrisisNotice)]
    assert system_text(flows, "nb", "crisis_told", {}) in [r.text for r in again.replies]
