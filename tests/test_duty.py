"""Who reads a message now: working hours, public holidays, absences with a backup, and the
urgent crisis notice to whoever is on duty. Through the pipeline, as the young person and the
work phones see it."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, time
from pathlib import Path

import pytest

from bot.app.config import apply_config, load_config
from bot.app.demo import DEMO_USER_PHONE, DEMO_VEILEDER_PHONE
from bot.service.pipeline import FlowRequest
from bot.store import Store
from bot.timing.hours import easter, holidays, next_open
from bot.timing.planner import OSLO

from .conftest import DEMO, OLA, ROOT, Desk, ManualClock, Mirror, answers, config_from, said
from .test_crisis import CRISIS

U, KARI = DEMO_USER_PHONE, DEMO_VEILEDER_PHONE
RESERVE = "+4761000000"


def oslo(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=OSLO)


async def due_of(store: Store, address: str) -> list[datetime]:
    rows = await store.fetchall("SELECT due_at FROM outbox WHERE address = ? ORDER BY id",
                                (address,))
    return [datetime.fromisoformat(r[0]).astimezone(OSLO) for r in rows]


async def set_kari(store: Store, **cols: object) -> None:
    async with store.transaction() as c:
        for k, v in cols.items():
            await c.execute(f"UPDATE veiledere SET {k} = ? WHERE work_phone = ?", (v, KARI))


# -- the calendar --------------------------------------------------------------------------


def test_easter_and_the_norwegian_public_holidays() -> None:
    assert [easter(y) for y in (2024, 2025, 2026, 2027)] == [
        date(2024, 3, 31), date(2025, 4, 20), date(2026, 4, 5), date(2027, 3, 28)]
    h = holidays(2026)
    assert len(h) == 12
    assert {h[date(2026, 4, 2)], h[date(2026, 4, 3)], h[date(2026, 4, 6)]} == {
        "skjærtorsdag", "langfredag", "andre påskedag"}
    assert h[date(2026, 5, 14)] == "Kristi himmelfartsdag"
    assert h[date(2026, 5, 25)] == "andre pinsedag"
    assert h[date(2026, 5, 17)] == "grunnlovsdagen"


HOURS = (time(8, 0), time(15, 30))


@pytest.mark.parametrize(("now", "closed", "expected"), [
    (oslo(2026, 11, 23, 12), (), oslo(2026, 11, 23, 12)),  # open now
    (oslo(2026, 11, 23, 7, 30), (), oslo(2026, 11, 23, 8)),
    (oslo(2026, 11, 23, 20), (), oslo(2026, 11, 24, 8)),
    (oslo(2026, 11, 27, 16), (), oslo(2026, 11, 30, 8)),  # Friday after work: Monday
    (oslo(2026, 4, 1, 16), (), oslo(2026, 4, 7, 8)),  # Easter: Tuesday after
    (oslo(2026, 12, 24, 10), {date(2026, 12, 24)}, oslo(2026, 12, 28, 8)),  # closed + Christmas
    (oslo(2026, 3, 28, 12), (), oslo(2026, 3, 30, 8)),  # across the move to summer time
])
def test_when_someone_reads_messages(now: datetime, closed: set[date],
                                     expected: datetime) -> None:
    assert next_open(now.astimezone(UTC), HOURS, closed) == expected.astimezone(UTC)


# -- honest auto-replies -------------------------------------------------------------------


def told(d: Desk, key: str, **values: str) -> list[str]:
    """The system text a young person gets, as the coordinators worded it, filled in."""
    return [said(d.pipeline.flows, f"system.{key}", **DEMO, **values)]


def flow_text(d: Desk, text: str) -> list[str]:
    """What the flow itself says after the young person's message (in working hours)."""
    m = Mirror(d.pipeline.flows)
    m.start("message_veileder")
    return [r.text for r in m.say(text)]


