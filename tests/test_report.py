"""The report for the resource group: what it says, what it hides, and how it looks in a real
browser."""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from bot.app.demo import seed_demo
from bot.engine import load
from bot.engine.model import Flow, FlowSet, Kind, Option, Pos, Step, Texts
from bot.reports.digest import make_report
from bot.reports.formats import csv_text, html, markdown
from bot.reports.report import (
    HIDDEN,
    AnonRow,
    Period,
    PeriodError,
    build,
    period_containing,
    period_of,
    protect,
)
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.store import AnonymousRow, Store
from bot.store.anonymous import write_anonymous

from . import browser
from .conftest import FLOWS, NOW, ROOT, ManualClock, said_yes

WEEK47 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)  # Wednesday of week 47
WEEK45 = datetime(2026, 11, 4, 11, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def flows() -> FlowSet:
    """The report's own survey and feedback (tests/report_flows: ids, saves and labels as the
    report reads them), so a coordinator's edit to the shipped flows changes nothing here."""
    report = load([Path(__file__).parent / "report_flows", FLOWS / "system.yaml"])
    assert not report.errors and report.flowset is not None, report.errors
    return report.flowset


# -- small groups ------------------------------------------------------------------------------

@pytest.mark.parametrize(("counts", "shown"), [
    ([9, 3], [None, None]),  # the 3 is hidden, and then the 9 too: 12 - 9 = 3
    ([12, 0], [12, 0]),
    ([2, 6, 7], [None, None, 7]),
    ([1, 2], [None, None]),  # fewer than 5 in all
    ([5, 5, 3, 3], [5, 5, None, None]),  # two hidden already: nothing more to hide
    ([0, 0, 4, 10], [None, None, None, None]),  # beside hidden cells, a 0 is hidden too
    ([0, 8, 0, 6], [0, 8, 0, 6]),
])
def test_small_counts_are_hidden_with_a_second_one(counts: list[int],
                                                   shown: list[int | None]) -> None:
    assert protect(counts) == shown


@given(st.lists(st.integers(min_value=0, max_value=40), min_size=2, max_size=6))
def test_no_hidden_count_can_be_worked_out(counts: list[int]) -> None:
    shown = protect(counts)
    hidden = [i for i, c in enumerate(shown) if c is None]
    assert all(c is None or c == 0 or c >= 5 for c in shown)  # no small number is shown
    if sum(counts) >= 5:
        # a single hidden cell would be the total minus the others: never just one
        assert len(hidden) != 1
        # the hidden ones together are never a small group that could be told apart
        assert len(hidden) == 0 or sum(counts[i] for i in hidden) >= 2
        # knowing the total, each hidden cell could still be more than one number: a shown
        # 0 would say each hidden cell is at least 1, and hidden cells adding up to their
        # own number would then all be 1
        if hidden:
            assert all(c is None for c, n in zip(shown, counts, strict=True) if n == 0)
    else:
        assert hidden == list(range(len(counts)))


def test_periods_are_fixed_and_over() -> None:
    p = period_of(NOW)  # Monday 23 November (week 48): the last period that is over
    assert p.keys == ("2026-W46", "2026-W47")
    assert p.label() == "uke 46–47 2026 (9. november–22. november)"
    assert p.before().keys == ("2026-W44", "2026-W45")
    # any day of a period names that period, and no period overlaps another
    assert period_of(NOW, week=date(2026, 11, 11)) == p
    assert period_of(NOW, week=date(2026, 11, 4)) == p.before()
    for n in range(200):
        day = date(2026, 1, 1) + timedelta(days=n)
        q = period_containing(day)
        assert q.first <= day <= q.last_day and q.weeks == 2
        assert q == period_containing(q.first) == period_containing(q.last_day)
    # the period going on now cannot be reported: a report a day later would differ from
    # it by one day's answers
    with pytest.raises(PeriodError, match="ikke over"):
        period_of(NOW, week=date(2026, 11, 23))
    assert Period(date(2026, 12, 28), 2).keys == ("2026-W53", "2027-W01")


# -- through the pipeline ------------------------------------------------------------------------

async def answer_survey(p: Pipeline, phone: str, answers: list[str]) -> None:
    await said_yes(p.store, phone, "sms")
    await p.submit(FlowRequest("sms", phone, "first_meeting_survey"))
    for i, t in enumerate(["ja", *answers]):
        await p.submit(Inbound("sms", phone, t, f"{phone}-s{i}"))


async def send_feedback(p: Pipeline, phone: str, topic: str, text: str) -> None:
    await said_yes(p.store, phone, "sms")
    await p.submit(FlowRequest("sms", phone, "feedback"))
    await p.submit(Inbound("sms", phone, topic, f"{phone}-f1"))
    await p.submit(Inbound("sms", phone, text, f"{phone}-f2"))
    await p.submit(Inbound("sms", phone, "nei", f"{phone}-f3"))


@pytest.fixture
async def store(tmp_path: Path) -> Store:
    s = await Store.open(tmp_path / "r.db")
    await seed_demo(s, NOW)
    return s


async def test_a_report_from_real_answers(store: Store, flows: FlowSet) -> None:
    clock = ManualClock(WEEK47)
    async with Pipeline(store, flows, clock) as p:
        for n in range(15):  # 15 answered; 7 got a number to call
            yes = "ja" if n < 7 else "nei"
            await answer_survey(p, f"+479100{n:04d}",
                                ["ja", "ja", "ja", "ja", yes, "ja", str(4 + n % 2), "HOPP"])
        for n in range(6):
            await send_feedback(p, f"+479200{n:04d}", "2" if n < 5 else "3",
                                f"Kurset er for langt unna, sier nummer {n}")
        clock.now = WEEK45  # the period before: 5 answered, 2 of them got a number
        for n in range(5):
            await answer_survey(p, f"+479300{n:04d}",
                                ["ja", "ja", "ja", "ja", "ja" if n < 2 else "nei", "ja", "3",
                                 "HOPP"])
    rep = await make_report(store, flows, NOW)
    assert rep.summary[:3] == ["15 svarte på spørsmålene etter første møte.",
                               "15 av 15 ble spurt hva som er viktigst for dem nå.",
                               "15 av 15 fikk se planen sin og vite at de eier den."]
    assert "7 av 15 fikk et nummer de kan ringe eller sende SMS til." in rep.summary
    assert "Hvor fornøyd med møtet (1 til 5): 4,5 i snitt (forrige periode 3,0)." in rep.summary
    # the sixth wrote on a topic nobody else did: it waits, sealed, until 4 more do
    assert rep.summary[-1] == "5 sendte en melding til ressursgruppa."
    tel = next(q for q in rep.questions if q.key == "telefon")
    # the period before: 2 yes and 3 no, both hidden
    assert [(c.label, c.count, c.before) for c in tel.cells] == [("Ja", 7, None),
                                                                 ("Nei", 8, None)]
    groups = [(g.label, g.count, len(g.texts)) for g in rep.feedback]
    assert groups == [("Aktiviteten min", 5, 5)]
    # nothing in the report names anyone
    page = html(rep)
    for phone in ("+4791000000", "91000000", "Sara", "Hansen"):
        assert phone not in page


async def test_hidden_cells_and_offices(store: Store, flows: FlowSet) -> None:
    rows = []
    for n in range(13):
        rows += [AnonymousRow("first_meeting_survey", "telefon", "ja" if n < 10 else "nei",
                              "NAV Gjøvik" if n < 10 else "NAV Vestre Toten"),
                 AnonymousRow("first_meeting_survey", "karakter", str(4 + n % 2),
                              "NAV Gjøvik" if n < 10 else "NAV Vestre Toten")]
    async with store.transaction() as c:
        await write_anonymous(c, rows, WEEK47)
    rep = await make_report(store, flows, NOW)
    tel = next(q for q in rep.questions if q.key == "telefon")
    assert [c.count for c in tel.cells] == [None, None]  # 3 said no: both hidden
    assert not any("et nummer de kan ringe" in s for s in rep.summary)
    assert rep.offices == [("NAV Gjøvik", None), ("NAV Vestre Toten", None)]
    text = markdown(rep)
    assert "| Ja | skjult |  | skjult |  |" in text
    assert "| Nei | skjult |  | skjult |  |" in text


async def test_feedback_is_grouped_by_topic_and_small_topics_pooled(store: Store,
                                                                  flows: FlowSet) -> None:
    rows = [AnonymousRow("feedback", "melding_aktivitet", f"aktivitet {i}") for i in range(5)]
    rows += [AnonymousRow("feedback", "melding_penger", "penger"),
             AnonymousRow("feedback", "melding", "uten tema")]
    async with store.transaction() as c:
        await write_anonymous(c, rows, WEEK47)
    rep = await make_report(store, flows, NOW)
    assert [(g.label, g.count) for g in rep.feedback] == [
        ("Aktiviteten min", 5), ("Andre tema (færre enn 5 hver)", None)]
    assert sorted(rep.feedback[1].texts) == ["penger", "uten tema"]
    # fewer than 5 messages in all (the period before has 2): none shown
    async with store.transaction() as c:
        await write_anonymous(c, rows[5:], WEEK47 - timedelta(weeks=2))
    rep = await make_report(store, flows, NOW, week=date(2026, 11, 2))
    assert rep.feedback == [] and rep.feedback_n is None


async def test_the_formats(store: Store, flows: FlowSet) -> None:
    rows = [AnonymousRow("first_meeting_survey", "karakter", str(1 + i % 5)) for i in range(10)]
    rows += [AnonymousRow("first_meeting_survey", "telefon", "ja") for _ in range(10)]
    rows += [AnonymousRow("first_meeting_survey", "kommentar", "<b>fint</b> & greit")
             for _ in range(5)]
    async with store.transaction() as c:
        await write_anonymous(c, rows, WEEK47)
    rep = await make_report(store, flows, NOW)
    page = html(rep)
    assert "<script" not in page and "default-src 'none'" in page
    assert "&lt;b&gt;fint&lt;/b&gt; &amp; greit" in page  # texts are escaped
    assert "10 av 10 fikk et nummer de kan ringe eller sende SMS til." in page
    HTMLParser().feed(page)
    table = list(csv.reader(io.StringIO(csv_text(rep).removeprefix("\ufeff")), delimiter=";"))
    assert table[0][:6] == ["periode", "kontor", "skjema", "spørsmål", "svar", "antall"]
    karakter = [r for r in table if r[3].startswith("Hvor fornøyd")]
    assert [r[4:6] for r in karakter] == [["1", HIDDEN], ["2", HIDDEN], ["3", HIDDEN],
                                         ["4", HIDDEN], ["5", HIDDEN]]
    assert HIDDEN in markdown(rep)


def veivis(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**os.environ, "VEIVIS_CONFIG": ""})


