"""Settings, the sender's rate, fairness and retries, `veivis run` as a real process (SIGTERM),
health checks, and the operator commands (check-config, invite, outbox list, backup)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.app.settings import SettingsError, load_settings
from bot.channels.sms import TwilioTransport
from bot.delivery.sender import RateLimiter, Sender
from bot.engine import load
from bot.store import Store

from .conftest import NOW, ROOT, ManualClock, said
from .fakes import FakeTelegram, FakeTwilio
from .livekit import (
    AUTH,
    PUBLIC,
    SID,
    TOKEN,
    RunningClock,
    sms_settings,
    start_live,
)

U = DEMO_USER_PHONE
VEIVIS = [sys.executable, "-m", "bot"]


# -- settings ----------------------------------------------------------------------------------

def test_nothing_configured_is_explained() -> None:
    problems = load_settings(env={}).problems()
    assert problems == ["ingen kanal er satt opp: sett TELEGRAM_BOT_TOKEN, eller "
                        "TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN og TWILIO_FROM (eller begge)"]


@pytest.mark.parametrize(("env", "expected"), [
    ({"TWILIO_ACCOUNT_SID": "AC123", "TWILIO_AUTH_TOKEN": "x", "TWILIO_FROM": "+4759440000",
      "VEIVIS_PUBLIC_URL": "https://v.example.no"},
     "TWILIO_ACCOUNT_SID må være AC fulgt av 32 heksadesimale sifre (se Twilio-konsollen)"),
    ({"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "x", "TWILIO_FROM": "+4759440000"},
     "SMS trenger VEIVIS_PUBLIC_URL: Twilio signerer hver webhook med adressen den kalte, og "
     "sender leveringsrapporter dit"),
    ({"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": "x", "TWILIO_FROM": "Veivis NAV Gjøvik",
      "VEIVIS_PUBLIC_URL": "https://v.example.no"},
     "TWILIO_FROM: et avsendernavn har 1 til 11 bokstaver, sifre eller mellomrom, og minst én "
     "bokstav"),
    ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_MODE": "webhook", "TELEGRAM_WEBHOOK_SECRET": "s"},
     "TELEGRAM_MODE=webhook trenger VEIVIS_PUBLIC_URL"),
    ({"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_MODE": "webhook",
      "VEIVIS_PUBLIC_URL": "https://v.example.no", "TELEGRAM_WEBHOOK_SECRET": "has space"},
     "TELEGRAM_MODE=webhook trenger TELEGRAM_WEBHOOK_SECRET: 1 til 256 av tegnene A-Z, "
     "a-z, 0-9, _ og -"),
    ({"TELEGRAM_BOT_TOKEN": "not-a-token"},
     "TELEGRAM_BOT_TOKEN ser ikke ut som en nøkkel fra @BotFather (sifre, kolon, så "
     "bokstaver)"),
    ({"TELEGRAM_BOT_TOKEN": TOKEN, "VEIVIS_PUBLIC_URL": "http://v.example.no"},
     "VEIVIS_PUBLIC_URL må begynne med https:// (Telegram og Twilio kaller bare "
     "https-adresser)"),
    ({"TELEGRAM_BOT_TOKEN": TOKEN, "SMS_RATE": "fast"}, "SMS_RATE må være et tall, ikke «fast»"),
])
def test_each_wrong_setting_gets_one_plain_sentence(env: dict[str, str], expected: str) -> None:
    assert load_settings(env=env).problems() == [expected]


def test_a_complete_configuration_has_no_problems() -> None:
    env = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_MODE": "webhook",
           "TELEGRAM_WEBHOOK_SECRET": "s3cret", "VEIVIS_PUBLIC_URL": "https://v.example.no",
           "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": AUTH, "TWILIO_FROM": "Veivis"}
    assert load_settings(env=env).problems() == []


def test_toml_file_under_the_environment(tmp_path: Path) -> None:
    f = tmp_path / "veivis.toml"
    f.write_text('telegram_bot_token = "1:file"\nsms_rate = 10\nveivis_port = 9000\n')
    s = load_settings(f, env={"TELEGRAM_BOT_TOKEN": TOKEN})
    assert s.get("TELEGRAM_BOT_TOKEN") == TOKEN  # the environment wins
    assert s.number("SMS_RATE") == 10 and s.port == 9000
    bad = tmp_path / "bad.toml"
    bad.write_text('sms_rat = 10\n')
    with pytest.raises(SettingsError, match="ukjent innstilling «sms_rat»"):
        load_settings(bad, env={})


def test_secrets_are_never_printed() -> None:
    s = load_settings(env={"TWILIO_AUTH_TOKEN": "super-secret", "TELEGRAM_BOT_TOKEN": TOKEN})
    shown = "\n".join(s.describe())
    assert "super-secret" not in shown and TOKEN not in shown
    assert "TWILIO_AUTH_TOKEN = (satt)" in shown


def _run(args: list[str], env: dict[str, str], cwd: Path = ROOT,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "TELEGRAM_",
                                                                     "VEIVIS_"))}
    full.update(env)
    return subprocess.run(VEIVIS + args, env=full, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def test_check_config_and_run_refuse_plainly(tmp_path: Path) -> None:
    env = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": AUTH, "TWILIO_FROM": "+4759440000",
           "VEIVIS_DB": str(tmp_path / "v.db")}
    r = _run(["check-config"], env)
    assert r.returncode == 1
    assert "Ikke klar til å starte:\n- SMS trenger VEIVIS_PUBLIC_URL" in r.stderr
    assert "Traceback" not in r.stderr
    r = _run(["run"], env)
    assert r.returncode == 1
    assert r.stderr.startswith("veivis run: innstillingene er ikke komplette:\n- SMS trenger")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "v.db").exists()  # nothing was started
    ok = _run(["check-config"], {**env, "VEIVIS_PUBLIC_URL": PUBLIC})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("Klar til å starte: SMS;") and "Merk:" not in ok.stdout
    tg = _run(["check-config"], {"TELEGRAM_BOT_TOKEN": TOKEN, "VEIVIS_DB": str(tmp_path / "t.db")})
    assert tg.returncode == 0, tg.stderr
    assert "Merk: meldinger til veiledernes jobbtelefoner" in tg.stdout


def test_run_on_a_busy_port_says_so_in_one_sentence_without_a_traceback(
        tmp_path: Path) -> None:
    """The port is taken (another veivis, another service): one plain sentence, exit 1, and
    nothing half-started leaves a traceback behind (the scheduler's first tick was cut off by
    the stop and logged one)."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {"TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": AUTH,
               "TWILIO_FROM": "+4759440000", "VEIVIS_PUBLIC_URL": PUBLIC,
               "VEIVIS_DB": str(tmp_path / "v.db"), "VEIVIS_PORT": str(port),
               "VEIVIS_SEAL_KEY_FILE": str(tmp_path / "key")}
        r = _run(["run"], env)
    assert r.returncode == 1, r.stderr
    assert f"webserveren kan ikke lytte på 127.0.0.1:{port} (porten er i bruk)" in r.stderr
    assert "Traceback" not in r.stderr, r.stderr


