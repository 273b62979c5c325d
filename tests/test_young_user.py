"""What a young user and a veileder met in the chat, each written from their side: what they
type, what they see. Nothing here pins the shipped wording or the number of questions: texts
are read from the flows, and answers are picked by what each question accepts."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.app.demo import DEMO_USER_PHONE, DEMO_VEILEDER_PHONE, seed_demo
from bot.engine.crisis import CLEAR
from bot.engine.model import Flow, FlowSet, Kind, Step
from bot.engine.runtime import system_text, tr
from bot.phone import pretty_phone
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.service.scheduler import Ticker
from bot.store import Store
from bot.timing.planner import OSLO

from .conftest import NOW, OLA, Desk, ManualClock, shown, yes_to_welcome
from .test_cli import veivis

U = DEMO_USER_PHONE
KARI = DEMO_VEILEDER_PHONE


def flow(flows: FlowSet, fid: str) -> Flow:
    f = flows.get(fid)
    assert f is not None
    return f


def literal(text: str | None) -> str:
    """The longest part of a text between its {variables}: what is sure to be said."""
    parts = re.split(r"\{[^{}]*\}", text or "")
    return max(parts, key=len).strip()


def an_answer(st: Step) -> str:
    """Something a person would type that the question accepts."""
    if st.kind is Kind.CHOICE:
        return "1"
    if st.kind is Kind.YESNO:
        return "ja"
    if st.kind in (Kind.SCALE, Kind.NUMBER):
        return str(st.max if st.max is not None else 3)
    return "Det var fint"


class Phone:
    """The demo user's phone, with the service's clock and scheduler running."""

    def __init__(self, store: Store, flows: FlowSet, clock: ManualClock) -> None:
        self.store, self.flows, self.clock = store, flows, clock
        self.pipeline = Pipeline(store, flows, clock)
        self.ticker = Ticker(store, self.pipeline, clock)
        self.n = 0

    async def inbox(self) -> list[str]:
        rows = await self.store.fetchall("SELECT text FROM outbox WHERE address = ? "
                                         "ORDER BY id", (U,))
        return [r[0] for r in rows]

    async def wait(self, by: timedelta) -> list[str]:
        """Time passes; what arrives meanwhile."""
        before = len(await self.inbox())
        end = self.clock.now + by
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + timedelta(minutes=5))
            await self.ticker.tick()
        return (await self.inbox())[before:]

    async def type(self, text: str) -> list[str]:
        self.n += 1
        h = await self.pipeline.submit(Inbound("console", U, text, f"t{self.n}"))
        return [r.text for r in h.replies]


@pytest.fixture
async def new_person(tmp_path: Path, flows: FlowSet) -> AsyncIterator[Phone]:
    """A young person the veileder has just registered with a first meeting; they have never
    written to Veivis (the demo data)."""
    store = await Store.open(tmp_path / "n.db")
    await seed_demo(store, NOW)
    phone = Phone(store, flows, ManualClock(NOW))
    await phone.pipeline.start()
    yield phone
    await phone.pipeline.stop()
    await store.close()


# -- whatever the service starts, the welcome comes first ------------------------------------

async def test_the_first_message_a_new_person_gets_is_the_welcome(new_person: Phone,
                                                                  flows: FlowSet) -> None:
    """The preparation for the first meeting is due at once; the person first hears who
    Veivis is and what is stored, and is asked; only after their yes does the preparation
    come, and nothing they typed is kept before it."""
    welcome, prep = flow(flows, "welcome"), flow(flows, "first_meeting_prep")
    got = await new_person.wait(timedelta(minutes=5))
    assert got[0] == welcome.first.text
    assert not any(literal(prep.first.text) in t for t in got)
    typed = yes_to_welcome(flows)
    for t in typed[:-1]:
        assert not any(literal(prep.first.text) in r
                       for r in await new_person.type(t))
    # nothing typed before the yes is kept
    kept = await new_person.store.fetchall("SELECT text FROM inbound ORDER BY id")
    assert kept and all(t is None for (t,) in kept)
    got = await new_person.type(typed[-1])  # the yes
    assert any(literal(prep.first.text) in r for r in got)
    assert "Sara" in " ".join(got) and "10.00" in " ".join(got)  # about their meeting
    # the preparation's answers are kept now, for the veileder
    st = next(s for s in prep.steps if s.is_question)
    await new_person.type(an_answer(st))
    answers = await new_person.store.fetchall("SELECT flow FROM answers")
    assert ("first_meeting_prep",) in answers


@pytest.mark.parametrize("keyword", ["meny", "veileder", "start"])
async def test_a_keyword_does_not_skip_the_welcome(new_person: Phone, flows: FlowSet,
                                                   keyword: str) -> None:
    """A new person who types MENY (or VEILEDER) instead of answering the welcome used to get
    the menu, and what they then wrote went to the veileder and was kept, before they had
    heard what is stored or said yes. Now the welcome goes on; what they asked for comes
    after the yes."""
    welcome, menu = flow(flows, "welcome"), flow(flows, "menu")
    veileder = flow(flows, "message_veileder")
    got = await new_person.type("hei")
    assert got[0] == welcome.first.text
    asked = got[-1]  # the welcome's first question, as the person sees it
    got = await new_person.type(keyword)
    assert got and got[-1] == asked  # the same question again
    assert not any(literal(menu.first.text) in t or literal(veileder.first.text) in t
                   for t in got)
    got = await new_person.type("Kan vi flytte møtet til fredag?")
    sent = await new_person.store.fetchall("SELECT text FROM outbox WHERE address = ?",
                                           (KARI,))
    assert sent == []  # nothing reached the veileder
    assert await new_person.store.fetchall("SELECT count(*) FROM threads") == [(0,)]
    kept = await new_person.store.fetchall("SELECT text FROM inbound ORDER BY id")
    assert all(t is None for (t,) in kept)
    # the welcome goes on from where the person is; after the yes, what they asked for
    replies: list[str] = []
    for t in yes_to_welcome(flows):
        replies = await new_person.type(t)
    target = veileder if keyword == "veileder" else menu
    assert any(literal(target.first.text) in r for r in replies)


async def test_after_a_no_and_start_a_keyword_still_waits_for_a_yes(new_person: Phone,
                                                                    flows: FlowSet) -> None:
    """«nei» to the welcome, START, then VEILEDER and a message: it had reached the veileder
    (found by trying every path from outside); now the welcome comes again first."""
    await new_person.type("hei")
    typed = yes_to_welcome(flows)
    for t in typed[:-1]:
        await new_person.type(t)
    await new_person.type("nei")
    await new_person.type("start")
    await new_person.type("veileder")
    await new_person.type("Kan du ringe meg?")
    assert await new_person.store.fetchall("SELECT text FROM outbox WHERE address = ?",
                                           (KARI,)) == []
    assert await new_person.store.fetchall("SELECT count(*) FROM threads") == [(0,)]


async def test_a_keyword_before_the_yes_keeps_the_preparation_waiting(new_person: Phone,
                                                                      flows: FlowSet) -> None:
    """The preparation waits for the welcome's yes; MENY meanwhile does not push it out."""
    prep = flow(flows, "first_meeting_prep")
    got = await new_person.wait(timedelta(minutes=5))  # the welcome, for the preparation
    await new_person.type("meny")
    replies: list[str] = []
    for t in yes_to_welcome(flows):
        replies = await new_person.type(t)
    assert any(literal(prep.first.text) in r for r in replies), (got, replies)