async def test_the_command(store: Store, tmp_path: Path) -> None:
    two_weeks_ago = datetime.now(UTC) - timedelta(weeks=2)  # in the last period that is over
    async with store.transaction() as c:
        await write_anonymous(c, [AnonymousRow("feedback", "melding", "hei")] * 6,
                              two_weeks_ago)
    await store.close()
    r = veivis("report", "--format", "md", "--db", store.path)
    assert r.returncode == 0, r.stderr
    assert "6 sendte en melding til ressursgruppa." in r.stdout
    out = tmp_path / "r.html"
    r = veivis("report", "--period", two_weeks_ago.strftime("%d.%m.%Y"), "--format", "html",
               "--out", str(out), "--db", store.path)
    assert r.returncode == 0 and out.read_text(encoding="utf-8").startswith("<!doctype html>")
    # the period going on now: refused, with a period that can be had
    r = veivis("report", "--period", datetime.now(UTC).strftime("%d.%m.%Y"), "--db",
               store.path)
    assert r.returncode == 1 and "ikke over ennå" in r.stderr and "Traceback" not in r.stderr
    r = veivis("report", "--period", "lenge", "--db", store.path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    r = veivis("report", "--since", "1.1.2026", "--db", store.path)  # gone: reports overlapped
    assert r.returncode == 2


# -- in a real browser -----------------------------------------------------------------------------

CHROMIUM = browser.find_chromium()


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("VEIVIS_REQUIRE_BROWSER"),
                    reason="no chromium here (CI installs it and sets VEIVIS_REQUIRE_BROWSER)")
