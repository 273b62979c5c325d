"""The pure engine: global words, re-asks, anonymity, edits while a user is inside a flow."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bot.engine import (
    AnonymousAnswer,
    EraseUser,
    FlowEnded,
    SaveAnswer,
    SetStopped,
    StartFlow,
    State,
    UserText,
    load,
    step,
)
from bot.engine.model import FlowSet
from bot.engine.templates import render

from .conftest import FLOWS, NOW, own_flows, said
from .ownflows import ALL

CTX = {"fornavn": "Sara", "veileder": "Kari Nordmann", "kontor": "NAV Gjøvik"}

# The engine's own flows (tests/ownflows.py); the shipped system texts, compared through
# `said`, never quoted.


@pytest.fixture(scope="module")
def flows(tmp_path_factory: pytest.TempPathFactory) -> FlowSet:
    report = load([own_flows(tmp_path_factory.mktemp("engine") / "flows", ALL)])
    assert not report.errors and report.flowset is not None, report.errors
    return report.flowset


def say(flows: FlowSet, state: State, *texts: str) -> tuple[State, list[str]]:
    out: list[str] = []
    for t in texts:
        r = step(flows, state, UserText(t), NOW, CTX)
        state = r.state
        out.extend(x.text for x in r.replies)
    return state, out


def in_survey(flows: FlowSet) -> State:
    r = step(flows, State(consent=True), StartFlow("survey"), NOW, CTX)
    state, _ = say(flows, r.state, "ja")
    assert state.step == "a"
    return state


@pytest.mark.parametrize("word", ["HJELP", "hjelp", "Hjelp!", "help"])
def test_help_works_in_any_state_and_keeps_the_flow(flows: FlowSet, word: str) -> None:
    state = in_survey(flows)
    r = step(flows, state, UserText(word), NOW, CTX)
    assert r.replies[0].text == said(flows, "system.help", kontor="NAV Gjøvik")
    assert r.state.flow == "survey" and r.state.step == "a"


def test_stop_then_nothing_until_start(flows: FlowSet) -> None:
    state = in_survey(flows)
    r = step(flows, state, UserText("STOPP"), NOW, CTX)
    assert SetStopped(True) in r.effects
    assert [x.text for x in r.replies] == [said(flows, "system.stopped")]
    assert r.state.stopped and r.state.flow is None
    state, out = say(flows, r.state, "hallo", "ja", "2")
    assert out == []
    # a scheduled flow start is also silent while stopped
    assert step(flows, state, StartFlow("menu"), NOW, CTX).replies == ()
    r = step(flows, state, UserText("start"), NOW, CTX)
    assert SetStopped(False) in r.effects and not r.state.stopped
    assert [x.text for x in r.replies] == [said(flows, "system.started")]


def test_stop_twice_answers_once(flows: FlowSet) -> None:
    _, out = say(flows, State(), "stopp", "STOPP")
    assert len(out) == 1


def test_erase_needs_a_yes(flows: FlowSet) -> None:
    state = in_survey(flows)
    r = step(flows, state, UserText("slett"), NOW, CTX)
    assert r.replies[0].text == said(flows, "system.erase_confirm")
    assert r.replies[0].choices == (said(flows, "system.yes"), said(flows, "system.no"))
    no = step(flows, r.state, UserText("nei"), NOW, CTX)
    assert EraseUser() not in no.effects
    assert [x.text for x in no.replies] == [said(flows, "system.erase_kept")]
    assert no.state.step == "a"  # back where they were
    unclear = step(flows, r.state, UserText("hæ?"), NOW, CTX)
    assert EraseUser() not in unclear.effects  # unclear is never a yes to deleting
    yes = step(flows, r.state, UserText("ja"), NOW, CTX)
    assert EraseUser() in yes.effects
    assert [x.text for x in yes.replies] == [said(flows, "system.erased")]
    assert yes.state.flow is None and yes.state.answers == {}


def test_menu_word_leaves_the_flow(flows: FlowSet) -> None:
    state = in_survey(flows)
    r = step(flows, state, UserText("meny"), NOW, CTX)
    assert FlowEnded("survey", False) in r.effects
    assert r.state.flow == "menu" and r.replies[0].choices == ("Møtet mitt", "Noe annet")
    assert r.replies[0].numbered


def test_unclear_answer_reasks_then_offers_help(flows: FlowSet) -> None:
    state = in_survey(flows)
    state, out = say(flows, state, "kanskje")
    assert out == [said(flows, "system.reask_yesno")]
    state, out = say(flows, state, "hmm")
    assert out == [said(flows, "system.stuck")]
    assert state.step == "a"
    state, out = say(flows, state, "ja")
    assert state.step == "b" and state.tries == 0


def test_optional_question_can_be_skipped(flows: FlowSet) -> None:
    state, _ = say(flows, in_survey(flows), "ja", "4")
    assert state.step == "c"
    r = step(flows, state, UserText("hopp"), NOW, CTX)
    assert [x.text for x in r.replies] == [said(flows, "system.skipped"), "Takk."]
    assert not any(isinstance(e, AnonymousAnswer) and e.key == "mer" for e in r.effects)
    assert FlowEnded("survey", True) in r.effects


def test_survey_answers_are_anonymous_effects_and_not_kept_in_state(flows: FlowSet) -> None:
    state = in_survey(flows)
    r = step(flows, state, UserText("ja"), NOW, CTX)
    assert r.effects == (AnonymousAnswer("survey", "bra", "ja"),)
    assert r.sensitive and r.state.answers == {}
    state, _ = say(flows, r.state, "4")
    r = step(flows, state, UserText("Møtet var fint"), NOW, CTX)
    assert AnonymousAnswer("survey", "mer", "Møtet var fint") in r.effects
    assert r.sensitive
    assert "Møtet var fint" not in str(r.state.to_json())


def test_declining_the_survey_ends_it_politely(flows: FlowSet) -> None:
    r = step(flows, State(consent=True), StartFlow("survey"), NOW, CTX)
    state, out = say(flows, r.state, "nei takk")
    assert out == ["Helt greit."] and state.flow is None


def test_first_contact_welcomes_then_messages_open_the_menu(flows: FlowSet) -> None:
    r = step(flows, State(), UserText(""), NOW, CTX)
    assert r.replies == ()
    r = step(flows, State(), UserText("hei"), NOW, CTX)
    assert r.state.flow == "welcome" and r.replies[0].text == "Velkommen hit."
    r = step(flows, State(consent=True), UserText("hei"), NOW, CTX)
    assert r.state.flow == "menu"


def test_welcome_sets_language_and_consent(flows: FlowSet) -> None:
    from bot.engine.runtime import SetConsent, SetLanguage
    state, _ = say(flows, State(), "hei")
    r = step(flows, state, UserText("nynorsk"), NOW, CTX)
    assert SetLanguage("nn") in r.effects and r.state.lang == "nn"
    r = step(flows, r.state, UserText("nei"), NOW, CTX)
    assert SetConsent(False) in r.effects and SetStopped(True) in r.effects
    assert r.state.stopped and r.state.consent is False
    assert r.replies[-1].text == "Greit. Skriv START hvis du vil."  # told how to come back
    # START again: the next message asks again
    state, _ = say(flows, r.state, "start")
    r = step(flows, state, UserText("hei"), NOW, CTX)
    assert r.state.flow == "welcome"


def test_step_is_deterministic(flows: FlowSet) -> None:
    state = in_survey(flows)
    a = step(flows, state, UserText("jepp"), NOW, CTX)
    b = step(flows, state, UserText("jepp"), NOW, CTX)
    assert a == b


def test_user_text_is_never_a_template(tmp_path: Path, flows: FlowSet) -> None:
    assert render("Hei {fornavn}!", {"fornavn": "{veileder}"}) == "Hei {veileder}!"
    assert render("{{fornavn}}", {"fornavn": "x"}) == "{fornavn}"
    assert render("Hei {fornavn}!", {}) == "Hei du!"
    # a saved answer shown back is inserted as written
    (tmp_path / "echo.yaml").write_text(
        "id: echo\ntitle: Ekko\nsteps:\n  - id: a\n    ask: Hvor?\n    type: text\n"
        "    save: sted\n  - id: b\n    say: Du skrev {sted}.\n", encoding="utf-8")
    report = load([FLOWS / "system.yaml", tmp_path / "echo.yaml"])
    assert report.flowset is not None, [str(d) for d in report.diagnostics]
    fs = report.flowset
    r = step(fs, State(consent=True), StartFlow("echo"), NOW, CTX)
    r = step(fs, r.state, UserText("{kontor} {0.__class__} %s"), NOW, CTX)
    assert r.replies[0].text == "Du skrev {kontor} {0.__class__} %s."
    assert SaveAnswer("echo", "sted", "{kontor} {0.__class__} %s") in r.effects


def _edited(tmp_path: Path, body: str) -> FlowSet:
    (tmp_path / "f.yaml").write_text(body, encoding="utf-8")
    report = load([FLOWS / "system.yaml", tmp_path / "f.yaml"])
    assert report.flowset is not None, [str(d) for d in report.diagnostics]
    return report.flowset


V1 = """id: f
title: F
steps:
  - id: a
    ask: Kommer du?
    type: yesno
  - id: b
    ask: Hvor?
    type: text
  - id: c
    say: Takk