async def test_a_no_to_the_welcome_means_no_survey_either(new_person: Phone,
                                                          flows: FlowSet) -> None:
    survey = flow(flows, "first_meeting_survey")
    await new_person.pipeline.submit(FlowRequest("console", U, "first_meeting_survey"))
    typed = yes_to_welcome(flows)
    for t in typed[:-1]:
        await new_person.type(t)
    got = await new_person.type("nei")
    assert not any(literal(survey.first.text) in r for r in got)
    assert await new_person.store.fetchall("SELECT count(*) FROM anonymous_answers") == [(0,)]
    assert await new_person.store.fetchall("SELECT stopped, consent FROM users") == [(1, 0)]


async def test_a_flow_that_waited_too_long_for_the_welcome_is_not_started(
        new_person: Phone, flows: FlowSet) -> None:
    """The preparation waits for the yes; if the person answers only after the meeting, the
    reminders and the survey have had their time, and a stale preparation never comes."""
    prep = flow(flows, "first_meeting_prep")
    await new_person.wait(timedelta(minutes=5))
    await new_person.pipeline.submit(FlowRequest("console", U, "first_meeting_prep",
                                                 action="expire"))
    typed = yes_to_welcome(flows)
    got = []
    for t in typed:
        got += await new_person.type(t)
    assert not any(literal(prep.first.text) in r for r in got)


