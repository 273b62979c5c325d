"""Crisis safety as a user and a veileder meet it (issue 14): both tiers, every state, each
language, a message to the veileder, any length, the corpus, the checker and `veivis krise
test`.

Texts in the shipped flow files belong to the coordinators, so nothing here pins their
wording: a test looks a text up in the loaded flows (and translations), checks for the numbers
the checker already requires, or uses a text of its own.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app.cli import main
from bot.app.demo import DEMO_USER_PHONE, DEMO_VEILEDER_PHONE
from bot.engine import StartFlow, State, UserText, load, step
from bot.engine.crisis import CLEAR, POSSIBLE, Word, explain
from bot.engine.i18n import load_all
from bot.engine.model import FlowSet, Kind
from bot.engine.runtime import (
    AnonymousAnswer,
    Crisis,
    CrisisNotice,
    Forward,
    Reply,
    system_text,
    tr,
)
from bot.engine.runtime import Desk as EngineDesk
from bot.service.pipeline import FlowRequest
from bot.timing.hours import Duty

from .conftest import FLOWS, MESSAGES, NOW, ROOT, Desk, ManualClock, copy_flows, shown

CORPUS = ROOT / "bench" / "crisis_corpus"
KARI = DEMO_VEILEDER_PHONE
KARI_DUTY = Duty(KARI, open_now=True, read_from=NOW)
ON = EngineDesk(KARI_DUTY)  # someone at NAV reads messages for this user now

# what a user might write, in each language; clear and possible signals
CLEAR_SAYS = {"nb": "jeg vil ikke leve lenger", "nn": "eg vil ikkje leve lenger",
              "en": "i dont want to live anymore"}
POSSIBLE_SAYS = {"nb": "jeg orker ikke mer", "nn": "eg orkar ikkje meir",
                 "en": "i cant do this anymore"}
YES = {"nb": "ja", "nn": "ja", "en": "yes"}
NO = {"nb": "nei", "nn": "nei", "en": "no"}


@pytest.fixture(scope="module")
def fs() -> FlowSet:
    """The shipped flows with their translations."""
    report = load_all([FLOWS], MESSAGES)
    assert not report.errors and report.flowset is not None
    return report.flowset


def said(replies: tuple[Reply, ...]) -> str:
    return " ".join(r.text for r in replies)


def has_all_numbers(fs: FlowSet, replies: tuple[Reply, ...]) -> bool:
    text = said(replies)
    return all(n in text for n in fs.crisis.required_numbers)


def crisis_text(fs: FlowSet, lang: str) -> str:
    """The crisis flow's first message in a language, as the flows and catalogs say it."""
    first = fs.flows["crisis"].steps[0]
    return tr(fs, lang, f"crisis.{first.id}", first.text or "")


def system(fs: FlowSet, lang: str, key: str) -> str:
    return tr(fs, lang, f"system.{key}", fs.texts[key])


# -- the corpus ---------------------------------------------------------------------------


def read_corpus(name: str) -> list[tuple[str, str]]:
    rows = (CORPUS / name).read_text(encoding="utf-8").splitlines()[1:]
    return [(r.split("\t")[0], r.split("\t", 2)[2]) for r in rows if r.strip()]


@pytest.mark.parametrize("part", ["heldout.tsv", "tuning.tsv", "dev.tsv", "fresh3.tsv",
                                  "probe.tsv"])
def test_the_detector_holds_on_the_corpus(flows: FlowSet, part: str) -> None:
    rows = read_corpus(part)
    crisis = [t for label, t in rows if label != "ikke"]
    alike = [t for label, t in rows if label == "ikke"]
    assert len(crisis) > 150 and len(alike) > 75
    recall = sum(flows.crisis.matches(t) for t in crisis) / len(crisis)
    false_alarms = sum(flows.crisis.matches(t) for t in alike) / len(alike)
    assert recall >= 0.95, recall
    assert false_alarms <= 0.02, false_alarms


def test_the_corpus_is_big_enough_and_split_once() -> None:
    held, tuning = read_corpus("heldout.tsv"), read_corpus("tuning.tsv")
    rows = held + tuning
    assert len(rows) >= 400
    assert sum(label != "ikke" for label, _ in rows) >= 250
    assert sum(label == "ikke" for label, _ in rows) >= 150
    assert not {t for _, t in held} & {t for _, t in tuning}  # no message in both parts


# -- clear signals: every state, each language -------------------------------------------

STATES = {
    "before consent": State(),
    "idle": State(consent=True),
    "after STOPP": State(consent=True, stopped=True),
    "waiting for a yes to SLETT": State(consent=True, pending="erase"),
}