async def test_after_hours_the_user_is_told_when_and_the_sms_waits(d: Desk,
                                                                    clock: ManualClock) -> None:
    clock.now = oslo(2026, 11, 23, 20).astimezone(UTC)
    await d.user("veileder")
    assert await d.user("Kan vi flytte møtet?") == told(
        d, "forward_closed", svartid="i morgen, tirsdag 24. november kl. 08.00")
    assert (await d.to(KARI))[-1].startswith("Veivis K1 fra Sara H.: Kan vi flytte møtet?")
    assert (await due_of(d.store, KARI))[-1] == oslo(2026, 11, 24, 8)  # not in the evening


async def test_own_working_hours_are_used(d: Desk, clock: ManualClock) -> None:
    await set_kari(d.store, working_hours="09.00-14.00")
    clock.now = oslo(2026, 11, 23, 14, 30).astimezone(UTC)
    await d.user("veileder")
    assert await d.user("hei") == told(d, "forward_closed",
                                       svartid="i morgen, tirsdag 24. november kl. 09.00")


async def test_on_a_public_holiday_the_answer_comes_after_it(d: Desk, clock: ManualClock) -> None:
    clock.now = oslo(2026, 12, 25, 11).astimezone(UTC)  # første juledag, a Friday
    await d.user("veileder")
    assert await d.user("God jul! Når er neste møte?") == told(
        d, "forward_closed", svartid="mandag 28. desember kl. 08.00")
    assert (await due_of(d.store, KARI))[-1] == oslo(2026, 12, 28, 8)


async def test_an_extra_closed_day_from_the_configuration(d: Desk, clock: ManualClock) -> None:
    d.pipeline.rules = replace(d.pipeline.rules, closed_days=frozenset({date(2026, 12, 24)}))
    clock.now = oslo(2026, 12, 24, 10).astimezone(UTC)  # julaften, a Thursday
    await d.user("veileder")
    assert await d.user("hei") == told(d, "forward_closed",
                                       svartid="mandag 28. desember kl. 08.00")


async def test_in_working_hours_the_flow_text_stands(d: Desk) -> None:
    await d.user("veileder")
    assert await d.user("hei") == flow_text(d, "hei")
    assert (await due_of(d.store, KARI))[-1] == oslo(2026, 11, 23, 12)


# -- absences ------------------------------------------------------------------------------


async def test_while_away_messages_go_to_the_backup_and_answers_come_back(
        d: Desk, clock: ManualClock) -> None:
    await set_kari(d.store, away_until="2026-11-27", backup_phone=OLA)
    await d.user("veileder")
    assert await d.user("Jeg er syk i morgen") == told(d, "forward_away",
                                                       borte_til="fredag 27. november")
    assert await d.to(OLA) == [
        "Veivis K1 fra Sara H. (for Kari Nordmann, som er borte): Jeg er syk i morgen — "
        "Svar: K1 + tekst. K1 LUKK avslutter."]
    assert await d.to(KARI) == []
    assert await d.veileder(OLA, "K1 God bedring! Jeg sier fra til Kari.") == [
        "Sendt til Sara H. (K1)."]
    assert (await d.to(U))[-1] == "Ola: God bedring! Jeg sier fra til Kari."
    # Kari is back on Monday: messages go to her again, with the flow's own text
    clock.now = oslo(2026, 11, 30, 10).astimezone(UTC)
    await d.user("veileder")
    assert await d.user("Jeg er frisk igjen") == flow_text(d, "Jeg er frisk igjen")
    assert (await d.to(KARI))[-1].startswith("Veivis K1 fra Sara H.: Jeg er frisk igjen")


async def test_away_after_hours_goes_to_the_backup_in_the_morning(d: Desk,
                                                                  clock: ManualClock) -> None:
    await set_kari(d.store, away_until="2026-11-27", backup_phone=OLA)
    clock.now = oslo(2026, 11, 23, 22).astimezone(UTC)
    await d.user("veileder")
    assert await d.user("hei") == told(d, "forward_away_closed", borte_til="fredag 27. november",
                                       svartid="i morgen, tirsdag 24. november kl. 08.00")
    assert await due_of(d.store, OLA) == [oslo(2026, 11, 24, 8)]