async def test_the_html_renders_in_chromium_on_a_phone(store: Store, flows: FlowSet,
                                                      tmp_path: Path) -> None:
    """The page as a resource group member sees it on a phone 390 px wide. The old page was
    429 px wide with these numbers (the «Endring» column cut off) and a long word went off
    the screen, while `scrollWidth - innerWidth` said 0."""
    assert CHROMIUM is not None, "VEIVIS_REQUIRE_BROWSER is set but chromium is missing"
    now, before = [], []
    for step in _answered_steps(flows, "first_meeting_survey"):
        now += _answers(step, {"NAV Gjøvik": 14, "NAV Vestre Toten": 2, None: 7}, 0)
        before += _answers(step, {"NAV Gjøvik": 9, "NAV Vestre Toten": 6}, 1)
    now += [AnonymousRow("feedback", "melding_mote", f"Veilederen hørte på meg ({i}). "
                         + "Heeeeeei" * 12) for i in range(6)]  # a long word, no spaces
    async with store.transaction() as c:
        await write_anonymous(c, now, WEEK47)
        await write_anonymous(c, before, WEEK45)
    page = tmp_path / "rapport.html"
    report = await make_report(store, flows, NOW)
    page.write_text(html(report), encoding="utf-8")
    width = 390
    got = await browser.render(CHROMIUM, page.as_uri(), width=width, evaluate={
        "text": "document.body.innerText",
        "layout": browser.LAYOUT,
        "bars": "document.querySelectorAll('svg rect').length",
    })
    (browser.artifact_dir() / "report-phone.png").write_bytes(got.screenshot)
    assert got.errors == []
    assert got.requests == [page.as_uri()]  # nothing else was loaded
    assert report.summary[0] in got.values["text"]
    layout = got.values["layout"]
    assert layout["right"] <= width, f"{layout['widest']} reaches {layout['right']} px"
    assert layout["left"] >= 0
    assert layout["clipped"] <= 0.5, f"the chart cuts off {layout['clippedText']!r}"
    assert "Endring" in got.values["text"] and HIDDEN in got.values["text"]
    assert got.values["bars"] > 0
    assert got.screenshot.startswith(b"\x89PNG") and len(got.screenshot) > 10_000


