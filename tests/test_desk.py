"""Veileder SMS commands: only registered work phones, only their own users, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app.demo import DEMO_USER_PHONE, DEMO_VEILEDER_PHONE, seed_demo
from bot.engine.model import FlowSet
from bot.phone import pretty_phone
from bot.service.desk import EXAMPLE
from bot.service.pipeline import Inbound, Pipeline
from bot.store import Store

from .conftest import ManualClock, Mirror, english_in, said, said_yes


async def setup(tmp_path: Path, flows: FlowSet, clock: ManualClock) -> tuple[Store, Pipeline]:
    store = await Store.open(tmp_path / "d.db")
    await seed_demo(store, clock.now)
    office = await store.add_office("NAV Østre Toten")
    await store.add_veileder("Per Hansen", "+4740099999", office)
    p = Pipeline(store, flows, clock)
    await p.start()
    return store, p


async def say(p: Pipeline, phone: str, text: str, pid: str) -> list[str]:
    h = await p.submit(Inbound("sms", phone, text, pid))
    return [r.text for r in h.replies]


async def test_a_veileder_registers_moves_and_cancels(tmp_path: Path, flows: FlowSet,
                                                      clock: ManualClock) -> None:
    store, p = await setup(tmp_path, flows, clock)
    got = await say(p, DEMO_VEILEDER_PHONE, "MØTE 912 34 567 tirsdag kl 14 Kafé", "v1")
    assert got == ["Registrert: møte med Sara tirsdag 24.11 kl. 14.00, Kafé. Veivis sender "
                   "påminnelser. Feil? Svar AVLYS 912 34 567"]
    got = await say(p, DEMO_VEILEDER_PHONE, "FLYTT 912 34 567 onsdag 12.00", "v2")
    assert got == ["Flyttet: møtet med Sara er nå onsdag 25.11 kl. 12.00. Sara får beskjed."]
    # the retried webhook is handled once
    assert await say(p, DEMO_VEILEDER_PHONE, "FLYTT 912 34 567 onsdag 12.00", "v2") == []
    got = await say(p, DEMO_VEILEDER_PHONE, "møte 912 00 000 i morgen kl 9", "v3")
    assert got[0].startswith("Registrert: første møte med 912 00 000")  # a new user, now hers
    got = await say(p, DEMO_VEILEDER_PHONE, "MØTE 912 34 567 snart", "v4")
    assert got[0].startswith("Veivis skjønte ikke meldingen: fant ingen dato i «snart»")
    assert len(await store.list_meetings()) == 3
    await p.stop()
    await store.close()


@pytest.mark.parametrize("text", [
    "MØTE 912 34 567 30.11 kl 25", "MØTE 912 34 567 i morgen", "MØTE 912 34 567 snart",
    "MØTE 912 34 567 31.11 kl 10", "MØTE 912 34 567 i morgen kl 10 kanskje", "MØTE",
    "MØTE 12 i morgen kl 10", "FLYTT 912 00 000 i morgen kl 10", "AVLYS 912 00 000",
    "MØTE +47 1 i morgen kl 10", "FLYTT 912 34 567 i går kl 10",
])
async def test_a_veileders_mistake_is_answered_in_norwegian(tmp_path: Path, flows: FlowSet,
                                                             clock: ManualClock, text: str) -> None:
    """What a busy veileder types wrong on a work phone: the answer is Norwegian throughout
    (no English from the date parser or the meeting rules mixed in)."""
    store, p = await setup(tmp_path, flows, clock)
    got = await say(p, DEMO_VEILEDER_PHONE, text, "n1")
    assert len(got) == 1 and not english_in(got[0]), got
    await p.stop()
    await store.close()


async def test_another_number_is_never_a_veileder(tmp_path: Path, flows: FlowSet,
                                                  clock: ManualClock) -> None:
    store, p = await setup(tmp_path, flows, clock)
    got = await say(p, "+4798765432", "MØTE 912 34 567 i morgen kl 10", "x1")
    assert got == Mirror(flows).texts("welcome")  # a young person's first message
    assert len(await store.list_meetings()) == 1  # only the demo meeting
    assert await store.fetchall("SELECT count(*) FROM scheduled WHERE kind = 'moved'") == [(0,)]
    await p.stop()
    await store.close()


async def test_a_veileder_reaches_only_their_own_users(tmp_path: Path, flows: FlowSet,
                                                       clock: ManualClock) -> None:
    store, p = await setup(tmp_path, flows, clock)
    got = await say(p, "+4740099999", f"AVLYS {DEMO_USER_PHONE}", "o1")
    assert got[0] == ("Veivis skjønte ikke meldingen: 912 34 567 er ikke registrert hos deg. "
                      "Eksempel: MØTE 912 34 567 24.11 10:00 NAV Gjøvik. Eller FLYTT / AVLYS + "
                      "nummer.")
    assert "Sara" not in got[0]
    assert [m.status for m in await store.list_meetings(include_cancelled=True)] == [
        "planned"]
    await p.stop()
    await store.close()


# -- scope: a young person is assigned only explicitly (issue 16) ---------------------------

MONA, LISE, NOBODY = "+4793333333", "+4792222222", "+4794444444"


async def veileder_of(store: Store, phone: str) -> list[tuple[object, ...]]:
    return await store.fetchall("SELECT veileder_id FROM users WHERE phone = ?", (phone,))


async def test_a_failing_command_never_assigns_an_unassigned_user(
        tmp_path: Path, flows: FlowSet, clock: ManualClock) -> None:
    """Finding 1: a veileder at another office sent AVLYS for a young person nobody was
    assigned to, got an error, and was her veileder from then on (her crisis notice went to
    him). Now the command fails and changes nothing: her later messages reach no one."""
    store, p = await setup(tmp_path, flows, clock)
    await store.add_user(phone=MONA, channel="sms", first_name="Mona", last_name="Lie",
                         veileder_id=None, now=clock.now)
    for i, text in enumerate([f"AVLYS {MONA}", f"FLYTT {MONA} i morgen kl 10",
                              f"MØTE {MONA} i morgen kl 10", "K1 hei"]):
        got = await say(p, "+4740099999", text, f"a{i}")
        assert len(got) == 1 and not got[0].startswith(("Registrert", "Avlyst", "Flyttet"))
        assert await veileder_of(store, MONA) == [(None,)]
    assert await store.fetchall("SELECT count(*) FROM meetings m JOIN users u "
                                "ON u.id = m.user_id WHERE u.phone = ?", (MONA,)) == [(0,)]
    await p.stop()
    await store.close()


async def test_a_backup_desk_cannot_book_someone_elses_user(tmp_path: Path, flows: FlowSet,
                                                            clock: ManualClock) -> None:
    """Finding 1, second half: an office's backup desk wrote MØTE for a registered young
    person and got «Registrert … med Lise». Only a number not registered at all is new."""
    store, p = await setup(tmp_path, flows, clock)
    office = await store.add_office("NAV Vestre Toten")
    await store.add_veileder("Veileder på NAV Vestre Toten", "+4761999999", office)
    await store.add_user(phone=LISE, channel="sms", first_name="Lise", last_name=None,
                         veileder_id=None, now=clock.now)
    got = await say(p, "+4761999999", f"MØTE {LISE} i morgen kl 10", "b1")
    assert "Lise" not in got[0] and not got[0].startswith("Registrert")
    assert await veileder_of(store, LISE) == [(None,)]
    got = await say(p, "+4761999999", f"MØTE {NOBODY} i morgen kl 10", "b2")
    assert got[0].startswith("Registrert: første møte med 944 44 444")
    await p.stop()
    await store.close()


async def test_a_refusal_tells_nothing_about_whose_number_it_is(
        tmp_path: Path, flows: FlowSet, clock: ManualClock) -> None:
    """Finding 2: three answers told a caller which numbers are known and to whom. Now an
    unknown number, an unassigned user and another veileder's user get the same words
    (the phone number aside), in Norwegian, for every command."""
    store, p = await setup(tmp_path, flows, clock)
    await store.add_user(phone=MONA, channel="sms", first_name="Mona", last_name="Lie",
                         veileder_id=None, now=clock.now)
    same = f"Veivis skjønte ikke meldingen: NR er ikke registrert hos deg. {EXAMPLE}"
    n = 0
    for verb in ("AVLYS {}", "FLYTT {} i morgen kl 10"):
        answers = set()
        for phone in (NOBODY, MONA, DEMO_USER_PHONE):
            n += 1
            got = await say(p, "+4740099999", verb.format(phone), f"r{n}")
            assert len(got) == 1 and not english_in(got[0]), got
            answers.add(got[0].replace(pretty(phone), "NR", 1))
        assert len(answers) == 1, answers
        assert answers == {same}
    for phone in (MONA, DEMO_USER_PHONE):  # MØTE: only a number not registered at all is new
        got = await say(p, "+4740099999", f"MØTE {phone} i morgen kl 10", f"m{phone}")
        assert [got[0].replace(pretty(phone), "NR", 1)] == [same]
    await p.stop()
    await store.close()


def pretty(phone: str) -> str:
    return pretty_phone(phone)


async def test_a_failing_command_is_rolled_back(tmp_path: Path, flows: FlowSet,
                                                clock: ManualClock,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a command had written when it fails goes: the new user MØTE made for an
    unknown number is not kept when the meeting cannot be booked. The error is still
    answered once, and a retried webhook is still a duplicate."""
    from bot.service import desk
    from bot.store.meetings import MeetingError

    async def refuse(*a: object, **k: object) -> object:
        raise MeetingError("kan ikke registrere møtet nå")

    store, p = await setup(tmp_path, flows, clock)
    monkeypatch.setattr(desk.meetings, "new_meeting", refuse)
    got = await say(p, "+4740099999", f"MØTE {NOBODY} i morgen kl 10", "f1")
    assert got[0].startswith("Veivis skjønte ikke meldingen: kan ikke registrere møtet nå")
    assert await store.fetchall("SELECT count(*) FROM users WHERE phone = ?", (NOBODY,)) == [
        (0,)]
    assert await say(p, "+4740099999", f"MØTE {NOBODY} i morgen kl 10", "f1") == []
    assert await store.fetchall("SELECT count(*) FROM outbox WHERE address = ?",
                                ("+4740099999",)) == [(1,)]
    await p.stop()
    await store.close()