async def test_away_without_a_backup_the_message_waits_for_the_return(d: Desk) -> None:
    await set_kari(d.store, away_until="2026-11-27")
    await d.user("veileder")
    assert await d.user("hei") == told(d, "forward_away_waits", borte_til="fredag 27. november",
                                       svartid="mandag 30. november kl. 08.00")
    assert await due_of(d.store, KARI) == [oslo(2026, 11, 30, 8)]


async def test_the_offices_backup_phone_from_the_file_can_answer(d: Desk, tmp_path: Path) -> None:
    conf = config_from(tmp_path / "veivis.yaml",
                       "kontorer:\n  - navn: NAV Gjøvik\n    reservetelefon: 61 00 00 00\n"
                       "veiledere:\n  - navn: Kari Nordmann\n    jobbtelefon: 400 12 345\n"
                       "    kontor: NAV Gjøvik\n    borte_til: 27.11.2026\n")
    await apply_config(d.store, conf)
    await d.user("veileder")
    assert await d.user("hei") == told(d, "forward_away", borte_til="fredag 27. november")
    assert (await d.to(RESERVE))[0].startswith("Veivis K1 fra Sara H. (for Kari Nordmann")
    assert await d.veileder(RESERVE, "K1 Hei Sara!") == ["Sendt til Sara H. (K1)."]
    assert (await d.to(U))[-1] == "Veileder: Hei Sara!"
    # the backup desk is scoped like any veileder: Ola cannot use its code
    assert await d.veileder(OLA, "K1 hei") == ["K1 er ikke en av dine samtaler i Veivis."]


def veivis(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VEIVIS_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env=env)


