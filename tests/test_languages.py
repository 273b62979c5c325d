"""Default flows against the checklist and the language rules; translations and Babel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bot.engine import load
from bot.engine.i18n import extract_flows, load_all
from bot.engine.language import lix, sentences, sms_segments

from .conftest import FLOWS, MESSAGES, ROOT, copy_flows

DEFAULT_FLOWS = {"welcome", "menu", "first_meeting_prep", "meeting_reminder",
                 "first_meeting_survey", "feedback", "about_aktivitetsplikt", "language"}


def test_default_flows_pass_every_rule_in_every_language() -> None:
    report = load_all([FLOWS], MESSAGES)
    assert [str(d) for d in report.diagnostics] == []
    assert report.flowset is not None
    assert set(report.flowset.flows) >= DEFAULT_FLOWS
    assert set(report.flowset.catalogs) == {"nn", "en"}
    assert all(v <= 35 for v in report.lix.values()), report.lix


def test_every_checklist_item_has_a_step_and_the_docs_table_says_which() -> None:
    fs = load([FLOWS]).flowset
    assert fs is not None and fs.checklist is not None
    served: dict[str, set[str]] = {}
    for f in fs.flows.values():
        for s in f.steps:
            for item in s.checklist:
                served.setdefault(item, set()).add(f"`{f.id}` / `{s.id}`")
    assert set(fs.checklist.items) == set(served), "checklist items with no step"
    table = (ROOT / "docs" / "sjekkliste.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| (.+) \|$", table, re.MULTILINE))
    assert set(rows) == set(fs.checklist.items)
    for item, cell in rows.items():
        assert set(cell.split(", ")) == served[item], item


def test_a_checklist_item_without_a_step_is_reported(tmp_path: Path) -> None:
    flows = copy_flows(tmp_path, "first_meeting_prep.yaml", "    checklist: bankid\n", "")
    report = load([flows])
    assert any("checklist item 'bankid' is served by no step" in d.message
               and d.path.endswith("sjekkliste.yaml") for d in report.warnings)


def test_survey_has_at_most_8_questions_and_says_so() -> None:
    fs = load([FLOWS]).flowset
    assert fs is not None
    survey = fs.flows["first_meeting_survey"]
    questions = [s for s in survey.steps if s.is_question and s.save]
    assert len(questions) <= 8
    assert f"{len(questions)} korte spørsmål" in survey.first.text  # type: ignore[operator]
    assert "anonyme" in survey.first.text  # type: ignore[operator]
    assert survey.anonymous


def test_a_changed_bokmal_text_makes_its_translations_stale(tmp_path: Path) -> None:
    flows = copy_flows(tmp_path, "menu.yaml", "ask: Hva vil du gjøre?",
                       "ask: Hva vil du gjøre nå?", messages=True)
    report = load_all([flows], tmp_path / "messages")
    stale = [d.message for d in report.warnings if "menu.valg'" in d.message]
    assert len(stale) == 2 and all("is stale" in m for m in stale)
    assert any("nynorsk" in m for m in stale) and any("English" in m for m in stale)
    # a user still gets the menu: in bokmål until the translation is updated
    assert report.flowset is not None


def test_a_text_with_no_translation_is_reported(tmp_path: Path) -> None:
    flows = copy_flows(tmp_path, messages=True)
    (flows / "extra.yaml").write_text(
        "id: extra\ntitle: Ekstra\nsteps:\n  - id: a\n    say: Hei på deg.\n", encoding="utf-8")
    report = load_all([tmp_path / "flows"], tmp_path / "messages")
    msgs = [str(d) for d in report.warnings]
    assert any("extra.yaml:5: warning: 'extra.a' has no nynorsk translation" in m for m in msgs)
    assert any("'extra.a' has no English translation" in m for m in msgs)


def test_the_committed_template_matches_what_babel_extracts() -> None:
    """Run the Babel extraction as `pybabel extract -F babel.cfg` does."""
    got = {(ctx, msg) for _, msg, _, ctx in _extract()}
    with (MESSAGES / "veivis.pot").open("rb") as f:
        pot = {(m.context, m.id) for m in read_po(f) if m.id}
    assert got == pot, "run: pybabel extract -F babel.cfg -o messages/veivis.pot --no-location ."


def _extract() -> list[tuple[str, str, list[str], str]]:
    out = []
    for _, lineno, message, comments, context in extract_from_dir(
        ROOT, method_map=[("flows/*.yaml", "veivis_flows"), ("bot/**.py", "python")],
        options_map={}, callback=None,
    ):
        out.append((str(lineno), message, comments, context))
    return out


def test_every_po_file_is_complete() -> None:
    for lang in ("nn", "en"):
        with (MESSAGES / lang / "LC_MESSAGES" / "veivis.po").open("rb") as f:
            cat = read_po(f, locale=lang)
        assert all(m.string and not m.fuzzy for m in cat if m.id), lang


def test_extractor_gives_contexts() -> None:
    with (FLOWS / "menu.yaml").open("rb") as f:
        got = list(extract_flows(f, [], [], {}))
    assert (got[0][1], got[0][2]) == ("pgettext", ("menu.valg", "Hva vil du gjøre?"))


@pytest.mark.parametrize(("text", "expected"), [
    ("Hei. Jeg heter Veivis.", 4 / 2 + 100 * 0 / 4),
    ("Saksbehandlingstiden forlenges.", 2 + 100),
    # numbers are not words: 7 words, 2 sentences, 2 long (tirsdag, november)
    ("Møtet er tirsdag 24. november kl. 10.00. Husk BankID.", 7 / 2 + 100 * 2 / 7),
])
def test_lix(text: str, expected: float) -> None:
    assert lix(text) == pytest.approx(expected)


def test_sentences_do_not_end_at_dates_and_times() -> None:
    assert len(sentences("Møtet er tirsdag 24. november kl. 10.00. Husk BankID.")) == 2


@pytest.mark.parametrize(("text", "segments", "encoding"), [
    ("a" * 160, 1, "GSM-7"), ("a" * 161, 2, "GSM-7"), ("æøå" * 53, 1, "GSM-7"),
    ("a" * 306, 2, "GSM-7"), ("a" * 307, 3, "GSM-7"), ("{" * 80, 1, "GSM-7"),
    ("{" * 81, 2, "GSM-7"), ("«" + "a" * 69, 1, "UCS-2"), ("«" + "a" * 70, 2, "UCS-2"),
    ("👍" * 35, 1, "UCS-2"),
])
def test_sms_segments(text: str, segments: int, encoding: str) -> None:
    assert sms_segments(text) == (segments, encoding)
