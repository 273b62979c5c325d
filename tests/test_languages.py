"""Plain language, the checklist, translations kept by coordinators, and Babel extraction.

The shipped flows are the coordinators' own: tests here check them only as `veivis flows
check` does (no errors, no warnings), and use flows of their own for everything else.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.engine import StartFlow, State, load, step
from bot.engine.i18n import extract_flows, load_all
from bot.engine.language import lix, sentences, sms_segments
from bot.engine.loader import REQUIRED_FLOWS
from bot.timing.planner import notice, plan

from .conftest import FLOWS, MESSAGES, NOW, copy_flows, english_in, own_flows


def test_default_flows_pass_every_rule_in_every_language() -> None:
    """What `veivis flows check` promises for the shipped flows: no errors and no warnings,
    translations included (the guide asks coordinators to keep it so)."""
    report = load_all([FLOWS], MESSAGES)
    assert [str(d) for d in report.diagnostics] == []
    assert report.flowset is not None
    assert set(report.flowset.catalogs) == {"nn", "en"}


def test_the_flows_the_bot_starts_are_required_by_the_checker() -> None:
    """The checker knows every flow the planner schedules; a missing one is reported."""
    planned = {p.flow for p in plan(NOW.replace(month=12), True, NOW)}
    planned |= {notice(kind, NOW.replace(month=12), NOW).flow for kind in ("moved", "cancelled")}
    assert planned <= set(REQUIRED_FLOWS)


def test_a_missing_required_flow_is_reported_where_it_should_be(tmp_path: Path) -> None:
    flows = copy_flows(tmp_path)
    (flows / "menu.yaml").unlink()
    report = load([flows])
    assert [(d.path, d.line, d.severity) for d in report.warnings
            if "'menu' finnes ikke" in d.message] == [(str(flows / "menu.yaml"), 1, "warning")]


CHECKLIST = "id: sjekkliste\ntitle: S\nitems:\n  bankid: Minn om BankID.\n  tema: Spør om tema.\n"
SERVES = ("id: forbered\ntitle: F\nsteps:\n  - id: bankid\n    say: Husk BankID.\n"
          "    checklist: bankid\n")


def test_a_checklist_item_without_a_step_is_reported(tmp_path: Path) -> None:
    flows = own_flows(tmp_path / "flows", {"sjekkliste.yaml": CHECKLIST, "f.yaml": SERVES})
    report = load([flows])
    found = [(Path(d.path).name, d.line, d.message) for d in report.warnings
             if "sjekklisten" in d.message]
    assert found == [("sjekkliste.yaml", 5, "punktet 'tema' i sjekklisten har ikke noe steg; "
                      "skriv 'checklist: tema' i steget som gjør det")]


# -- translations: one plain file per language that coordinators keep -------------------------

FLOW = ("id: hei\ntitle: Hei\nsteps:\n  - id: valg\n    ask: Hva vil du nå?\n"
        "    type: choice\n    options:\n      - Se møtene mine\n      - Få hjelp\n")
NN = ("hei.valg:\n  bokmål: Hva vil du nå?\n  nynorsk: Kva vil du no?\n"
      "hei.valg.Se møtene mine:\n  bokmål: Se møtene mine\n  nynorsk: Sjå møta mine\n"
      "hei.valg.Få hjelp:\n  bokmål: Få hjelp\n  nynorsk: Få hjelp\n")


def translated(tmp_path: Path, flow: str = FLOW, nn: str = NN) -> tuple[Path, Path]:
    flows = own_flows(tmp_path / "flows", {"hei.yaml": flow})
    messages = tmp_path / "messages"
    messages.mkdir()
    (messages / "nn.yaml").write_text(nn, encoding="utf-8")
    return flows, messages


def test_a_translation_reaches_a_user_who_chose_nynorsk(tmp_path: Path) -> None:
    flows, messages = translated(tmp_path)
    report = load_all([flows], messages)
    fs = report.flowset
    assert fs is not None
    r = step(fs, State(consent=True, lang="nn"), StartFlow("hei"), NOW, {})
    assert r.replies[0].text == "Kva vil du no?"
    assert r.replies[0].choices == ("Sjå møta mine", "Få hjelp")
    # an English user has no translation in this folder: bokmål, and the checker says so
    missing = [str(d) for d in report.warnings
               if "mangler på engelsk" in d.message and d.path.endswith("hei.yaml")]
    assert len(missing) == 3 and all("./veivis flows translations" in m for m in missing)


def test_a_changed_bokmal_text_is_never_answered_with_the_old_translation(
        tmp_path: Path) -> None:
    flows, messages = translated(tmp_path, FLOW.replace("Hva vil du nå?",
                                                        "Hva vil du nå, da?"))
    report = load_all([flows], messages)
    fs = report.flowset
    assert fs is not None
    r = step(fs, State(consent=True, lang="nn"), StartFlow("hei"), NOW, {})
    assert r.replies[0].text == "Hva vil du nå, da?"  # bokmål until someone translates it
    stale = [str(d) for d in report.warnings if "er gammel" in d.message]
    assert stale == [f"{messages / 'nn.yaml'}:1: advarsel: nynorsk for 'hei.valg' er gammel: "
                     f"bokmålsteksten er endret ({flows / 'hei.yaml'}:5); kjør ./veivis flows "
                     "translations, og skriv ny tekst etter «nynorsk:»"]


@pytest.mark.parametrize(("nn", "line", "message"), [
    ("hei.valg:\n  bokmål: Hva vil du nå?\n  nynorsk: \"Kva vil du no?\n", 3,
     "et anførselstegn på denne linjen blir aldri lukket"),
    ("hei.valg:\n  bokmål: Hva vil du nå?\n  nynorsk: Husk: ta med BankID\n", 3,
     "kolon og mellomrom (': ') midt i en tekst; sett teksten i anførselstegn"),
    ("hei.valg:\n  bokmål: Hva vil du nå?\n  nynorsk: Kva vil du gjere, {fornamn}?\n", 3,
     "'hei.valg': {fornamn} står ikke i bokmålsteksten; bruk bare variablene derfra (ingen)"),
    ("hei.valg:\n  bokmål: Hva vil du nå?\n  nynorks: Kva vil du no?\n", 3,
     "ukjent nøkkel 'nynorks' i 'hei.valg' (mente du 'nynorsk'?)"),
    ("hei.valg: Kva vil du no?\n", 1,
     "'hei.valg' må ha linjene 'bokmål:' og 'nynorsk:' under seg"),
    ("hei.valg:\n  bokmål: Hva vil du nå?\n  nynorsk: {fornavn} kva vil du?\n", 3,
     "teksten etter 'nynorsk:' starter med '{' og blir ikke lest som tekst; sett anførselstegn "
     '(") rundt hele teksten'),
])
def test_a_broken_translation_is_an_error_at_its_line(tmp_path: Path, nn: str, line: int,
                                                      message: str) -> None:
    flows, messages = translated(tmp_path, nn=nn)
    report = load_all([flows], messages)
    errors = [(d.path, d.line, d.message) for d in report.errors]
    assert (str(messages / "nn.yaml"), line, message) in errors, errors
    assert all(not english_in(d.message) for d in report.diagnostics)


def test_a_translation_without_a_variable_of_the_bokmal_text_is_a_warning(
        tmp_path: Path) -> None:
    flow = FLOW.replace("Hva vil du nå?", "Hva vil du gjøre, {fornavn}?")
    nn = NN.replace("bokmål: Hva vil du nå?", "bokmål: Hva vil du gjøre, {fornavn}?")
    flows, messages = translated(tmp_path, flow, nn)
    report = load_all([flows], messages)
    assert [(d.line, d.message) for d in report.warnings if d.path.endswith("nn.yaml")] == [
        (3, "'hei.valg': {fornavn} står i bokmålsteksten, men ikke i oversettelsen")]


# -- Babel: the extractor still gives a gettext template for anyone who wants one -------------

def test_extractor_gives_contexts(tmp_path: Path) -> None:
    flows = own_flows(tmp_path / "flows", {"hei.yaml": FLOW}, system=False)
    with (flows / "hei.yaml").open("rb") as f:
        got = list(extract_flows(f, [], [], {}))
    assert [(g[1], g[2]) for g in got] == [
        ("pgettext", ("hei.valg", "Hva vil du nå?")),
        ("pgettext", ("hei.valg.Se møtene mine", "Se møtene mine")),
        ("pgettext", ("hei.valg.Få hjelp", "Få hjelp"))]
    assert list(extract_flows(io.BytesIO(b"x"), [], [], {})) == []  # no file name: nothing


def test_pybabel_extract_still_works_on_the_flows(tmp_path: Path) -> None:
    from babel.messages.extract import extract_from_dir
    flows = own_flows(tmp_path / "flows", {"hei.yaml": FLOW}, system=False)
    got = {(ctx, msg) for _, _, msg, _, ctx in extract_from_dir(
        tmp_path, method_map=[("flows/*.yaml", "veivis_flows")], options_map={},
        callback=None)}
    assert ("hei.valg", "Hva vil du nå?") in got and flows.is_dir()


# -- plain language ---------------------------------------------------------------------------

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
    # a two-septet character (€) or a two-unit emoji is never split between parts: one that
    # falls on a part's end moves to the next part, as the network (and Twilio) count
    ("a" * 152 + "€" + "a" * 152, 3, "GSM-7"), ("a" * 151 + "€" + "a" * 153, 2, "GSM-7"),
    ("{" * 153, 3, "GSM-7"), ("«" + "a" * 65 + "👍" + "a" * 66, 3, "UCS-2"),
    ("«" + "a" * 64 + "👍" + "a" * 67, 2, "UCS-2"),
])
def test_sms_segments(text: str, segments: int, encoding: str) -> None:
    assert sms_segments(text) == (segments, encoding)


def test_translations_never_write_into_the_installed_package(tmp_path: Path) -> None:
    """In a pip install the default messages folder is inside site-packages: an update there
    is lost at the next upgrade (and may not even be allowed)."""
    import bot

    from .test_cli import veivis
    flows = own_flows(tmp_path / "flows", {"hei.yaml": FLOW})
    inside = Path(bot.__file__).resolve().parent / "data" / "messages-test"
    p = veivis("flows", "translations", "--flows", str(flows), "--messages", str(inside))
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "ligger inne i den installerte Veivis-pakken" in p.stderr
    assert "VEIVIS_MESSAGES" in p.stderr
    assert not inside.exists()
