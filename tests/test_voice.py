"""«Du sa – vi gjorde», the 14-day digest and a person's own data (export-user)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.app.settings import Settings, digest_trigger
from bot.channels import telegram as T
from bot.engine.model import FlowSet
from bot.engine.runtime import SAVE_HEAR_BACK
from bot.reports.announce import announce
from bot.reports.digest import DigestJob
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.store import AnonymousRow, Store
from bot.store.anonymous import write_anonymous
from bot.timing.planner import OSLO

from .conftest import NOW, ROOT, ManualClock, Mirror, answers, said_yes
from .fakes import FakeTelegram
from .livekit import TOKEN

COORDINATOR = "+4790011122"


def veivis(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60, env={**os.environ, "VEIVIS_CONFIG": ""})


async def feedback(p: Pipeline, phone: str, text: str, hear_back: str) -> None:
    """Through the feedback flow as it is: `text` as the message, `hear_back` as the answer to
    hearing back (`save: hør_tilbake`)."""
    await said_yes(p.store, phone, "sms")
    await p.submit(FlowRequest("sms", phone, "feedback"))
    for i, (st, t) in enumerate(answers(p.flows.flows["feedback"], text)):
        await p.submit(Inbound("sms", phone, hear_back if st.save == SAVE_HEAR_BACK else t,
                               f"{phone}-{i}"))


# -- «Du sa – vi gjorde» -------------------------------------------------------------------------

async def test_announce_goes_to_those_who_said_yes(tmp_path: Path, flows: FlowSet) -> None:
    store = await Store.open(tmp_path / "a.db")
    clock = ManualClock()
    async with Pipeline(store, flows, clock) as p:
        await feedback(p, "+4791000001", "Mer åpent på kvelden", "ja")
        await feedback(p, "+4791000002", "Bra veileder", "nei")
        await feedback(p, "+4791000003", "Bussen er dyr", "ja")
        await p.submit(Inbound("sms", "+4791000003", "STOPP", "stop"))
    rows = await store.fetchall("SELECT phone, hear_back FROM users ORDER BY phone")
    assert rows == [("+4791000001", 1), ("+4791000002", 0), ("+4791000003", 1)]
    text = "Dere sa at kontoret bør ha åpent lenger. Nå har NAV Gjøvik åpent til 18 på torsdager."
    # 22.30: quiet hours, so it waits for the morning
    done = await announce(store, text, datetime(2026, 11, 23, 21, 30, tzinfo=UTC))
    assert done.recipients == 1  # the one who said no, and the one who wrote STOPP, get nothing
    assert done.due == datetime(2026, 11, 24, 8, 0, tzinfo=OSLO)
    got = await store.fetchall("SELECT address, text, due_at FROM outbox WHERE text = ?", (text,))
    assert [(a, t) for a, t, _ in got] == [("+4791000001", text)]
    assert datetime.fromisoformat(got[0][2]) == done.due
    await store.close()


async def test_announce_checks_the_text_first(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    store = await Store.open(db)
    await store.close()
    bad = tmp_path / "bad.txt"
    bad.write_text("Vi har endret vedtaket om sosialstønad etter tilbakemeldingene deres.",
                   encoding="utf-8")
    r = veivis("announce", str(bad), "--db", str(db))
    assert r.returncode == 1
    assert f"{bad}:1: advarsel: meldingen: «sosialstønad» er NAV-språk" in r.stderr
    assert "Ingenting ble sendt." in r.stderr and "Traceback" not in r.stderr
    good = tmp_path / "good.txt"
    good.write_text("Dere sa at ventetiden var lang. Nå svarer veilederne innen to dager.",
                    encoding="utf-8")
    r = veivis("announce", str(good), "--dry-run", "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "teksten er i orden; den ville gått til 0 personer (ingenting sendt)"


# -- the digest ---------------------------------------------------------------------------------

async def seed_answers(store: Store) -> None:
    rows = [AnonymousRow("first_meeting_survey", "telefon", "ja", "NAV Gjøvik")
            for _ in range(6)]
    rows += [AnonymousRow("feedback", "melding_mote", f"melding {i}") for i in range(5)]
    async with store.transaction() as c:
        await write_anonymous(c, rows, datetime(2026, 11, 4, 10, tzinfo=UTC))  # week 45


async def test_the_digest_is_delivered_once_per_period(tmp_path: Path, flows: FlowSet) -> None:
    store = await Store.open(tmp_path / "d.db")
    await seed_answers(store)
    async with FakeTelegram(TOKEN) as fake:
        bot = T.make_bot(TOKEN, fake.url, 5)
        await bot.initialize()
        job = DigestJob(store, flows, digest_trigger("day_of_week=mon week=*/2 hour=12"),
                        folder=tmp_path / "rapporter", bot=bot, chat_id="-100200",
                        phones=(COORDINATOR,))
        monday = datetime(2026, 11, 16, 12, tzinfo=OSLO)  # week 47 (*/2: weeks 1, 3, 5 …)
        assert job.last_fire_time(datetime(2026, 11, 18, 9, tzinfo=UTC)) == monday
        rep = await job.catch_up(datetime(2026, 11, 18, 9, tzinfo=UTC))  # missed: made now
        assert rep is not None
        await bot.shutdown()
    page = (tmp_path / "rapporter" / "veivis-rapport-2026-W44-W45.html").read_text()
    assert "6 svarte på spørsmålene etter første møte." in page
    assert fake.texts_to("-100200") == [
        "Veivis: hva unge sier, uke 44–45 2026 (26. oktober–8. november)\n\n"
        "6 svarte på spørsmålene etter første møte.\n"
        "6 av 6 fikk et nummer de kan ringe eller sende SMS til.\n"
        "5 sendte en melding til ressursgruppa."]
    [(chat, name, data, caption)] = fake.documents
    assert (chat, name) == ("-100200", "veivis-rapport-2026-W44-W45.html")
    assert data.decode() == page and caption.startswith("Hele rapporten")
    sms = await store.fetchall("SELECT text FROM outbox WHERE address = ?", (COORDINATOR,))
    assert sms == [("Veivis: rapporten for ressursgruppa er klar (uke 44–45 2026 (26. oktober–"
                    "8. november)). 6 svarte på spørsmålene etter første møte.",)]
    # the same period again (a restart, a second run): nothing more
    assert await job.run(monday) is None
    assert await job.catch_up(datetime(2026, 11, 30, 9, tzinfo=UTC)) is None  # before 12.00
    assert len(await store.fetchall("SELECT * FROM outbox")) == 1
    await store.close()


def test_digest_settings_are_checked() -> None:
    s = Settings({"DIGEST_SCHEDULE": "day_of_week=mandag hour=12", "DIGEST_SMS": "12ab",
                  "DIGEST_TELEGRAM_CHAT": "-100"})
    problems = s.digest_problems()
    assert problems[0].startswith("DIGEST_SCHEDULE: ")
    assert problems[1].startswith("DIGEST_SMS: ")
    assert "DIGEST_TELEGRAM_CHAT trenger TELEGRAM_BOT_TOKEN" in problems
    assert Settings({}).digest_problems() == [] and not Settings({}).digest_on


# -- a person's own data -------------------------------------------------------------------------

async def test_export_user_gives_everything_but_anonymous_answers(tmp_path: Path,
                                                                  flows: FlowSet) -> None:
    db = tmp_path / "e.db"
    store = await Store.open(db)
    await seed_demo(store, NOW)
    u = DEMO_USER_PHONE
    welcome = [t for _, t in answers(flows.flows["welcome"])]
    feedback = [t for _, t in answers(flows.flows["feedback"], "Hemmelig anonym mening")]
    async with Pipeline(store, flows, ManualClock()) as p:
        for i, t in enumerate(["hei", *welcome, "veileder", "Kan vi flytte møtet?"]):
            await p.submit(Inbound("console", u, t, f"m{i}"))
        await p.submit(FlowRequest("console", u, "feedback"))
        for i, t in enumerate(feedback):
            await p.submit(Inbound("console", u, t, f"f{i}"))
    await store.close()
    out = tmp_path / "sara.json"
    r = veivis("export-user", "912 34 567", "--out", str(out), "--db", str(db))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["user"]["first_name"] == "Sara" and data["user"]["hear_back"] is True
    assert data["user"]["veileder"] == "Kari Nordmann"
    assert "Kan vi flytte møtet?" in [m["text"] for m in data["messages_from_you"]]
    mirror = Mirror(flows)
    mirror.start("message_veileder")
    sent = [r.text for r in mirror.say("Kan vi flytte møtet?")]
    assert sent and sent[0] in [m["text"] for m in data["messages_to_you"]]
    assert data["meetings"][0]["kind"] == "first"
    assert data["conversations_with_veileder"][0]["code"] == "K1"
    assert [e["direction"] for e in data["conversations_with_veileder"][0]["events"]] == ["in"]
    assert "Hemmelig anonym mening" not in out.read_text(encoding="utf-8")
    r = veivis("export-user", "400 00 000", "--db", str(db))
    assert r.returncode == 1 and r.stdout.strip() == "veivis: ingen bruker har nummeret 400 00 000"