# -- the sender --------------------------------------------------------------------------------

async def _queue(store: Store, rows: list[tuple[str, str]]) -> None:
    async with store.transaction() as c:
        await c.executemany(
            "INSERT INTO outbox (channel, address, text, created_at, due_at) "
            "VALUES ('sms', ?, ?, ?, ?)",
            [(addr, text, NOW.isoformat(), NOW.isoformat()) for addr, text in rows])


async def test_one_busy_user_cannot_starve_the_rest_and_order_is_kept(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "v.db")
    async with FakeTwilio(SID, AUTH) as fake:
        busy = "+4790000000"
        await _queue(store, [(busy, f"melding {i}") for i in range(30)])
        others = [f"+479000000{i}" for i in range(1, 6)]
        await _queue(store, [(o, "hei") for o in others])
        t = TwilioTransport(SID, AUTH, "+4759440000", status_callback=None, api_url=fake.url)
        sender = Sender(store, t, ManualClock(NOW), rate=20)
        await sender.drain()
        await t.close()
        order = [s.to for s in fake.sent]
        # everyone else is served within the first round, not after the 30
        assert max(order.index(o) for o in others) < 10
        assert fake.texts_to(busy) == [f"melding {i}" for i in range(30)]
        times = sorted(s.at for s in fake.sent)
        assert max(sum(1 for u in times if t0 <= u < t0 + 1.0) for t0 in times) <= 20
    await store.close()


