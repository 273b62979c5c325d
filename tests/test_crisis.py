"""Crisis safety: the numbers at once, in every state, before any flow; the flow goes on."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.engine import StartFlow, State, UserText, load, step
from bot.engine.model import FlowSet
from bot.engine.runtime import Crisis
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.store import Store

from .conftest import NOW, ManualClock, answers, copy_flows, said, said_yes

CRISIS = ["jeg vil ikke leve mer", "Jeg vil ikke leve mer.", "JEG VIL DØ", "vil bare dø 😢",
          "tenker på å ta livet mitt", "har lyst å ta livet av meg", "selvmord",
          "jeg kutter meg", "orker ikke å leve", "noen truer meg nå", "eg vil ikkje leve",
          "I want to die", "i might kill myself", "jeg vil ikke være her lenger",
          "Jeg har tatt en overdose", "i går kuttet jeg meg igjen", "i kveld tar eg livet mitt",
          "etter at mamma dro tok jeg alle pillene"]
NOT_CRISIS = ["jeg dør av latter", "haha døde av latter", "ja", "nei", "møtet var dritbra",
              "vil ikke levere skjemaet", "drepe tida på bussen", "jeg vil ha ny tid",
              "lever du?", "", "selvmordsforebygging er viktig",
              "jeg har aldri tenkt på å ta livet mitt", "jeg kuttet meg på et glass i går",
              "har vært clean i to år og har sluttet å skade meg",
              "søstra mi slet med selvskading før", "jeg ble drept fem ganger i fortnite"]


@pytest.mark.parametrize("text", CRISIS)
def test_crisis_phrases_are_recognised(flows: FlowSet, text: str) -> None:
    assert flows.crisis.matches(text)


@pytest.mark.parametrize("text", NOT_CRISIS)
def test_look_alikes_are_not_crisis(flows: FlowSet, text: str) -> None:
    assert not flows.crisis.matches(text)


def numbers(replies: tuple) -> str:  # type: ignore[type-arg]
    return " ".join(r.text for r in replies)


@pytest.mark.parametrize("state", [State(), State(consent=True), State(stopped=True),
                                   State(pending="erase"), State(consent=True, lang="en")])
def test_numbers_come_at_once_in_any_state(flows: FlowSet, state: State) -> None:
    r = step(flows, state, UserText("jeg vil ikke leve mer"), NOW, {})
    text = numbers(r.replies)
    for n in ("113", "116 117", "116 123", "22 40 00 40"):
        assert n in text
    assert Crisis(False) in r.effects
    assert r.state == state  # nothing ended, nothing deflected


def test_inside_the_survey_the_flow_goes_on_and_the_text_stays_anonymous(flows: FlowSet) -> None:
    r = step(flows, State(consent=True), StartFlow("first_meeting_survey"), NOW, {})
    r = step(flows, r.state, UserText("ja"), NOW, {})
    at = r.state
    r = step(flows, at, UserText("Jeg vil ikke leve mer"), NOW, {})
    assert "116 123" in numbers(r.replies) and r.sensitive and Crisis(True) in r.effects
    assert r.state == at
    assert not any(getattr(e, "value", None) for e in r.effects)  # no answer stored
    r = step(flows, r.state, UserText("ja"), NOW, {})
    second = answers(flows.flows["first_meeting_survey"])[2][0]
    assert r.replies[0].text == said(flows, f"first_meeting_survey.{second.id}")  # it goes on


async def test_pipeline_logs_the_signal_without_the_text(tmp_path: Path, flows: FlowSet,
                                                         clock: ManualClock,
                                                         caplog: pytest.LogCaptureFixture
                                                         ) -> None:
    caplog.set_level(logging.INFO)
    store = await Store.open(tmp_path / "c.db")
    await seed_demo(store, NOW)
    await said_yes(store)  # (else the welcome comes before the survey)
    async with Pipeline(store, flows, clock) as p:
        await p.submit(FlowRequest("console", DEMO_USER_PHONE, "first_meeting_survey"))
        h = await p.submit(Inbound("console", DEMO_USER_PHONE, "jeg vil ikke leve mer", "k1"))
    assert "113" in h.replies[0].text
    assert "crisis signal" in caplog.text
    assert "leve" not in caplog.text and "91234567" not in caplog.text
    # typed inside the survey: no message-log row tied to the person, only a keyed hash
    assert await store.fetchall("SELECT * FROM inbound WHERE provider_id = 'k1'") == []
    assert await store.fetchall("SELECT COUNT(*) FROM seen_keys") == [(1,)]
    await store.close()


def test_the_checker_demands_the_numbers(tmp_path: Path) -> None:
    flows = copy_flows(tmp_path, "crisis.yaml", "22 40 00 40", "22 40 00 41")
    report = load([flows])
    assert any(d.message == "kriseflyten må gi nummeret 22 40 00 40"
               for d in report.errors)
    (flows / "crisis.yaml").unlink()
    report = load([flows])
    assert any("flyten 'crisis' med krisenumrene finnes ikke" in d.message
               for d in report.errors)
