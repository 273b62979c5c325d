"""The report for the resource group: what it says, what it hides, and how it looks in a real
browser."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.app.demo import seed_demo
from bot.engine.model import FlowSet
from bot.reports.digest import make_report
from bot.reports.formats import csv_text, html, markdown
from bot.reports.report import (
    HIDDEN,
    Period,
    PeriodError,
    period_containing,
    period_of,
    protect,
)
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.store import AnonymousRow, Store
from bot.store.anonymous import write_anonymous

from . import browser
from .conftest import NOW, ROOT, ManualClock

WEEK47 = datetime(2026, 11, 18, 11, 0, tzinfo=UTC)  # Wednesday of week 47
WEEK45 = datetime(2026, 11, 4, 11, 0, tzinfo=UTC)
SURVEY = ["viktigst", "plan", "rettigheter", "forsto", "telefon", "neste_mote"]


# -- small groups ------------------------------------------------------------------------------

@pytest.mark.parametrize(("counts", "shown"), [
    ([9, 3], [None, None]),  # the 3 is hidden, and then the 9 too: 12 - 9 = 3
    ([12, 0], [12, 0]),
    ([2, 6, 7], [None, None, 7]),
    ([1, 2], [None, None]),  # fewer than 5 in all
    ([5, 5, 3, 3], [5, 5, None, None]),  # two hidden already: nothing more to hide
    ([0, 0, 4, 10], [0, 0, None, None]),
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
    await p.submit(FlowRequest("sms", phone, "first_meeting_survey"))
    for i, t in enumerate(["ja", *answers]):
        await p.submit(Inbound("sms", phone, t, f"{phone}-s{i}"))


async def send_feedback(p: Pipeline, phone: str, topic: str, text: str) -> None:
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
    assert "| Ja | færre enn 5 |  | færre enn 5 |  |" in text
    assert "| Nei | færre enn 5 |  | færre enn 5 |  |" in text


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
    table = list(csv.reader(io.StringIO(csv_text(rep)), delimiter=";"))
    assert table[0][:6] == ["periode", "kontor", "skjema", "spørsmål", "svar", "antall"]
    karakter = [r for r in table if r[3].startswith("Hvor fornøyd")]
    assert [r[4:6] for r in karakter] == [["1", "færre enn 5"], ["2", "færre enn 5"],
                                         ["3", "færre enn 5"], ["4", "færre enn 5"],
                                         ["5", "færre enn 5"]]
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
    assert CHROMIUM is not None, "VEIVIS_REQUIRE_BROWSER is set but chromium is missing"
    rows = []
    for n in range(23):
        rows += [AnonymousRow("first_meeting_survey", q, "ja" if n % 4 else "nei", "NAV Gjøvik")
                 for q in SURVEY]
        rows.append(AnonymousRow("first_meeting_survey", "karakter", str(2 + n % 4),
                                 "NAV Gjøvik"))
    rows += [AnonymousRow("feedback", "melding_mote", f"Veilederen hørte på meg ({i}).")
             for i in range(6)]
    async with store.transaction() as c:
        await write_anonymous(c, rows, WEEK47)
    page = tmp_path / "rapport.html"
    page.write_text(html(await make_report(store, flows, NOW)), encoding="utf-8")
    got = await browser.render(CHROMIUM, page.as_uri(), evaluate={
        "text": "document.body.innerText",
        "overflow": "document.documentElement.scrollWidth - window.innerWidth",
        "bars": "document.querySelectorAll('svg rect').length",
    })
    (browser.artifact_dir() / "report-phone.png").write_bytes(got.screenshot)
    assert got.errors == []
    assert got.requests == [page.as_uri()]  # nothing else was loaded
    assert "23 svarte på spørsmålene etter første møte." in got.values["text"]
    assert got.values["overflow"] <= 0  # no sideways scrolling on a phone
    assert got.values["bars"] > 0
    assert got.screenshot.startswith(b"\x89PNG") and len(got.screenshot) > 10_000