@pytest.mark.parametrize("lang", ["nb", "nn", "en"])
@pytest.mark.parametrize("where", list(STATES))
def test_a_clear_signal_gets_the_numbers_at_once_in_any_state(fs: FlowSet, where: str,
                                                              lang: str) -> None:
    state = State(**{**STATES[where].to_json(), "lang": lang})
    r = step(fs, state, UserText(CLEAR_SAYS[lang]), NOW, {}, ON)
    assert has_all_numbers(fs, r.replies)
    assert r.replies[0].text == crisis_text(fs, lang)  # in the user's language
    assert Crisis(False) in r.effects and CrisisNotice(KARI_DUTY) in r.effects
    assert r.state == state  # nothing ended, nothing deflected


@pytest.mark.parametrize("lang", ["nb", "nn", "en"])
def test_inside_an_anonymous_flow_nav_is_told_only_after_a_yes(fs: FlowSet, lang: str) -> None:
    r = step(fs, State(consent=True, lang=lang), StartFlow("first_meeting_survey"), NOW, {}, ON)
    r = step(fs, r.state, UserText(YES[lang]), NOW, {}, ON)
    at = r.state
    r = step(fs, at, UserText(CLEAR_SAYS[lang]), NOW, {}, ON)
    assert has_all_numbers(fs, r.replies) and r.sensitive
    assert Crisis(True) in r.effects and CrisisNotice(KARI_DUTY) not in r.effects
    assert not any(isinstance(e, AnonymousAnswer) for e in r.effects)  # not kept as an answer
    r = step(fs, r.state, UserText(YES[lang]), NOW, {}, ON)
    assert CrisisNotice(KARI_DUTY) in r.effects
    survey = fs.flows["first_meeting_survey"]
    question = survey.step(at.step or "")
    assert question is not None
    assert r.replies[-1].text == shown(fs, lang, survey.id, question)


# -- possible signals: the check-in ----------------------------------------------------------


@pytest.mark.parametrize("lang", ["nb", "nn", "en"])
def test_a_possible_signal_gets_a_check_in_with_the_numbers(fs: FlowSet, lang: str) -> None:
    r = step(fs, State(consent=True, lang=lang), UserText(POSSIBLE_SAYS[lang]), NOW, {}, ON)
    assert fs.crisis.check(POSSIBLE_SAYS[lang]).tier == POSSIBLE
    assert [x.text for x in r.replies] == [system(fs, lang, "crisis_check")]
    assert "116 123" in r.replies[0].text and "113" in r.replies[0].text
    assert r.replies[0].choices == (system(fs, lang, "yes"), system(fs, lang, "no"))
    assert Crisis(False, possible=True) in r.effects
    assert CrisisNotice(KARI_DUTY) not in r.effects  # nobody is told before the user answers
    assert r.state.pending == "checkin"


@pytest.mark.parametrize("lang", ["nb", "nn", "en"])
@pytest.mark.parametrize("answer", ["yes", "not sure"])
def test_a_yes_to_the_check_in_gets_the_crisis_flow(fs: FlowSet, lang: str, answer: str) -> None:
    r = step(fs, State(consent=True, lang=lang), UserText(POSSIBLE_SAYS[lang]), NOW, {}, ON)
    text = YES[lang] if answer == "yes" else {"nb": "vet ikke", "nn": "veit ikkje",
                                               "en": "maybe"}[lang]
    r = step(fs, r.state, UserText(text), NOW, {}, ON)
    assert has_all_numbers(fs, r.replies) and r.replies[0].text == crisis_text(fs, lang)
    assert Crisis(False) in r.effects and CrisisNotice(KARI_DUTY) in r.effects
    assert r.state.pending is None


@pytest.mark.parametrize("lang", ["nb", "nn", "en"])
def test_a_no_to_the_check_in_goes_back_to_the_question(fs: FlowSet, lang: str) -> None:
    r = step(fs, State(consent=True, lang=lang), StartFlow("first_meeting_prep"), NOW, {})
    at = r.state
    r = step(fs, at, UserText(POSSIBLE_SAYS[lang]), NOW, {}, ON)
    r = step(fs, r.state, UserText(NO[lang]), NOW, {}, ON)
    assert r.replies[0].text == system(fs, lang, "crisis_check_no")
    prep = fs.flows["first_meeting_prep"]
    question = prep.step(at.step or "")
    assert question is not None and question.kind is Kind.CHOICE
    assert r.replies[1].text == tr(fs, lang, f"{prep.id}.{question.id}", question.text or "")
    assert not any(isinstance(e, Crisis | CrisisNotice) for e in r.effects)
    assert r.state == at  # the flow goes on where it was


def test_anything_else_after_the_check_in_is_read_as_usual(fs: FlowSet) -> None:
    r = step(fs, State(consent=True), StartFlow("first_meeting_prep"), NOW, {})
    r = step(fs, r.state, UserText("orker ikke mer"), NOW, {})
    r = step(fs, r.state, UserText("1"), NOW, {})  # the answer to the question it asked
    assert r.state.pending is None and r.state.step != "sted"
    assert not any(isinstance(e, Crisis) for e in r.effects)


