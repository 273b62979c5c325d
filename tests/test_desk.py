"""Veileder SMS commands: only registered work phones, only their own users, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app.demo import DEMO_USER_PHONE, DEMO_VEILEDER_PHONE, seed_demo
from bot.engine.model import FlowSet
from bot.service.pipeline import Inbound, Pipeline
from bot.store import Store

from .conftest import ManualClock, Mirror, english_in


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