def test_in_the_demo_chat_the_welcome_comes_first(tmp_path: Path, flows: FlowSet) -> None:
    """`veivis chat` as the README says: the demo user hears who Veivis is first."""
    p = veivis("chat", "--db", str(tmp_path / "c.db"), "--json", "--now", "2026-11-23 12:00",
               stdin="\n".join([*yes_to_welcome(flows), ""]))
    assert p.returncode == 0, p.stderr
    texts = [json.loads(line)["text"] for line in p.stdout.splitlines()]
    welcome, prep = flow(flows, "welcome"), flow(flows, "first_meeting_prep")
    assert texts[0] == welcome.first.text
    start = literal(prep.first.text)
    first_prep = next(i for i, t in enumerate(texts) if start in t)
    consent = next(i for i, t in enumerate(texts)
                   if t == next(s.text for s in welcome.steps if s.save == "samtykke"))
    assert consent < first_prep


# -- «Se møtene mine» -------------------------------------------------------------------------

def _meetings_option(flows: FlowSet) -> tuple[str, Step]:
    """The number to type in the menu for the option that shows the next meeting, and the
    step it leads to."""
    menu = flow(flows, "menu")
    st = menu.first
    for i, o in enumerate(st.options, start=1):
        target = menu.step(dict(st.routes).get(o.value, ""))
        if target is not None and target.text and "{møtetid}" in target.text:
            return str(i), target
    raise AssertionError("the menu has no option that shows the next meeting")


async def test_my_meetings_with_no_meeting_says_so(d: Desk, flows: FlowSet) -> None:
    """It said «Neste møte med veilederen din er tiden dere har avtalt. Dere møtes på stedet
    dere har avtalt.»"""
    async with d.store.transaction() as c:
        await c.execute("UPDATE meetings SET status = 'cancelled'")
    number, _ = _meetings_option(flows)
    await d.user("meny")
    got = await d.user(number)
    assert got == [system_text(flows, "nb", "no_meeting", {"veileder": "Kari Nordmann"})]
    assert "tiden dere har avtalt" not in got[0] and "stedet dere har avtalt" not in got[0]


async def test_my_meetings_with_a_meeting_names_it(d: Desk, flows: FlowSet) -> None:
    number, _ = _meetings_option(flows)
    await d.user("meny")
    got = await d.user(number)
    assert len(got) == 1 and "i morgen, tirsdag 24. november kl. 10.00" in got[0]
    assert "NAV Gjøvik" in got[0]


# -- SPRÅK in the middle of the survey -------------------------------------------------------

def _option_number(st: Step, value: str) -> str:
    return str(next(i for i, o in enumerate(st.options, start=1) if o.value == value))


async def test_language_in_the_middle_of_the_survey_switches_and_goes_on(
        d: Desk, flows: FlowSet) -> None:
    """SPRÅK ended the survey. Now the language changes and the same question is asked again,
    in the new language, and the survey goes on to the end."""
    survey, language = flow(flows, "first_meeting_survey"), flow(flows, "language")
    await d.pipeline.submit(FlowRequest("console", U, "first_meeting_survey"))
    questions = [s for s in survey.steps if s.is_question]
    got = await d.user("ja")  # yes to the survey's first question
    current = next(s for s in questions[1:] if got[-1] == shown(flows, "nb", survey.id, s))
    got = await d.user("SPRÅK")
    assert got[-1] == language.first.text
    got = await d.user(_option_number(language.first, "en"))
    en = [tr(flows, "en", f"language.{s.id}", s.text) for s in language.steps
          if s.text and not s.is_question]
    assert got[:-1] == en  # «OK! I will write in English from now on.»
    assert got[-1] == shown(flows, "en", survey.id, current)
    # and on to the end: every answer from here is kept, anonymously
    answered = 0
    st: Step | None = current
    while st is not None:
        got = await d.user(an_answer(st))
        answered += 1
        st = next((s for s in questions if got and got[-1] == shown(flows, "en", survey.id, s)),
                  None)
    pool = await d.store.fetchall("SELECT count(*) FROM anonymous_pool")  # sealed until 5
    rows = await d.store.fetchall("SELECT count(*) FROM anonymous_answers")
    assert pool[0][0] + rows[0][0] == answered and answered >= 2
    state = await d.store.fetchall("SELECT state FROM conversations")
    assert json.loads(state[0][0]).get("flow") is None  # the survey has ended
    assert await d.store.fetchall("SELECT language FROM users WHERE phone = ?", (U,)) == [
        ("en",)]


