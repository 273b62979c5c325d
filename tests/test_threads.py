"""Reaching a human: a young person's message goes to the veileder's work phone with a code,
the veileder answers from that phone, nothing leaks to other veiledere or unknown numbers."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from bot.app.demo import DEMO_USER_PHONE, DEMO_VEILEDER_PHONE
from bot.engine.model import FlowSet

from .conftest import DEMO, NOW, OLA, ROOT, Desk, ManualClock, Mirror, said

U = DEMO_USER_PHONE
KARI = DEMO_VEILEDER_PHONE
STRANGER = "+4798765432"


def menu_choice_for(flows: FlowSet, flow: str) -> str:
    """The number to answer in the menu to start `flow` (wherever coordinators put it)."""
    menu = flows.flows["menu"]
    question = menu.first
    routes = dict(question.routes)
    for i, o in enumerate(question.options, start=1):
        st = menu.step(routes.get(o.value, ""))
        if st is not None and st.start_flow == flow:
            return str(i)
    raise AssertionError(f"the menu does not offer {flow}")


async def test_a_forward_and_a_relayed_reply(d: Desk) -> None:
    m = Mirror(d.pipeline.flows)
    assert await d.user("veileder") == m.texts("message_veileder")
    text = "Hei! Jeg kommer litt for sent i morgen."
    assert await d.user(text) == [r.text for r in m.say(text)]  # in working hours
    assert (await d.to(KARI))[-1] == (
        "Veivis K1 fra Sara H.: Hei! Jeg kommer litt for sent i morgen. — Svar: K1 + tekst. "
        "K1 LUKK avslutter.")
    assert await d.veileder(KARI, "K1 Helt greit, vi ses kl 10.30.") == [
        "Sendt til Sara H. (K1)."]
    assert (await d.to(U))[-1] == "Kari: Helt greit, vi ses kl 10.30."
    # a reply without a code goes to the only open conversation of the last 24 hours
    assert await d.veileder(KARI, "Husk BankID!") == ["Sendt til Sara H. (K1)."]
    assert (await d.to(U))[-1] == "Kari: Husk BankID!"
    assert await d.veileder(KARI, "K1 LUKK") == ["K1 med Sara H. er avsluttet."]
    assert await d.veileder(KARI, "Hallo?") == [
        "Start svaret med koden, for eksempel K7 Hei! Du har ingen åpne samtaler nå."]
    # the menu leads to the same place
    await d.user("meny")
    opening = Mirror(d.pipeline.flows).texts("message_veileder")
    assert await d.user(menu_choice_for(d.pipeline.flows, "message_veileder")) == opening
    await d.user("Og en ting til")
    assert (await d.to(KARI))[-1].startswith("Veivis K2 fra Sara H.: Og en ting til")


async def test_codes_are_scoped_to_the_veileder_and_strangers_get_nothing(d: Desk) -> None:
    await d.user("veileder")
    await d.user("Hemmelig: jeg har fått jobb!")
    before_user = await d.to(U)
    # another veileder tries Kari's code
    assert await d.veileder(OLA, "K1 Hei Sara, dette er Ola") == [
        "K1 er ikke en av dine samtaler i Veivis."]
    assert await d.veileder(OLA, "Hei Sara") == [
        "Start svaret med koden, for eksempel K7 Hei! Du har ingen åpne samtaler nå."]
    # a number that is no veileder's work phone is just a new young person: the welcome
    got = await d.send("sms", STRANGER, "K1 hei")
    assert got == Mirror(d.pipeline.flows).texts("welcome")
    assert await d.to(U) == before_user  # nothing reached Sara
    for texts in (await d.to(OLA), await d.to(STRANGER)):
        assert not any("jobb" in t or "Sara" in t for t in texts)


async def test_the_veileders_phone_is_protected(d: Desk, clock: ManualClock) -> None:
    m = Mirror(d.pipeline.flows)
    m.start("message_veileder")
    sent = [r.text for r in m.say("melding")]
    for i in range(5):
        await d.user("veileder")
        assert await d.user(f"melding {i}") == sent
    await d.user("veileder")
    assert await d.user("melding 6") == [said(d.pipeline.flows, "system.forward_limit", **DEMO)]
    assert len(await d.to(KARI)) == 5
    clock.now += timedelta(hours=1, minutes=1)
    await d.user("veileder")
    long = "Dette er en lang melding. " * 30
    assert await d.user(long) == sent
    last = (await d.to(KARI))[-1]
    assert "… (forkortet) — Svar: K1 + tekst." in last
    assert len(last) < 400


async def test_a_user_without_a_veileder_is_told_who_to_call(d: Desk) -> None:
    async with d.store.transaction() as c:
        await c.execute("UPDATE users SET veileder_id = NULL")
    await d.user("veileder")
    assert await d.user("hei") == [said(d.pipeline.flows, "system.forward_no_veileder")]
    assert await d.store.fetchall("SELECT COUNT(*) FROM threads") == [(0,)]


async def test_a_stopped_user_gets_no_relayed_reply(d: Desk) -> None:
    await d.user("veileder")
    await d.user("hei")
    await d.user("STOPP")
    before = await d.to(U)
    assert await d.veileder(KARI, "K1 hei") == [
        "Sara H. har skrevet STOPP og får ikke meldinger fra Veivis nå."]
    assert await d.to(U) == before


async def test_the_thread_log_keeps_no_text_and_goes_with_slett(d: Desk) -> None:
    await d.user("veileder")
    await d.user("Jeg heter egentlig Sara Sol")
    await d.veileder(KARI, "K1 Takk")
    r = subprocess.run([sys.executable, "-m", "bot", "threads", "list", "--open", "--db",
                        d.store.path], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split() == [
        "K1", "Kari", "Nordmann", "Sara", "H.", "open", "2026-11-23", "12:00", "1", "1"]
    for table in ("threads", "thread_events"):
        rows = await d.store.fetchall(f"SELECT * FROM {table}")
        assert "Sol" not in str(rows) and "Takk" not in str(rows)
    await d.user("SLETT")
    await d.user("ja")
    assert await d.store.fetchall("SELECT COUNT(*) FROM threads") == [(0,)]
    assert await d.store.fetchall("SELECT COUNT(*) FROM thread_events") == [(0,)]


async def test_quiet_threads_go_with_the_retention_job(d: Desk) -> None:
    await d.user("veileder")
    await d.user("hei")
    assert (await d.store.purge(NOW + timedelta(days=89)))["threads"] == 0
    assert await d.store.fetchall("SELECT COUNT(*) FROM threads") == [(1,)]
    await d.store.purge(NOW + timedelta(days=91))  # quiet for 90 days: the thread goes
    assert await d.store.fetchall("SELECT COUNT(*) FROM threads") == [(0,)]
    assert await d.store.fetchall("SELECT COUNT(*) FROM thread_events") == [(0,)]