def test_the_check_in_inside_an_anonymous_flow(fs: FlowSet) -> None:
    r = step(fs, State(consent=True), StartFlow("first_meeting_survey"), NOW, {}, ON)
    r = step(fs, r.state, UserText("ja"), NOW, {}, ON)
    r = step(fs, r.state, UserText("ingen hadde savnet meg"), NOW, {}, ON)
    assert r.sensitive and r.state.pending == "checkin"
    assert Crisis(True, possible=True) in r.effects
    r = step(fs, r.state, UserText("ja"), NOW, {}, ON)
    assert r.sensitive and has_all_numbers(fs, r.replies)
    assert r.state.pending == "crisis"  # may we tell NAV? (the text stays anonymous)
    assert CrisisNotice(KARI_DUTY) not in r.effects
    r = step(fs, r.state, UserText("ja"), NOW, {}, ON)
    assert CrisisNotice(KARI_DUTY) in r.effects


def test_the_check_in_text_is_the_coordinators(tmp_path: Path) -> None:
    own = "Eget spørsmål til testen: tenker du på å skade deg? Ring 116 123 eller 113."
    folder = copy_flows(tmp_path, "system.yaml", "  crisis_check: >-\n",
                        f'  crisis_check: "{own}"\n  old_check: >-\n')
    text = (folder / "system.yaml").read_text(encoding="utf-8")
    start = text.index("  old_check: >-\n")
    end = text.index("  crisis_check_no:")
    (folder / "system.yaml").write_text(text[:start] + text[end:], encoding="utf-8")
    report = load([folder])
    assert not report.errors, [str(d) for d in report.errors]
    assert report.flowset is not None
    r = step(report.flowset, State(consent=True), UserText("orker ikke mer"), NOW, {})
    assert r.replies[0].text == own


# -- any length -------------------------------------------------------------------------------