async def test_retry_after_is_honoured_and_permanent_failures_stop(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "v.db")
    clock = ManualClock(NOW)
    async with FakeTwilio(SID, AUTH) as fake:
        await _queue(store, [(U, "hei")])
        fake.fail.queue = ["429"]
        t = TwilioTransport(SID, AUTH, "+4759440000", status_callback=None, api_url=fake.url)
        sender = Sender(store, t, clock, rate=50, backoff=0.01)
        await sender.drain()
        rows = await store.fetchall("SELECT status, due_at, last_error FROM outbox")
        assert rows == [("pending", (NOW + timedelta(seconds=1)).isoformat(timespec="seconds"),
                         "Twilio answered 429")]
        clock.now += timedelta(seconds=1)
        await sender.drain()
        assert fake.texts_to(U) == ["hei"]
        # a number that always fails with 500: each time Twilio is asked (a 5xx may come
        # after the message was made) and has none; after max_tries, failed with the reason
        fake.fail.for_address["+4790000001"] = "500"
        fake.clock = clock
        await _queue(store, [("+4790000001", "hallo")])
        sender = Sender(store, t, clock, rate=50, backoff=0.01, max_tries=3)
        for _ in range(4):
            await sender.drain()
            clock.now += timedelta(seconds=20)  # past the wait before asking (15 s)
        rows = await store.fetchall("SELECT status, tries, last_error FROM outbox "
                                    "WHERE address = ?", ("+4790000001",))
        assert rows == [("failed", 3, "not accepted in 3 tries (sms has no such message)")]
        assert fake.texts_to("+4790000001") == [] and fake.lists == 3
        await t.close()
    await store.close()


async def test_the_rate_limiter_never_lets_rate_plus_one_starts_into_a_second() -> None:
    limiter = RateLimiter(20)
    starts = []
    for _ in range(21):
        await limiter.acquire()
        starts.append(time.monotonic())
    # 21 starts at 20/s: the first and the last are more than one second apart
    assert starts[-1] - starts[0] >= 1.0
    assert all(b - a >= 1.0 for a, b in zip(starts, starts[20:], strict=False))


# -- health checks -----------------------------------------------------------------------------

async def test_healthz_and_readyz(tmp_path: Path) -> None:
    async with FakeTwilio(SID, AUTH) as fake:
        live = await start_live(sms_settings(tmp_path, fake.url), RunningClock())
        try:
            async with aiohttp.ClientSession() as s:
                async with s.get(live.url + "/healthz") as r:
                    assert r.status == 200
                async with s.get(live.url + "/readyz") as r:
                    assert r.status == 200
                    assert await r.json() == {"database": "ok", "sms sender": "ok",
                                              "sms budget": "ok"}
                live.svc.accepting = False
                async with s.get(live.url + "/readyz") as r:
                    assert r.status == 503
                    assert (await r.json())["server"] == "shutting down"
        finally:
            await live.close()


# -- veivis run as a process -------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _get(url: str) -> int:
    try:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return r.status
    except aiohttp.ClientError:
        return 0