async def test_language_while_idle_just_changes_it(d: Desk, flows: FlowSet) -> None:
    language = flow(flows, "language")
    got = await d.user("språk")
    assert got == [language.first.text]
    got = await d.user(_option_number(language.first, "nn"))
    assert got == [tr(flows, "nn", f"language.{s.id}", s.text) for s in language.steps
                   if s.text and not s.is_question]


# -- a date that has passed, a date far away ---------------------------------------------------
# «Now» is Monday 23 November 2026, three days after 20.11.

async def test_a_meeting_by_sms_on_a_date_that_has_passed_is_asked_back(d: Desk) -> None:
    got = await d.veileder(KARI, "MØTE 912 34 567 20.11 kl 10")
    assert got == ["Ikke registrert: 20.11 har vært. Mente du 20.11.2027? Skriv i så fall "
                   "året."]
    assert await d.store.fetchall("SELECT count(*) FROM meetings") == [(1,)]  # the demo one
    got = await d.veileder(KARI, "MØTE 912 34 567 i dag kl 9")  # three hours ago
    assert got == ["Ikke registrert: mandag 23.11 kl. 09.00 har vært. Hvilken dag og tid "
                   "mente du?"]
    got = await d.veileder(KARI, "FLYTT 912 34 567 20.11 kl 10")
    assert got[0].startswith("Ikke registrert: 20.11 har vært. Mente du 20.11.2027?")
    # with the year, it is what she meant: and the confirmation says the year back
    got = await d.veileder(KARI, "MØTE 912 34 567 20.11.2027 kl 10")
    assert got[0].startswith("Registrert: møte med Sara lørdag 20.11.2027 kl. 10.00.")
    # a date early next year is next year, and says so
    got = await d.veileder(KARI, "MØTE 912 34 567 5.1 kl 10")
    assert got[0].startswith("Registrert: møte med Sara tirsdag 5.1.2027 kl. 10.00.")
    # a date in the next weeks has no year
    got = await d.veileder(KARI, "MØTE 912 34 567 1.12 kl 10")
    assert got[0].startswith("Registrert: møte med Sara tirsdag 1.12 kl. 10.00.")


def test_meeting_add_on_a_date_that_has_passed_is_asked_back(tmp_path: Path) -> None:
    """The same from the command line, on today's real date."""
    db = str(tmp_path / "m.db")
    assert veivis("user", "add", "912 00 000", "--db", db).returncode == 0
    today = datetime.now(OSLO).date()
    past = today - timedelta(days=3)
    if past.year == today.year:  # in the first days of January «3 days ago» is next year's
        p = veivis("meeting", "add", "91200000", f"{past.day}.{past.month}", "kl", "10",
                   "--db", db)
        assert p.returncode == 1 and "Traceback" not in p.stdout + p.stderr
        assert (f"{past.day}.{past.month} har vært. Mente du {past.day}.{past.month}."
                f"{today.year + 1}?") in p.stdout
    p = veivis("meeting", "add", "91200000", "i", "dag", "kl", "0.00", "--db", db)
    assert p.returncode == 1 and "har vært. Hvilken dag og tid mente du?" in p.stdout
    assert "ingen møter" in veivis("meeting", "list", "--db", db).stdout
    far = today + timedelta(days=150)
    p = veivis("meeting", "add", "91200000", f"{far.day}.{far.month}.{far.year}", "kl", "10",
               "--db", db)
    assert p.returncode == 0 and f"{far.day}.{far.month}.{far.year} kl. 10.00" in p.stdout


async def test_the_young_person_hears_the_year_of_a_meeting_far_away(d: Desk,
                                                                      flows: FlowSet) -> None:
    await d.veileder(KARI, "AVLYS 912 34 567")
    await d.veileder(KARI, "MØTE 912 34 567 20.11.2027 kl 10 NAV Gjøvik")
    number, _ = _meetings_option(flows)
    await d.user("meny")
    got = await d.user(number)
    assert "lørdag 20. november 2027 kl. 10.00" in got[0]


# -- a new meeting after a cancelled first one -------------------------------------------------