def _answered_steps(flows: FlowSet, flow_id: str) -> list[Step]:
    """The questions of a shipped flow whose answers are kept, whatever they are now."""
    flow = flows.get(flow_id)
    assert flow is not None
    return [s for s in flow.steps if s.save and s.is_question]


def _answers(step: Step, offices: dict[str | None, int], shift: int) -> list[AnonymousRow]:
    """Answers to a question, spread so that the report shows hidden cells beside shown ones
    and a change since the period before («+12 poeng»): the widest table. Offices take turns
    by their weight."""
    n = sum(offices.values())
    if step.kind is Kind.YESNO:
        values = ["ja"] * n + ["nei"] * (n // 8 + shift)
    elif step.kind is Kind.CHOICE:
        values = [o.value for i, o in enumerate(step.options) for _ in range(1 + (i + shift) * 3)]
    elif step.kind in (Kind.SCALE, Kind.NUMBER):
        lo = step.min if step.min is not None else 1
        values = [str(lo + 3)] * n + [str(lo + 1 - shift)] * 2 + [str(lo + 4)] * (n // 2)
    else:
        values = [f"Tekst {i}" for i in range(n)]
    turns = [office for office, k in offices.items() for _ in range(k)]
    return [AnonymousRow("first_meeting_survey", step.save or "", v, turns[i % len(turns)])
            for i, v in enumerate(values)]


# -- nothing untrue about a hidden number, in any format --------------------------------------
#
# A flow set of the test's own (never the shipped wording): a yes/no, a choice, a 1-5 scale and
# a free text in the survey, three feedback topics. For any counts, every count the report
# writes, in every format and in the digest's summary, is either the true number, the neutral
# mark «skjult», or «færre enn 5» about a number that is below 5.

_P = Pos("test.yaml", 1)
_OWN_SURVEY = (
    Step("a", _P, "Fikk du hjelp?", Kind.YESNO, save="a", label="fikk hjelp"),
    Step("b", _P, "Hvor møttes dere?", Kind.CHOICE, save="b", label="hvor de møttes",
         options=(Option("På kontoret", "kontor"), Option("Ute", "ute"),
                  Option("På video", "video"))),
    Step("c", _P, "Hvor fornøyd?", Kind.SCALE, save="c", label="hvor fornøyd", min=1, max=5),
    Step("d", _P, "Noe mer?", Kind.TEXT, save="d", label="noe mer", optional=True),
)
_OWN_TOPICS = ("t1", "t2", "t3")
_OWN_VALUES = {"a": ("ja", "nei"), "b": ("kontor", "ute", "video"),
               "c": ("1", "2", "3", "4", "5"), "d": ("fint",)}
_OWN_LABELS = {"a": ("Ja", "Nei"), "b": ("På kontoret", "Ute", "På video"),
               "c": ("1", "2", "3", "4", "5")}
_OFFICES = ("NAV Øst", "NAV Vest", None)


def own_flows() -> FlowSet:
    def flow(fid: str, steps: tuple[Step, ...]) -> Flow:
        return Flow(fid, fid, _P, steps, "v1", anonymous=True,
                    index={s.id: i for i, s in enumerate(steps)})
    topics = tuple(Step(t, _P, "Skriv.", Kind.TEXT, save=t, label=f"Tema {t}")
                   for t in _OWN_TOPICS)
    return FlowSet({"first_meeting_survey": flow("first_meeting_survey", _OWN_SURVEY),
                    "feedback": flow("feedback", topics)}, Texts(_P, {}, {}))


Counts = dict[tuple[str, str, str | None], int]  # (question, value, office) -> how many


def _rows(counts: Counts, flow_of: Callable[[str], str]) -> list[AnonRow]:
    return [AnonRow(flow_of(q), q, v, o, n) for (q, v, o), n in counts.items() if n]


def _flow_of(q: str) -> str:
    return "feedback" if q in _OWN_TOPICS else "first_meeting_survey"


_counts = st.dictionaries(
    st.one_of(*[st.tuples(st.just(q), st.sampled_from(vs), st.sampled_from(_OFFICES))
                for q, vs in _OWN_VALUES.items()],
              st.tuples(st.sampled_from(_OWN_TOPICS), st.just("tekst"), st.just(None))),
    st.integers(min_value=0, max_value=12), max_size=24)


def _true(shown: str, n: int) -> bool:
    """Does what the report wrote say something true about the number n?"""
    return shown == str(n) or shown == "skjult" or (shown == "færre enn 5" and n < 5)


class _Truth:
    """The true numbers behind a report of `now` (and `before`), looked up by what a reader
    sees: a question's heading and an answer's label."""

    def __init__(self, now: Counts, before: Counts) -> None:
        self.now, self.before = now, before
        self.heading = {s.label[:1].upper() + s.label[1:]: s.save for s in _OWN_SURVEY
                        if s.label and s.save}

    @staticmethod
    def _sum(c: Counts, q: str, v: str | None = None, o: object = ...) -> int:
        return sum(n for (q2, v2, o2), n in c.items()
                   if q2 == q and v in (None, v2) and o in (..., o2))

    def cell(self, heading: str, label: str, before: bool = False) -> int:
        q = self.heading[heading]
        value = _OWN_VALUES[q][_OWN_LABELS[q].index(label)]
        return self._sum(self.before if before else self.now, q, value)

    def answered(self, heading: str) -> int:
        return self._sum(self.now, self.heading[heading])

    def survey(self, before: bool = False, office: object = ...) -> int:
        c = self.before if before else self.now
        return max(self._sum(c, q, None, office) for q in _OWN_VALUES)

    def office(self, name: str) -> int:
        return self.survey(office=None if name == "Uten kontor" else name)

    def feedback(self, before: bool = False) -> int:
        return sum(self._sum(self.before if before else self.now, t) for t in _OWN_TOPICS)

    def topic(self, label: str) -> int:
        if label.startswith("Andre tema"):
            return sum(n for t in _OWN_TOPICS if (n := self._sum(self.now, t)) < 5)
        return self._sum(self.now, label.removeprefix("Tema "))


def _claims_csv(text: str, t: _Truth) -> list[tuple[str, str, int]]:
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:]), delimiter=";"))[1:]
    out = []
    for _, office, form, question, answer, n, _, n_before, _ in rows:
        if form == "deltakelse":
            if question == "sendte melding":
                out += [("sendte", n, t.feedback()), ("sendte før", n_before,
                                                      t.feedback(True))]
            elif office == "alle":
                out += [("svarte", n, t.survey()), ("svarte før", n_before, t.survey(True))]
            else:
                out.append((office, n, t.office(office)))
        elif answer == "(fritekst)":
            out.append((question, n, t.answered(_heading(question))))
        elif answer != "snitt":
            h = _heading(question)
            out += [(f"{question}/{answer}", n, t.cell(h, answer)),
                    (f"{question}/{answer} før", n_before, t.cell(h, answer, True))]
    return out