async def test_run_takes_sms_and_stops_cleanly_on_sigterm_losing_nothing(
        tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    store = await Store.open(db)  # a user with no meetings: nothing depends on the wall clock
    await store.add_user(phone=U, channel="sms", first_name="Sara", last_name=None,
                         veileder_id=None, now=NOW)
    await store.close()
    async with FakeTwilio(SID, AUTH) as fake:
        port = _free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TWILIO_", "TELEGRAM_", "VEIVIS_"))}
        env.update({"VEIVIS_DB": str(db), "VEIVIS_PORT": str(port), "VEIVIS_PUBLIC_URL": PUBLIC,
                    "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": AUTH,
                    "TWILIO_FROM": "+4759440000", "TWILIO_API_URL": fake.url,
                    "SMS_RATE": "50"})
        url = f"http://127.0.0.1:{port}"

        async def start() -> asyncio.subprocess.Process:
            p = await asyncio.create_subprocess_exec(
                *VEIVIS, "run", env=env, cwd=str(ROOT), stderr=asyncio.subprocess.PIPE)
            deadline = time.monotonic() + 30
            while await _get(url + "/healthz") != 200:
                assert p.returncode is None, "veivis run exited"
                assert time.monotonic() < deadline, "veivis run did not start"
                await asyncio.sleep(0.05)
            return p

        proc = await start()
        status, _ = await fake.sms(url, PUBLIC, U, "HJELP")
        assert status == 200  # committed before the answer
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert "stopped cleanly" in err.decode()
        assert "Traceback" not in err.decode()
        # the reply was sent before the stop, or waits safely for the next start
        con = sqlite3.connect(db)
        waiting = con.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()
        con.close()
        assert len(fake.texts_to(U)) + waiting[0] >= 1
        proc = await start()
        deadline = time.monotonic() + 30
        while not fake.texts_to(U) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert len(fake.texts_to(U)) == 1  # the HJELP reply, exactly once
        fs = load([ROOT / "flows"]).flowset
        assert fs is not None
        assert fake.texts_to(U) == [said(fs, "system.help")]
        assert "91234567" not in err.decode() and "HJELP" not in err.decode()


# -- operator commands -------------------------------------------------------------------------

async def test_invite_prints_a_single_use_link(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    store = await Store.open(db)
    await seed_demo(store, NOW, channel="sms")
    await store.close()
    async with FakeTelegram(TOKEN) as fake:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("TWILIO_", "TELEGRAM_", "VEIVIS_"))}
        env.update({"VEIVIS_DB": str(db), "TELEGRAM_BOT_TOKEN": TOKEN,
                    "TELEGRAM_API_URL": fake.url})
        p = await asyncio.create_subprocess_exec(
            *VEIVIS, "invite", "912 34 567", env=env, cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(p.communicate(), 60)
        assert p.returncode == 0, err.decode()
        link = out.decode().strip()
        assert link.startswith("https://t.me/veivis_test_bot?start=")
        assert "Den virker én gang, i 7 dager." in err.decode()
        p = await asyncio.create_subprocess_exec(
            *VEIVIS, "invite", "48 00 00 00", env=env, cwd=str(ROOT),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(p.communicate(), 60)
        assert p.returncode == 1
        assert err.decode().startswith("veivis invite: ingen bruker har nummeret 480 00 000")


async def test_outbox_list_shows_failures_without_texts_or_numbers(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    store = await Store.open(db)
    await _queue(store, [(U, "hemmelig tekst"), ("+4790000001", "hei")])
    await store.record_failed(1, "Twilio answered 400 (error 21211)", "21211")
    await store.close()
    r = _run(["outbox", "list", "--failed", "--db", str(db)], {})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "meldinger etter status: feilet 1, venter 1"
    assert lines[1] == "SMS som venter: 1, til sammen 1 SMS-deler (0 sendes som UCS-2: tegn " \
        "utenfor GSM-7)"
    assert lines[2].startswith("#1 ") and "sms til +47******67 feilet, 0 forsøk: Twilio " \
        "answered 400 (error 21211)" in lines[2]
    assert len(lines) == 3
    assert "hemmelig" not in r.stdout and "91234567" not in r.stdout


async def test_outbox_list_counts_the_sms_parts_twilio_will_bill(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    store = await Store.open(db)
    # 152 letters and a € (two septets): the € moves to a second part, so 306 septets are
    # three parts, not two; an emoji makes the whole text UCS-2
    await _queue(store, [(U, "a" * 152 + "€" + "a" * 152), ("+4790000001", "hei 👍")])
    await store.close()
    r = _run(["outbox", "list", "--db", str(db)], {})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == ("SMS som venter: 2, til sammen 4 SMS-deler (1 sendes "
                                        "som UCS-2: tegn utenfor GSM-7)")
    assert "€" not in r.stdout and "👍" not in r.stdout


async def test_backup_makes_a_consistent_copy(tmp_path: Path) -> None:
    db = tmp_path / "v.db"
    store = await Store.open(db)
    await seed_demo(store, NOW)
    r = _run(["backup", str(tmp_path / "copy.db"), "--db", str(db)], {})  # while it is open
    await store.close()
    assert r.returncode == 0, r.stderr
    con = sqlite3.connect(tmp_path / "copy.db")
    assert con.execute("SELECT first_name FROM users").fetchall() == [("Sara",)]
    con.close()
    again = _run(["backup", str(tmp_path / "copy.db"), "--db", str(db)], {})
    assert again.returncode == 1 and "finnes fra før" in again.stderr


def test_every_setting_is_documented_in_the_example_env_file() -> None:
    from bot.app.settings import SETTINGS
    example = (ROOT / "deploy" / "veivis.env.example").read_text()
    names = [line.split("=", 1)[0] for line in example.splitlines()
             if line and not line.startswith("#")]
    assert names == [s.name for s in SETTINGS]


def test_the_container_runs_as_a_user_and_checks_health() -> None:
    docker = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "\nUSER veivis\n" in docker
    assert "/healthz" in docker.split("HEALTHCHECK", 1)[1]
    assert 'CMD ["veivis", "run"]' in docker
    unit = (ROOT / "deploy" / "veivis.service").read_text()
    assert "ExecStart=/opt/veivis/.venv/bin/veivis run" in unit and "User=veivis" in unit