async def test_a_veileder_takes_over_only_explicitly_and_the_user_is_told(
        tmp_path: Path, flows: FlowSet, clock: ManualClock) -> None:
    """`veivis user assign` is the way another veileder takes over an existing young person:
    she is told who her veileder is now; from then on the new veileder reaches her and the
    old one gets the same refusal as for any number."""
    from argparse import Namespace

    from bot.app.admin import user_assign

    store, p = await setup(tmp_path, flows, clock)
    await said_yes(store)
    assert await say(p, "+4740099999", f"AVLYS {DEMO_USER_PHONE}", "t1") != []
    out = await user_assign(store, Namespace(phone="912 34 567", veileder="Per Hansen"))
    assert "Per Hansen" in out
    assert await store.fetchall("SELECT text FROM outbox WHERE address = ?",
                                (DEMO_USER_PHONE,)) == [
        (said(flows, "system.new_veileder", veileder="Per Hansen"),)]
    got = await say(p, "+4740099999", f"AVLYS {DEMO_USER_PHONE}", "t2")
    assert got[0].startswith("Avlyst: møtet med Sara")
    got = await say(p, DEMO_VEILEDER_PHONE, f"FLYTT {DEMO_USER_PHONE} i morgen kl 12", "t3")
    assert got == [f"Veivis skjønte ikke meldingen: 912 34 567 er ikke registrert hos deg. "
                   f"{EXAMPLE}"]
    # the same assignment again tells her nothing new
    await user_assign(store, Namespace(phone="912 34 567", veileder="Per Hansen"))
    assert len(await store.fetchall("SELECT 1 FROM outbox WHERE address = ?",
                                    (DEMO_USER_PHONE,))) == 1
    await p.stop()
    await store.close()