def _heading(label: str) -> str:
    return label[:1].upper() + label[1:]


def _claims_tables(sections: list[tuple[str, list[list[str]]]], said: list[str],
                   t: _Truth) -> list[tuple[str, str, int]]:
    """Claims in the tables and headings of the HTML or the Markdown: `sections` is each
    heading with the table rows under it; `said` every other line of text."""
    out = []
    for heading, rows in sections:
        if heading == "Hvem svarte, per kontor":
            out += [(o, n, t.office(o)) for o, n in rows]
        elif heading in t.heading:
            out += [(f"{heading}/{r[0]}", r[1], t.cell(heading, r[0])) for r in rows]
            out += [(f"{heading}/{r[0]} før", r[3], t.cell(heading, r[0], True)) for r in rows]
        elif m := re.fullmatch(r"((?:Tema|Andre tema).*) \((.+)\)", heading):  # feedback
            out.append((heading, m[2], t.topic(m[1])))
    for line in said:
        for m in re.finditer(r"Svarte: ([^.]+)\.", line):
            q = next(h for h in t.heading if h.lower()[:-1] in line.lower()
                     or _question_of(h) in line)
            out.append((line, m[1], t.answered(q)))
    return out


def _question_of(heading: str) -> str:
    return next(s.text or "" for s in _OWN_SURVEY if s.label and _heading(s.label) == heading)