def test_any_length_is_read_and_fast(flows: FlowSet) -> None:
    ordinary = ("Jeg har lest brevet om møtet på tirsdag og lurer på om jeg kan ta med en "
                "venn, for jeg blir nervøs. ")
    long_text = ordinary * (60_000 // len(ordinary))
    assert len(long_text) > 50_000 and not flows.crisis.matches(long_text)
    t0 = time.perf_counter()
    verdict = flows.crisis.check(long_text + "Jeg vil ikke leve lenger.")
    assert time.perf_counter() - t0 < 3.0  # about 0.1 s on a laptop; generous for CI
    assert verdict.tier == CLEAR
    r = step(flows, State(consent=True), UserText("x" * 5001 + " jeg vil dø"), NOW, {})
    assert has_all_numbers(flows, r.replies)  # the old 5,000-character cut-off is gone


def test_one_long_word_without_spaces_costs_no_more_than_rule_words(
        flows: FlowSet, monkeypatch: pytest.MonkeyPatch) -> None:
    """4,000 letters without a space (Telegram allows 4,096) made millions of spelling
    candidates: the process was killed after 85 s (found by the issue-19 helper). A word
    longer than every rule word by more than two letters cannot be a misspelling of one."""
    import bot.engine.crisis as crisis_module

    longest = max(len(w) for r in flows.crisis.rules for e in r.elems
                  if isinstance(e, Word) for w in e.words)
    seen: list[int] = []
    deletes = crisis_module._deletes

    def counted(word: str, n: int) -> set[str]:
        seen.append(len(word))
        assert len(word) <= longest + 2, f"spelling candidates of a {len(word)}-letter word"
        return deletes(word, n)

    monkeypatch.setattr(crisis_module, "_deletes", counted)
    rng = random.Random(14)
    word = "".join(rng.choice("abcdefghijklmnoprstuv0123456789") for _ in range(4_000))
    assert flows.crisis.check(f"jeg vil dø {word}").tier == CLEAR
    assert not flows.crisis.matches(word)
    assert seen  # short words are still corrected


def test_many_writer_words_in_a_row_cost_in_proportion(flows: FlowSet) -> None:
    """«jeg jeg jeg …»: every «jeg» starts a {jeg} rule and may be skipped inside one, so each
    start scanned to the end of the message (4,096 letters took 4 s; found by an attacker).
    Four times the words must cost about four times as much, not sixteen (best of three,
    one run, so the machine's load moves both sides)."""
    def cost(words: int) -> float:
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            assert flows.crisis.check("jeg " * words + "jeg vil dø").tier == CLEAR
            best = min(best, time.perf_counter() - t0)
        return best

    assert cost(1024) < 8 * cost(256)


@pytest.mark.parametrize("text", [
    "jeg orker ikke jeg vil dø", "klarer ikke dette jeg vil dø",
    "det går ikke jeg vil ta livet mitt", "orker ikke skolen jeg vil ta livet mitt"])
def test_a_no_in_the_clause_before_does_not_cancel_a_crisis_without_punctuation(
        flows: FlowSet, text: str) -> None:
    """Young people often write without commas: «ikke» in the clause before a new «jeg …»
    is not a negation of it (found by an attacker: all four got no crisis reply)."""
    assert flows.crisis.check(text).tier == CLEAR
    for joined in ("ikke at jeg vil dø altså", "det er ikke jeg som vil dø"):
        assert flows.crisis.check(joined).tier is None  # these still negate


# -- a message to the veileder -------------------------------------------------------------


def test_a_crisis_written_to_the_veileder_is_forwarded_marked(fs: FlowSet) -> None:
    r = step(fs, State(consent=True), StartFlow("message_veileder"), NOW, {}, ON)
    r = step(fs, r.state, UserText("Hei Kari. Jeg vil ikke leve lenger."), NOW, {}, ON)
    assert has_all_numbers(fs, r.replies) and CrisisNotice(KARI_DUTY) in r.effects
    forward = next(e for e in r.effects if isinstance(e, Forward))
    assert "Jeg vil ikke leve lenger." in forward.text and forward.text.startswith("(")
    assert forward.duty == KARI_DUTY
    assert r.state.flow is None  # the message was sent: the flow is done
    # outside hours the step says honestly when it is read, and the numbers stay
    closed = EngineDesk(Duty(KARI, open_now=False, read_from=NOW + timedelta(hours=20)))
    r = step(fs, State(consent=True), StartFlow("message_veileder"), NOW, {}, closed)
    r = step(fs, r.state, UserText("Hei Kari. Jeg vil ikke leve lenger."), NOW, {}, closed)
    assert has_all_numbers(fs, r.replies)
    assert r.replies[-1].text.startswith(system_text(fs, "nb", "forward_closed", {})[:20])


async def test_in_hours_the_veileder_gets_the_notice_and_the_message(d: Desk) -> None:
    await d.user("VEILEDER")
    got = await d.user("jeg har tatt masse piller")
    assert all(n in " ".join(got) for n in ("113", "116 123"))
    to_kari = await d.to(KARI)
    assert len(to_kari) == 2
    assert to_kari[0].startswith("HASTER") and "912 34 567" in to_kari[0]
    assert "jeg har tatt masse piller" in to_kari[1]


async def test_outside_hours_the_message_waits_for_the_veileder(d: Desk,
                                                                clock: ManualClock) -> None:
    clock.now = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)  # 23.00 in Oslo
    await d.user("VEILEDER")
    got = await d.user("jeg vil ikke leve lenger")
    text = " ".join(got)
    assert all(n in text for n in ("113", "116 117", "116 123", "22 40 00 40"))
    assert d.pipeline.flows.texts["crisis_nobody"] in text  # nobody reads it now: said so
    rows = await d.store.fetchall("SELECT text, due_at FROM outbox WHERE address = ?",
                                  (KARI,))
    assert len(rows) == 1 and "jeg vil ikke leve lenger" in rows[0][0]
    assert rows[0][1] > clock.now.isoformat()  # held until someone reads it


async def test_a_possible_signal_to_the_veileder_is_sent_and_a_yes_tells_nav(d: Desk) -> None:
    await d.user("VEILEDER")
    got = await d.user("orker ikke mer, alt er tungt")
    assert "116 123" in got[0]
    assert any("orker ikke mer, alt er tungt" in t for t in await d.to(KARI))
    got = await d.user("ja")
    assert all(n in " ".join(got) for n in ("113", "116 117", "116 123", "22 40 00 40"))
    assert any(t.startswith("HASTER") for t in await d.to(KARI))


async def test_a_crisis_before_consent_reaches_the_pipeline_user(d: Desk) -> None:
    async with d.store.transaction() as c:
        await c.execute("UPDATE users SET consent = NULL")
    got = await d.user("jeg har lyst til å dø")
    assert all(n in " ".join(got) for n in ("113", "116 123"))


# -- logs --------------------------------------------------------------------------------------


async def test_logs_say_the_tier_never_the_text(d: Desk, caplog: pytest.LogCaptureFixture
                                                ) -> None:
    caplog.set_level(logging.INFO)
    await d.user("ingen hadde savnet meg")
    await d.user("ja")
    await d.pipeline.submit(FlowRequest("console", DEMO_USER_PHONE, "message_veileder"))
    await d.user("jeg vil dø")
    assert "possible crisis signal" in caplog.text and "clear crisis signal" in caplog.text
    for secret in ("savnet", "dø", "91234567", "912 34 567"):
        assert secret not in caplog.text