FULLWIDTH = str.maketrans("0123456789+", "０１２３４５６７８９＋")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize("disguise", [FULLWIDTH, ARABIC_INDIC])
async def test_digits_of_another_script_reach_no_one_elses_user(
        tmp_path: Path, flows: FlowSet, clock: ManualClock,
        disguise: dict[int, int]) -> None:
    """Found by the attacker: «MØTE ９１１１１１１１ …» (another veileder's user, in fullwidth
    digits) made a new young person «+47９１１…» assigned to the sender, skipping every
    check; the same with a work phone. Digits of any script are read as the digits they are."""
    store, p = await setup(tmp_path, flows, clock)
    users = len(await store.fetchall("SELECT id FROM users"))
    same = f"Veivis skjønte ikke meldingen: NR er ikke registrert hos deg. {EXAMPLE}"
    for n, phone in enumerate((DEMO_USER_PHONE, DEMO_VEILEDER_PHONE, "+4740099999")):
        local = phone.removeprefix("+47").translate(disguise)
        got = await say(p, "+4740099999", f"MØTE {local} i morgen kl 10", f"u{n}")
        assert [got[0].replace(pretty(phone), "NR", 1)] == [same], got
    assert len(await store.fetchall("SELECT id FROM users")) == users
    assert not await store.fetchall("SELECT phone FROM users WHERE phone GLOB '*[^+0-9]*'")
    await p.stop()
    await store.close()


async def test_a_work_phone_gets_the_same_refusal(tmp_path: Path, flows: FlowSet,
                                                  clock: ManualClock) -> None:
    """A MØTE for a work phone said «… er jobbtelefonen til en veileder»: an oracle for which
    numbers are NAV's. Now the one refusal, like any number that is not the sender's."""
    store, p = await setup(tmp_path, flows, clock)
    same = f"Veivis skjønte ikke meldingen: NR er ikke registrert hos deg. {EXAMPLE}"
    for n, verb in enumerate(("MØTE {} i morgen kl 10", "FLYTT {} i morgen kl 10", "AVLYS {}")):
        got = await say(p, "+4740099999", verb.format(DEMO_VEILEDER_PHONE), f"w{n}")
        assert [got[0].replace(pretty(DEMO_VEILEDER_PHONE), "NR", 1)] == [same], got
    await p.stop()
    await store.close()