async def test_veileder_away_command_writes_the_file_and_the_database(tmp_path: Path) -> None:
    path = tmp_path / "veivis.yaml"
    path.write_text("kontorer:\n  - navn: NAV Gjøvik\n    reservetelefon: 61 00 00 00\n"
                    "veiledere:\n  # Kari har jobbtelefon\n  - navn: Kari Nordmann\n"
                    "    jobbtelefon: 400 12 345\n    kontor: NAV Gjøvik\n", encoding="utf-8")
    db = str(tmp_path / "v.db")
    r = veivis("veileder", "away", "kari", "--until", "4.12.2026", "--db", db, config=path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == (f"Kari Nordmann er borte til og med 04.12.2026: meldinger går "
                                f"til 61 00 00 00 så lenge; skrevet i {path}")
    text = path.read_text(encoding="utf-8")
    assert "  # Kari har jobbtelefon\n" in text and "borte_til: 04.12.2026" in text
    conf, _ = load_config(path)
    assert conf is not None and conf.veiledere[0].away_until == date(2026, 12, 4)
    store = await Store.open(db)
    assert await store.fetchall("SELECT away_until FROM veiledere WHERE work_phone = ?",
                                (KARI,)) == [("2026-12-04",)]
    await store.close()
    r = veivis("veileder", "away", "400 12 345", "--back", "--db", db, config=path)
    assert r.returncode == 0 and "Kari Nordmann er tilbake" in r.stdout
    assert "borte_til" not in path.read_text(encoding="utf-8")
    r = veivis("veileder", "away", "Per", "--until", "4.12", "--db", db, config=path)
    assert r.returncode == 1
    assert r.stdout.strip() == "veivis: ingen veileder heter Per (se veivis veileder list)"
    r = veivis("veileder", "away", "Kari", "--until", "neste år", "--db", db, config=path)
    assert r.returncode == 1 and "er ikke en dato" in r.stdout and "Traceback" not in r.stderr


# -- crisis --------------------------------------------------------------------------------

NOTICE = ("HASTER fra Veivis K1: Sara Hansen, tlf. 912 34 567, skrev noe som kan bety krise. "
          "Ring så fort du kan. Sara har fått krisenumrene. Svar: K1 + tekst.")


def numbers_in(replies: list[str]) -> bool:
    text = " ".join(replies)
    return all(n in text for n in ("113", "116 117", "116 123", "22 40 00 40"))


@pytest.mark.parametrize("text", CRISIS)
async def test_each_crisis_phrase_alerts_the_veileder_on_duty(d: Desk, text: str) -> None:
    got = await d.user(text)
    assert numbers_in(got) and got[-1:] == told(d, "crisis_told")
    assert await d.to(KARI) == [NOTICE]  # name and phone so she can call; not the text


@pytest.mark.parametrize("text", CRISIS)
async def test_each_crisis_phrase_inside_a_running_survey(d: Desk, text: str) -> None:
    first, second = survey_questions(d)
    await d.pipeline.submit(FlowRequest("console", U, "first_meeting_survey"))
    await d.user("ja")
    got = await d.user(text)
    assert numbers_in(got) and got[-1:] == told(d, "crisis_ask")
    assert await d.to(KARI) == []  # nothing before the young person says yes
    got = await d.user("ja")
    assert got == [*told(d, "crisis_told"), first]  # and the survey goes on
    assert await d.to(KARI) == [NOTICE]
    assert (await d.user("ja"))[0] == second
    anon = await d.store.fetchall("SELECT value FROM anonymous_answers")
    assert text not in str(anon) and "Sara" not in str(anon)


def survey_questions(d: Desk) -> tuple[str, str]:
    """The survey's first two questions after the intro, as the user sees them."""
    flows = d.pipeline.flows
    (_, _), (q1, _), (q2, _), *_ = answers(flows.flows["first_meeting_survey"])
    return (said(flows, f"first_meeting_survey.{q1.id}"),
            said(flows, f"first_meeting_survey.{q2.id}"))


async def test_inside_the_survey_a_no_tells_nobody(d: Desk) -> None:
    first, second = survey_questions(d)
    await d.pipeline.submit(FlowRequest("console", U, "first_meeting_survey"))
    await d.user("ja")
    await d.user("jeg vil dø")
    got = await d.user("nei")
    assert got == [*told(d, "crisis_not_told"), first]
    assert await d.to(KARI) == []
    # a message that is no yes or no is taken as a no, and read as the survey answer
    m = Mirror(d.pipeline.flows)
    m.start("first_meeting_survey")
    m.say("ja")
    reask = [r.text for r in m.say("jeg vil ikke leve mer")]  # no crisis in the mirror
    await d.user("jeg vil ikke leve mer")
    assert await d.user("hmm") == [r.text for r in m.say("hmm")]
    assert reask  # the mirror re-asked too
    assert (await d.user("ja"))[0] == second
    assert await d.to(KARI) == []


async def test_outside_hours_the_user_is_told_no_one_reads_it(d: Desk,
                                                               clock: ManualClock) -> None:
    clock.now = oslo(2026, 11, 23, 23).astimezone(UTC)
    got = await d.user("jeg vil ikke leve mer")
    assert numbers_in(got) and got[-1:] == told(d, "crisis_nobody")
    assert await d.to(KARI) == []
    # inside the survey, nobody to tell: no question about telling
    await d.pipeline.submit(FlowRequest("console", U, "first_meeting_survey"))
    await d.user("ja")
    assert (await d.user("selvmord"))[-1:] == told(d, "crisis_nobody")


async def test_one_notice_per_half_hour_and_the_backup_gets_it_while_away(
        d: Desk, clock: ManualClock) -> None:
    await set_kari(d.store, away_until="2026-11-27", backup_phone=OLA)
    assert (await d.user("jeg vil dø"))[-1:] == told(d, "crisis_told")
    assert (await d.user("jeg vil ikke leve mer"))[-1:] == told(d, "crisis_told")
    assert await d.to(OLA) == [
        "HASTER fra Veivis K1: Sara Hansen, tlf. 912 34 567 (for Kari Nordmann, som er borte), "
        "skrev noe som kan bety krise. Ring så fort du kan. Sara har fått krisenumrene. "
        "Svar: K1 + tekst."]
    clock.now = clock.now.replace(minute=40)
    await d.user("selvmord")
    assert len(await d.to(OLA)) == 2
    assert await d.to(KARI) == []