class _Page(HTMLParser):
    """The HTML as a reader sees it: headings with the table rows under them, and text."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[tuple[str, list[list[str]]]] = []
        self.said: list[str] = []
        self._tag: str | None = None
        self._text = ""
        self._row: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("h2", "h3", "p", "td", "th", "text", "blockquote"):
            self._tag, self._text = tag, ""
        elif tag == "tr":
            self._row = []

    def handle_data(self, data: str) -> None:
        if self._tag is not None:
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag != self._tag:
            if tag == "tr" and self._row is not None and self._row[0] not in ("Svar",
                                                                              "Kontor"):
                self.sections[-1][1].append(self._row)
            return
        if tag in ("h2", "h3"):
            self.sections.append((self._text, []))
        elif tag in ("td", "th") and self._row is not None:
            self._row.append(self._text)
        else:
            self.said.append(self._text)
        self._tag = None


def _md_plain(line: str) -> str:
    return re.sub(r"\\(.)", r"\1", line)


def _md_sections(text: str) -> tuple[list[tuple[str, list[list[str]]]], list[str]]:
    sections: list[tuple[str, list[list[str]]]] = []
    said = []
    for line in text.splitlines():
        if line.startswith("#"):
            sections.append((_md_plain(line.lstrip("# ")), []))
        elif line.startswith("| ") and not line.startswith(("| Svar ", "| Kontor ", "| ---")):
            cells = [_md_plain(c.strip()) for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            sections[-1][1].append(cells)
        else:
            said.append(_md_plain(line))
    return sections, said


def _claims_summary(summary: list[str], t: _Truth) -> list[tuple[str, str, int]]:
    """The digest's sentences («12 svarte …», «7 av 12 fikk hjelp.»)."""
    out = []
    for s in summary:
        if m := re.fullmatch(r"(\d+|Færre enn 5) svarte på spørsmålene etter første møte\..*",
                             s):
            out.append((s, m[1].lower(), t.survey()))
        elif m := re.fullmatch(r"(\d+|Færre enn 5) sendte en melding til ressursgruppa\.", s):
            out.append((s, m[1].lower(), t.feedback()))
        elif m := re.fullmatch(r"(\d+) av (\d+) fikk hjelp\.", s):
            out += [(s, m[1], t.cell("Fikk hjelp", "Ja")), (s, m[2], t.answered("Fikk hjelp"))]
        else:
            assert re.fullmatch(r"Hvor fornøyd: \d+,\d i snitt( \(forrige periode \d+,\d\))?\.",
                                s), s
    return out