# -- the checker and `veivis krise test` -------------------------------------------------------

BROKEN = """\
id: krise
title: Krise-ord
words:
  nekting: [ikke]
  andre: [han]
  folk: [mamma]
  jeg: [jeg]
  vet: [vet]
  mer: [mer]
  fyll: [nå]
  ny_setning: [og]
  bisetning: [at]
  dø: [dø]
  tom: []
phrases:
  - vil ... {døø}
  - ... dø
  - sel*mord
  - vil ... ... dø
  - vil dø|$
  - vil dø
  - vil dø
not:
  - "[dør]"
possible:
  - "[ikke] orker"
ekstra: 1
required_numbers: ["113"]
"""


def test_mistakes_in_krise_yaml_are_told_in_norwegian_at_their_line(tmp_path: Path) -> None:
    folder = copy_flows(tmp_path)
    (folder / "krise.yaml").write_text(BROKEN, encoding="utf-8")
    report = load([folder])
    got = {(d.line, d.severity): d.message for d in report.diagnostics
           if d.path.endswith("krise.yaml")}
    assert "ordgruppen «tom» må være en liste med ord" in got[14, "error"]
    assert "ukjent ordgruppe {døø} – mente du {dø}?" in got[16, "error"]
    assert "«...» kan ikke stå først eller sist" in got[17, "error"]
    assert "«*» kan bare stå først eller sist i et ord" in got[18, "error"]
    assert "to «...» etter hverandre" in got[19, "error"]
    assert "«$» må stå alene" in got[20, "error"]
    assert "står to ganger" in got[22, "warning"]
    assert "alle ordene står i [klammer]" in got[24, "error"]
    assert "brukes bare under «not»" in got[26, "error"]
    assert "ukjent nøkkel «ekstra»" in got[27, "error"]
    assert report.errors
    lines = [str(d) for d in report.errors if d.path.endswith("krise.yaml")]
    assert all(line.startswith(f"{folder / 'krise.yaml'}:") for line in lines)


def test_a_phrase_an_exception_swallows_is_pointed_out(tmp_path: Path) -> None:
    folder = copy_flows(tmp_path, "krise.yaml", "\nnot:\n", "\nnot:\n  - svart hull\n")
    path = folder / "krise.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "\nphrases:\n", "\nphrases:\n  - et svart hull\n"), encoding="utf-8")
    report = load([folder])
    assert any("«et svart hull» slår aldri ut: unntaket «svart hull»" in d.message
               for d in report.warnings if d.path.endswith("krise.yaml"))