async def test_after_the_first_meeting_is_cancelled_the_next_is_a_first_meeting(
        d: Desk, flows: FlowSet) -> None:
    """It became a follow-up: no preparation, no survey."""
    prep, survey = flow(flows, "first_meeting_prep"), flow(flows, "first_meeting_survey")
    ticker = Ticker(d.store, d.pipeline, d.clock)
    got = await d.veileder(KARI, "AVLYS 912 34 567")
    assert got[0].startswith("Avlyst")
    got = await d.veileder(KARI, "MØTE 912 34 567 onsdag kl 10 NAV Gjøvik")
    assert got[0].startswith("Registrert: første møte med Sara")
    before = len(await d.to(U))
    d.clock.now += timedelta(minutes=5)
    await ticker.tick()
    arrived = (await d.to(U))[before:]
    assert any(literal(prep.first.text) in t for t in arrived)  # the preparation
    # and the survey after the meeting (Wednesday 25.11 at 10.00)
    d.clock.now = datetime(2026, 11, 25, 14, 0, tzinfo=OSLO)
    before = len(await d.to(U))
    await ticker.tick()
    assert any(literal(survey.first.text) in t for t in (await d.to(U))[before:])
    # a meeting after that one is a follow-up
    got = await d.veileder(KARI, "MØTE 912 34 567 4.12 kl 10")
    assert got[0].startswith("Registrert: møte med Sara")


# -- a veileder's work phone is not a young person ----------------------------------------------

async def test_a_veileder_cannot_book_a_meeting_for_a_work_phone(d: Desk) -> None:
    for phone in (KARI, OLA):  # her own, and a colleague's
        got = await d.veileder(KARI, f"MØTE {phone[3:]} i morgen kl 10")
        # the one refusal (issue 16): no answer tells which numbers are NAV's work phones
        assert f"{pretty_phone(phone)} er ikke registrert hos deg" in got[0]
    rows = await d.store.fetchall("SELECT count(*) FROM users WHERE phone IN (?, ?)",
                                  (KARI, OLA))
    assert rows == [(0,)]
    assert await d.store.fetchall("SELECT count(*) FROM meetings") == [(1,)]


def test_user_add_refuses_a_work_phone_and_veileder_add_a_young_persons(tmp_path: Path) -> None:
    db = str(tmp_path / "w.db")
    assert veivis("veileder", "add", "Kari Nordmann", "400 12 345", "--office", "NAV Gjøvik",
                  "--db", db).returncode == 0
    p = veivis("user", "add", "40012345", "--name", "Kari Nordmann", "--db", db)
    assert p.returncode == 1
    assert "400 12 345 er jobbtelefonen til en veileder, ikke nummeret til en ung person" \
        in p.stdout
    assert "ingen brukere" in veivis("user", "list", "--db", db).stdout
    assert veivis("user", "add", "912 00 000", "--db", db).returncode == 0
    p = veivis("veileder", "add", "Ola", "912 00 000", "--office", "NAV Gjøvik", "--db", db)
    assert p.returncode == 1 and "912 00 000 er registrert som en ung person" in p.stdout


# -- a crisis in `veivis chat` ----------------------------------------------------------------

def test_a_crisis_in_the_chat_shows_only_what_the_user_sees(tmp_path: Path,
                                                            flows: FlowSet) -> None:
    """A log line («crisis signal from ...», in English) came into the chat window: the
    terminal shows stdout and stderr together."""
    phrase = "jeg vil ikke leve mer"
    assert flows.crisis is not None and flows.crisis.check(phrase).tier == CLEAR
    typed = [*yes_to_welcome(flows), phrase]
    p = veivis("chat", "--db", str(tmp_path / "k.db"), "--no-demo", "--now",
               "2026-11-23 12:00", stdin="\n".join([*typed, ""]))
    assert p.returncode == 0
    assert p.stderr == ""  # nothing but the conversation
    crisis = flow(flows, "crisis")
    assert all(s.text and literal(s.text) in p.stdout for s in crisis.steps if s.text)
    assert "crisis" not in p.stdout.lower() and "WARNING" not in p.stdout
    # with -v, the developer's log is there (masked number, no text)
    p = veivis("-v", "chat", "--db", str(tmp_path / "k2.db"), "--no-demo", "--now",
               "2026-11-23 12:00", stdin="\n".join([*typed, ""]))
    assert "crisis signal" in p.stderr and phrase not in p.stderr