@given(_counts, _counts)
def test_no_format_says_anything_untrue_about_a_hidden_number(now: Counts,
                                                              before: Counts) -> None:
    flows = own_flows()
    period = period_of(NOW)
    rep = build(flows, _rows(now, _flow_of), _rows(before, _flow_of), period, NOW)
    truth = _Truth(now, before)
    claims = _claims_csv(csv_text(rep), truth)
    page = _Page()
    page.feed(html(rep))
    claims += _claims_tables(page.sections, page.said, truth)
    claims += _claims_tables(*_md_sections(markdown(rep)), truth)
    claims += _claims_summary(rep.summary, truth)
    assert claims
    for where, shown, n in claims:
        assert _true(shown, n), f"{where}: says {shown!r}, but the number is {n}"
    # no table cell anywhere calls a hidden count «færre enn 5»: only totals may
    assert all(c != "færre enn 5" for _, rows in page.sections for r in rows for c in r[1:])


def test_the_labels_of_the_issue_are_true() -> None:
    """Forsto ja=7/nei=1 hid the 7 as «færre enn 5»; so did the 7 of «Uten kontor»."""
    now = {("a", "ja", "NAV Øst"): 7, ("a", "nei", "NAV Øst"): 1,
           ("b", "kontor", "NAV Øst"): 6, ("b", "ute", "NAV Øst"): 2,
           ("c", "4", None): 7, ("c", "5", "NAV Øst"): 1, ("d", "fint", "NAV Vest"): 2}
    rep = build(own_flows(), _rows(now, _flow_of), [], period_of(NOW), NOW)
    a = next(q for q in rep.questions if q.key == "a")
    assert [c.count for c in a.cells] == [None, None]
    assert rep.offices == [("NAV Vest", None), ("NAV Øst", 8), ("Uten kontor", None)]
    md = markdown(rep)
    assert "| Ja | skjult |  | skjult |  |" in md and "| Uten kontor | skjult |" in md
    assert "| færre enn 5 |" not in md
    assert "«Skjult»: tallet vises ikke" in md  # the footnote says why
    assert ">færre enn 5<" not in html(rep)
    rows = list(csv.reader(io.StringIO(csv_text(rep)[1:]), delimiter=";"))
    assert [r[4:6] for r in rows if r[3] == "fikk hjelp"] == [["Ja", HIDDEN], ["Nei", HIDDEN]]
    assert [r[5] for r in rows if r[1] == "Uten kontor"] == [HIDDEN]
    page = _Page()
    page.feed(html(rep))
    assert any("«Skjult»: tallet vises ikke" in s for s in page.said)