def test_krise_test_tells_a_coordinator_what_and_why(capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    assert main(["krise", "test", "--flows", str(FLOWS), "jeg vil bare dø"]) == 0
    out = capsys.readouterr().out
    assert "Utløser: JA – tydelig tegn" in out and "krise.yaml:" in out
    assert "Traff: «vil bare dø»" in out
    assert main(["krise", "test", "--flows", str(FLOWS), "orker ikke mer"]) == 0
    assert "mulig tegn" in capsys.readouterr().out
    assert main(["krise", "test", "--flows", str(FLOWS), "jeg dør av latter"]) == 1
    out = capsys.readouterr().out
    assert "Utløser: NEI" in out and "Unntak" in out and "«dør av latter»" in out
    assert main(["krise", "test", "--flows", str(FLOWS), "jeg vil ikke dø"]) == 1
    assert "«ikke» står mellom ordene" in capsys.readouterr().out


# -- spellings, rule-word forms and gaps (a small krise.yaml of the test's own) -----------

OWN = """\
id: krise
title: Krise-ord
words:
  nekting: [ikke, not]
  andre: [han, hun]
  folk: [mamma]
  jeg: [jeg, eg, æ]
  vet: [vet]
  mer: [mer]
  fyll: [nå, altså, bare]
  ny_setning: [og, men]
  bisetning: [at, om]
  tung: [dø, tau]
  nød: [håpløst, ensom]
spellings:
  ikke: [ikkje, itj]
  hjem: [heim]
  jeg: [eg, æ]
phrases:
  - tør ikke gå hjem
  - kjøre ... i fjellveggen
  - vil ... dø
  - kuttet meg
  - kuttet meg ... med vilje
  - ingen vits å leve
  - tar livet av meg
  - orker ikke mer $
  - stå på brua
  - ikke leve lenger
together:
  - "{tung} + {nød}"
not:
  - "!{jeg} tar livet av meg"
  - "kuttet meg på !vilje"
emoji:
  🪦: død
required_numbers: ["113"]
"""


def own_rules(tmp_path: Path, text: str = OWN, model: str | None = None) -> FlowSet:
    """The shipped flows with this krise.yaml (and, with `model`, this model file as m.tsv)."""
    folder = copy_flows(tmp_path)
    if model is not None:
        text += "model: m.tsv\n"
        (folder / "m.tsv").write_text(model, encoding="utf-8")
    (folder / "krise.yaml").write_text(text, encoding="utf-8")
    report = load([folder])
    assert report.flowset is not None and not report.errors, [str(d) for d in report.errors]
    return report.flowset


def test_a_rule_in_bokmal_catches_the_spellings_listed_for_it(tmp_path: Path) -> None:
    crisis = own_rules(tmp_path).crisis
    for text in ("tør ikke gå hjem", "æ tør itj gå heim", "eg tør ikkje gå heim"):
        assert crisis.check(text).tier == CLEAR, text
    assert not crisis.matches("tør ikke gå ut")  # only the words listed count


def test_a_rule_word_matches_its_base_form_and_six_words_may_stand_between(tmp_path: Path
                                                                           ) -> None:
    crisis = own_rules(tmp_path).crisis
    assert crisis.matches("skal kjøre i fjellvegg")  # «fjellveggen» in the rule
    assert crisis.matches("jeg vil egentlig bare helt ærlig snart dø")  # six words between
    assert not crisis.matches("jeg vil gjerne ha en is og en brus før vi alle dør")  # seven
    assert not crisis.matches("jeg vil ikke dø")  # a negation still cancels


def test_mistakes_in_spellings_are_told_at_their_line(tmp_path: Path) -> None:
    text = OWN.replace("  jeg: [eg, æ]\n", "  jeg: [eg, itj]\n  hjemme: hjem\n  true: [ja]\n")
    folder = copy_flows(tmp_path)
    (folder / "krise.yaml").write_text(text, encoding="utf-8")
    report = load([folder])
    got = {(d.line, d.severity): d.message for d in report.diagnostics
           if d.path.endswith("krise.yaml")}
    assert "«itj» står både under «ikke» (linje 16) og under «jeg»" in got[18, "error"]
    assert "«hjemme» må ha en liste med skrivemåter" in got[19, "error"]
    assert "skriv ett ord foran kolon" in got[20, "error"]


def test_a_filler_word_may_stand_between_the_words_of_a_rule(tmp_path: Path) -> None:
    crisis = own_rules(tmp_path).crisis
    assert crisis.matches("det er ingen vits altså å leve")
    assert crisis.matches("ingen vits bare å leve")
    assert not crisis.matches("ingen vits i å leve")  # «i» is no filler word here


def test_the_words_that_join_a_clause_are_the_coordinators(tmp_path: Path) -> None:
    """`bisetning` in krise.yaml: after one of its words a «jeg» starts no new clause, so the
    «ikke» before it still counts; the list is read from the file, not from the code."""
    assert not own_rules(tmp_path / "a").crisis.matches("ikke at jeg vil dø")
    without = OWN.replace("  bisetning: [at, om]\n", "  bisetning: [om]\n")
    assert own_rules(tmp_path / "b", without).crisis.matches("ikke at jeg vil dø")


def test_a_krise_yaml_from_before_bisetning_still_loads(tmp_path: Path) -> None:
    """An operator's own flows folder from an older version has no `bisetning`: the flows
    still load (a warning at `words`, saying which words are used meanwhile), and the reader
    reads as before."""
    older = OWN.replace("  bisetning: [at, om]\n", "")
    folder = copy_flows(tmp_path)
    (folder / "krise.yaml").write_text(older, encoding="utf-8")
    report = load([folder])
    assert report.flowset is not None and not report.errors
    warned = [d for d in report.warnings if d.path.endswith("krise.yaml")]
    assert any("«bisetning» mangler" in d.message and d.line == 3 for d in warned)
    assert report.flowset.crisis is not None
    assert not report.flowset.crisis.matches("ikke at jeg vil dø")
    assert report.flowset.crisis.matches("jeg orker ikke jeg vil dø")


def test_words_written_without_norwegian_letters_and_emoji_at_the_end(tmp_path: Path
                                                                      ) -> None:
    crisis = own_rules(tmp_path).crisis
    assert crisis.matches("ma sta pa brua")  # å written as a
    assert crisis.matches("orker ikke mer 🪦")  # an emoji may follow «$»
    assert not crisis.matches("orker ikke mer matte")


def test_together_needs_every_part_somewhere_in_the_message(tmp_path: Path) -> None:
    crisis = own_rules(tmp_path).crisis
    v = crisis.check("alt er håpløst. tenker på tau")
    assert v.tier == POSSIBLE and v.hit is not None and v.hit.span == "håpløst + tau"
    assert not crisis.matches("tenker på tau")  # one part alone
    assert not crisis.matches("det er ikke håpløst, jeg kjøpte tau")  # negated part
    assert not crisis.matches("han er ensom og vil dø")  # about another person


def test_an_exception_with_a_bang_is_off_right_after_the_writer(tmp_path: Path) -> None:
    crisis = own_rules(tmp_path).crisis
    assert not crisis.matches("skolen tar livet av meg")  # the idiom: taken out
    assert crisis.check("jeg tar livet av meg om dette ikke går").tier == CLEAR


def test_an_english_only_word_in_a_norwegian_message_counts_as_a_typo(tmp_path: Path
                                                                      ) -> None:
    crisis = own_rules(tmp_path).crisis
    assert crisis.matches("jeg vil ikke lere lenger")  # «lere» is English only: «leve»
    assert crisis.matches("jeg vil ikke leve lenger")
    assert not crisis.matches("jeg vil ikke lese lenger")  # a Norwegian word stays as it is


def test_mistakes_in_together_and_bang_are_told_at_their_line(tmp_path: Path) -> None:
    text = OWN.replace('  - "{tung} + {nød}"\n', '  - "{tung} +"\n  - "{tung} + vil ... dø"\n')
    text = text.replace("  - orker ikke mer $\n", "  - \"!{jeg} orker ikke mer\"\n")
    folder = copy_flows(tmp_path)
    (folder / "krise.yaml").write_text(text, encoding="utf-8")
    report = load([folder])
    got = {d.line: d.message for d in report.errors if d.path.endswith("krise.yaml")}
    lines = text.splitlines()
    at = {n + 1: line for n, line in enumerate(lines)}
    bang = next(n for n, line in at.items() if "!{jeg} orker" in line)
    plus = next(n for n, line in at.items() if line.strip() == '- "{tung} +"')
    assert "brukes bare først eller sist i et unntak under «not»" in got[bang]
    assert "skriv to eller flere ord eller ordgrupper med «+»" in got[plus]
    assert "under «together» er hver del ett ord" in got[plus + 1]


def test_an_exception_ending_with_a_bang_is_off_when_that_word_follows(tmp_path: Path
                                                                       ) -> None:
    crisis = own_rules(tmp_path).crisis
    assert not crisis.matches("kuttet meg på et papir")  # an accident: taken out
    assert crisis.check("kuttet meg på armen med vilje").tier == CLEAR


def test_two_words_typed_without_a_space_are_read_as_two(tmp_path: Path) -> None:
    crisis = own_rules(tmp_path).crisis
    assert crisis.matches("jegvil dø")
    assert crisis.matches("ikkeleve lenger")
    assert not crisis.matches("jegvil hjem")  # the rest matches no rule word


def test_the_writer_may_stand_inside_a_rule_after_an_adverb(tmp_path: Path) -> None:
    crisis = own_rules(tmp_path).crisis
    assert crisis.check("i går kuttet jeg meg").tier == CLEAR  # the verb before the subject
    assert crisis.check("i går kuttet æ meg").tier == CLEAR  # a spelling of «jeg» too
    assert not crisis.matches("i går kuttet han meg")  # another word still breaks the rule


def test_a_match_across_a_comma_is_a_possible_signal(tmp_path: Path) -> None:
    crisis = own_rules(tmp_path).crisis
    assert crisis.check("jeg vil, dø").tier == POSSIBLE  # a comma where no clause ends
    v = crisis.check("jeg vil, bare dø")
    assert v.hit is not None and v.hit.across
    assert "går over et komma" in "\n".join(explain(v))
    assert crisis.check("jeg vil bare dø").tier == CLEAR  # without the comma: clear
    assert not crisis.matches("jeg vil. dø")  # a full stop still ends the sentence
    assert not crisis.matches("jeg vil, men dø")  # so does a comma before a new clause
    assert not crisis.matches("jeg vil, ikke dø")  # a negation still cancels


# -- the learned model (off in the shipped flows; krise.yaml may name one) -----------------

MODEL = """\
veivis-krise-modell 1
# a test model: «mørkt» and «tomt» weigh towards crisis, «kurs» away
=chars\t3 5
=words\t1
=prior\t0
=threshold\t0.15
wmørkt\t3.0
wtomt\t3.0
wkurs\t-3.0
"""


def with_model(tmp_path: Path, model: str = MODEL) -> FlowSet:
    return own_rules(tmp_path, OWN, model)


def test_the_model_adds_only_a_check_in_when_no_rule_matched(tmp_path: Path) -> None:
    crisis = with_model(tmp_path).crisis
    v = crisis.check("mørkt tomt")
    assert v.tier == POSSIBLE and v.hit is not None and v.score is not None
    assert v.score == crisis.check("mørkt tomt").score  # the same message, the same score
    lines = "\n".join(explain(v, crisis.model))
    assert "lærte modellen" in lines and "«mørkt»" in lines and "grensen er 0.15" in lines
    assert crisis.check("jeg vil bare dø").tier == CLEAR  # the rules still decide first
    assert not crisis.matches("mørkt tomt kurs kurs")  # below the threshold
    assert not crisis.matches("ja")
    assert own_rules(tmp_path / "without").crisis.check("mørkt tomt").tier is None


@pytest.mark.parametrize(("model", "said"), [
    ("", "første linje må være «veivis-krise-modell 1»"),
    (MODEL.replace("wkurs\t-3.0", "wkurs\ttre"), "m.tsv, linje 9: «tre» er ikke et tall"),
    (MODEL.replace("=threshold\t0.15\n", ""), "fila må ha =prior, =threshold"),
    (MODEL.replace("wtomt\t3.0", "wtomt 3.0"), "m.tsv, linje 8: hver linje må ha et navn"),
])
def test_a_broken_model_file_is_told_at_the_model_line(tmp_path: Path, model: str,
                                                       said: str) -> None:
    folder = copy_flows(tmp_path)
    (folder / "krise.yaml").write_text(OWN + "model: m.tsv\n", encoding="utf-8")
    (folder / "m.tsv").write_text(model, encoding="utf-8")
    report = load([folder])
    line = OWN.count("\n") + 1
    got = [d for d in report.errors if d.path.endswith("krise.yaml")]
    assert got and got[0].line == line and said in got[0].message, [str(d) for d in got]


def test_a_missing_model_file_is_told_in_norwegian(tmp_path: Path) -> None:
    folder = copy_flows(tmp_path)
    (folder / "krise.yaml").write_text(OWN + "model: borte.tsv\n", encoding="utf-8")
    report = load([folder])
    assert any("modellfila «borte.tsv» finnes ikke" in d.message for d in report.errors)
    (folder / "krise.yaml").write_text(OWN + "model: ../../etc/passwd\n", encoding="utf-8")
    report = load([folder])
    assert any("navnet på en .tsv-fil i samme mappe" in d.message for d in report.errors)


def test_a_changed_krise_yaml_or_model_file_is_read_again_and_mistakes_told_again(
        tmp_path: Path) -> None:
    """The loader keeps what it compiled from krise.yaml's exact bytes (and its model file's):
    an edit to either, even of one letter, is read again; the same bytes give the same
    mistakes at the same lines every time."""
    crisis = own_rules(tmp_path).crisis
    assert crisis is not None and not crisis.matches("et svart hull")
    folder = tmp_path / "flows"
    path = folder / "krise.yaml"
    path.write_text(OWN.replace("  - stå på brua\n", "  - et svart hull\n"), encoding="utf-8")
    again = load([folder])
    assert again.flowset is not None and again.flowset.crisis is not None
    assert again.flowset.crisis.matches("et svart hull")
    assert not again.flowset.crisis.matches("stå på brua")
    path.write_text(BROKEN, encoding="utf-8")
    first = [str(d) for d in load([folder]).diagnostics]
    assert any("krise.yaml:13:" in d for d in first)
    assert [str(d) for d in load([folder]).diagnostics] == first
    # the model file: missing, then there, then changed
    path.write_text(OWN + "model: m.tsv\n", encoding="utf-8")
    assert any("modellfila «m.tsv» finnes ikke" in d.message for d in load([folder]).errors)
    (folder / "m.tsv").write_text(MODEL, encoding="utf-8")
    assert not load([folder]).errors
    (folder / "m.tsv").write_text(MODEL.replace("veivis-krise-modell 1", "noe annet"),
                                  encoding="utf-8")
    assert load([folder]).errors


def test_a_save_while_the_rules_are_compiled_is_read_at_the_next_load(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A coordinator saves krise.yaml while a load compiles the version before: the next load
    must read the new one (it was kept under the new bytes with the old rules; found by an
    attacker: 9 of 40 real races)."""
    import bot.engine.loader as loader_module

    own_rules(tmp_path)
    folder = tmp_path / "flows"
    path = folder / "krise.yaml"
    path.write_text(OWN + "\n", encoding="utf-8")  # bytes this process has not compiled
    read_yaml = loader_module.read_yaml

    def saved_meanwhile(*args: Any, **kwargs: Any) -> Any:
        got = read_yaml(*args, **kwargs)  # parsed: the save lands before it is compiled
        if str(args[0]).endswith("krise.yaml"):
            path.write_text(OWN.replace("  - stå på brua\n", "  - kjøpe tau i dag\n"),
                            encoding="utf-8")
        return got

    monkeypatch.setattr(loader_module, "read_yaml", saved_meanwhile)
    load([folder])
    monkeypatch.setattr(loader_module, "read_yaml", read_yaml)
    after = load([folder]).flowset
    assert after is not None and after.crisis is not None
    assert after.crisis.matches("kjøpe tau i dag")