"""


def test_flow_edited_while_user_is_in_it(tmp_path: Path) -> None:
    v1 = _edited(tmp_path, V1)
    r = step(v1, State(consent=True), StartFlow("f"), NOW, {})
    r = step(v1, r.state, UserText("ja"), NOW, {})
    assert r.state.step == "b"
    # the question the user is at still exists: they go on from there
    v2 = _edited(tmp_path, V1.replace("Takk", "Tusen takk"))
    assert v2.flows["f"].version != v1.flows["f"].version
    r2 = step(v2, r.state, UserText("NAV"), NOW, {})
    assert [x.text for x in r2.replies] == ["Tusen takk"]
    # the question was removed: they are moved on safely with a plain note
    v3 = _edited(tmp_path, V1.replace("  - id: b\n    ask: Hvor?\n    type: text\n", ""))
    r3 = step(v3, r.state, UserText("NAV"), NOW, {})
    assert "endret" in r3.replies[0].text and r3.state.flow is None
    assert FlowEnded("f", False) in r3.effects


def test_state_round_trips_through_json(flows: FlowSet) -> None:
    state = replace(in_survey(flows), tries=1, answers={"x": "y"})
    assert State.from_json(state.to_json()) == state


def test_a_changed_state_keeps_every_other_field() -> None:
    """The engine's copy-with-changes sets every field State has (a field added to State
    and not to it would be lost at the next step) and equals dataclasses.replace."""
    from dataclasses import fields

    from bot.engine import runtime

    assert tuple(f.name for f in fields(State)) == runtime._EVOLVED
    s = State(flow="f", version="v", step="s", answers={"a": "b"}, tries=2, pending="erase",
              stopped=True, consent=False, lang="en", started_at="t", meeting=7,
              then=State(flow="g"))
    assert runtime._evolve(s) == s
    changed = {"flow": "x", "version": "y", "step": "z", "answers": {}, "tries": 0,
               "pending": None, "stopped": False, "consent": True, "lang": "nn",
               "started_at": None, "meeting": None, "then": None}
    for k, v in changed.items():
        assert runtime._evolve(s, **{k: v}) == replace(s, **{k: v}), k
    with pytest.raises(AssertionError):
        runtime._evolve(s, nosuch=1)