# -- what a reader opens: Markdown, the footer's time, the CSV in Excel ---------------------------

ATTACKS = (
    "Bra møte\n# Falsk overskrift\n<img src=x onerror=alert(1)>",
    "- ikke en liste\n1. ikke en nummerert liste\n2) heller ikke",
    "tekst\n===\n***\n---",
    "[lenke](https://example.invalid) ![bilde](x.png) `kode` *fet* _kursiv_ ~~streket~~",
    "| a | b |\n| --- | --- |\n| c | d |",
    "&lt;script&gt;alert(1)&lt;/script&gt; &amp; <b>fet</b> \\# \\",
    "    fire mellomrom foran\n> sitat i sitat",
)


def test_markdown_keeps_free_text_as_text() -> None:
    """A young person's feedback, rendered by a real CommonMark parser (with GitHub's tables),
    makes no heading, list, link, image, code or HTML: it is quoted exactly as written."""
    rows = [AnonRow("feedback", "t1", t, None) for t in ATTACKS]
    rep = build(own_flows(), rows, [], period_of(NOW), NOW)
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(markdown(rep))
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings == [_md_plain(rep.title), "Spørsmålene etter første møte",
                        *[_heading(s.label or "") for s in _OWN_SURVEY],
                        "Meldinger til ressursgruppa", "Tema t1 (7)"]
    inside, depth = [], 0  # what the quoted texts became
    for t in tokens:
        depth += {"blockquote_open": 1, "blockquote_close": -1}.get(t.type, 0)
        if depth:
            inside += [t.type, *[c.type for c in t.children or ()]]
    assert set(inside) == {"blockquote_open", "paragraph_open", "inline", "text", "softbreak",
                           "paragraph_close"}  # text and line breaks, nothing else
    page = md.render(markdown(rep))
    assert "<img" not in page and "<b>" not in page and "<script" not in page
    quoted = re.findall(r"<blockquote>\s*<p>(.*?)</p>\s*</blockquote>", page, re.S)
    assert [unescape(q) for q in quoted] == [  # each line as written (indentation dropped)
        "\n".join(line.strip() for line in t.splitlines()) for t in ATTACKS]


@pytest.mark.parametrize(("made", "clock"), [
    (datetime(2026, 11, 23, 11, 0, tzinfo=UTC), "kl. 12.00 norsk tid"),  # winter: UTC+1
    (datetime(2026, 7, 6, 22, 30, tzinfo=UTC), "07.07.2026 kl. 00.30 norsk tid"),  # summer
])
def test_the_footer_says_oslo_time(made: datetime, clock: str) -> None:
    rep = build(own_flows(), [], [], period_of(made), made)
    for text in (markdown(rep), html(rep)):
        assert f"Laget {clock}" in text or clock in text
        assert "UTC" not in text


async def test_the_csv_opens_in_excel_with_the_letters_right(store: Store,
                                                             tmp_path: Path) -> None:
    """Excel reads a CSV as UTF-8 only when it starts with a byte order mark; without one,
    «spørsmål» became «spÃ¸rsmÃ¥l»."""
    async with store.transaction() as c:
        await write_anonymous(c, [AnonymousRow("feedback", "melding", "hei")] * 6,
                              datetime.now(UTC) - timedelta(weeks=2))
    await store.close()
    out = tmp_path / "rapport.csv"
    r = veivis("report", "--format", "csv", "--out", str(out), "--db", store.path)
    assert r.returncode == 0, r.stderr
    raw = out.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    assert raw[3:].decode("utf-8").startswith("periode;kontor;skjema;spørsmål;svar;antall")
    assert raw.count(codecs.BOM_UTF8) == 1
