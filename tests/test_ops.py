"""Running Veivis for years at a municipality: one settings source for every command, secrets
from files, refusing a database from a newer Veivis, files written whole or not at all, and
log lines a log collector can read without message texts or phone numbers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from bot.app import cli
from bot.app.config import add_veileder_to_file
from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.app.logs import setup_logging
from bot.app.settings import SettingsError, load_settings
from bot.store import Store
from bot.store.migrations import MIGRATIONS

from .conftest import NOW, ROOT, said, said_yes
from .fakes import FakeTwilio
from .livekit import PUBLIC, SID, TOKEN, RunningClock, sms_live, sms_settings, start_live

OPS_ENV = ("VEIVIS_", "TWILIO_", "TELEGRAM_", "METRICS_")


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh working folder with no settings in the environment."""
    for k in list(os.environ):
        if k.startswith(OPS_ENV):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def veivis(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


# -- one settings source ------------------------------------------------------------------

def test_every_command_uses_the_database_and_config_the_settings_name(
        here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    data = here / "data"
    data.mkdir()
    shutil.copy(ROOT / "deploy" / "veivis.yaml", data / "kontor.yaml")
    settings = here / "veivis.toml"
    settings.write_text(f'veivis_db = "{data / "live.db"}"\n'
                        f'veivis_config = "{data / "kontor.yaml"}"\n', encoding="utf-8")
    monkeypatch.setenv("VEIVIS_SETTINGS", str(settings))
    assert veivis(capsys, "veileder", "add", "Per Hansen", "400 99 999")[0] == 0
    code, out, err = veivis(capsys, "user", "add", "912 00 000", "--veileder", "40099999")
    assert code == 0, out + err
    code, out, _ = veivis(capsys, "meeting", "add", "91200000", "24.11.2027", "kl", "10")
    assert code == 0, out
    assert "Per Hansen" in (data / "kontor.yaml").read_text(encoding="utf-8")
    assert "912 00 000" in veivis(capsys, "user", "list")[1]
    assert "912 00 000" in veivis(capsys, "meeting", "list")[1]
    assert veivis(capsys, "outbox", "list")[0] == 0
    assert veivis(capsys, "backup", str(here / "copy.db"))[0] == 0
    with sqlite3.connect(here / "copy.db") as c:
        assert c.execute("SELECT COUNT(*) FROM users").fetchone() == (1,)
        assert c.execute("SELECT COUNT(*) FROM meetings").fetchone() == (1,)
    code, out, err = veivis(capsys, "export-user", "91200000")
    assert code == 0 and '"phone": "+4791200000"' in out, out + err
    # nothing went to a second database in the working folder
    assert not (here / "veivis.db").exists()
    assert sorted(p.name for p in here.iterdir() if not p.name.startswith("copy.db")) == [
        "data", "veivis.toml"]
    # --settings on the command line names the same file the same way
    monkeypatch.delenv("VEIVIS_SETTINGS")
    assert "912 00 000" in veivis(capsys, "--settings", str(settings), "user", "list")[1]
    assert not (here / "veivis.db").exists()


def test_a_broken_settings_file_stops_every_command_plainly(
        here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = here / "veivis.toml"
    bad.write_text('veivis_db = "x.db"\nveivis_dbb = "y"\n', encoding="utf-8")
    for args in (["user", "list"], ["run"], ["check-config"], ["outbox", "list"]):
        code, _, err = veivis(capsys, "--settings", str(bad), *args)
        assert code == 1
        assert "ukjent innstilling «veivis_dbb»" in err and "Traceback" not in err
    assert not (here / "x.db").exists()


def test_a_mistyped_environment_variable_is_warned_about_by_every_command(
        here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VEIVIS_DBB", str(here / "x.db"))
    monkeypatch.setenv("TELEGRAM_BOT_TOKN", TOKEN)
    code, _, err = veivis(capsys, "user", "list")
    assert code == 0
    assert ("veivis: merk: miljøvariabelen VEIVIS_DBB er ukjent og blir ikke brukt (mente du "
            "VEIVIS_DB?)") in err
    assert "TELEGRAM_BOT_TOKN er ukjent og blir ikke brukt (mente du TELEGRAM_BOT_TOKEN?)" in err
    assert TOKEN not in err
    code, _, err = veivis(capsys, "check-config")
    assert code == 1 and "VEIVIS_DBB er ukjent" in err
    monkeypatch.delenv("VEIVIS_DBB")
    monkeypatch.delenv("TELEGRAM_BOT_TOKN")
    assert "merk" not in veivis(capsys, "user", "list")[2]


# -- secrets from files -------------------------------------------------------------------

def test_a_secret_comes_from_a_file(here: Path) -> None:
    f = here / "token"
    f.write_text(TOKEN + "\n", encoding="utf-8")
    f.chmod(0o600)
    s = load_settings(env={"TELEGRAM_BOT_TOKEN_FILE": str(f)})
    assert s.get("TELEGRAM_BOT_TOKEN") == TOKEN and s.problems() == []
    assert TOKEN not in "\n".join(s.describe())
    toml = here / "veivis.toml"
    toml.write_text(f'twilio_auth_token_file = "{f}"\n', encoding="utf-8")
    assert load_settings(toml, env={}).get("TWILIO_AUTH_TOKEN") == TOKEN
    # the environment's value wins over the file's _FILE, as for every setting
    assert load_settings(toml, env={"TWILIO_AUTH_TOKEN": "x"}).get("TWILIO_AUTH_TOKEN") == "x"


@pytest.mark.parametrize(("mode", "content", "env_extra", "expected"), [
    (0o644, TOKEN, {}, "kan leses av alle på maskinen; kjør: chmod 600"),
    (0o600, "\n", {}, "er tom"),
    (0o600, TOKEN, {"TELEGRAM_BOT_TOKEN": TOKEN}, "både TELEGRAM_BOT_TOKEN og "
     "TELEGRAM_BOT_TOKEN_FILE er satt"),
    (None, TOKEN, {}, "finnes ikke"),
])
def test_a_bad_secret_file_is_refused(here: Path, mode: int | None, content: str,
                                      env_extra: dict[str, str], expected: str) -> None:
    f = here / "token"
    if mode is not None:
        f.write_text(content, encoding="utf-8")
        f.chmod(mode)
    with pytest.raises(SettingsError, match=expected):
        load_settings(env={"TELEGRAM_BOT_TOKEN_FILE": str(f), **env_extra})


def test_a_value_and_its_file_in_one_settings_file_are_refused(here: Path) -> None:
    f = here / "token"
    f.write_text(TOKEN, encoding="utf-8")
    f.chmod(0o600)
    toml = here / "veivis.toml"
    toml.write_text(f'telegram_bot_token = "{TOKEN}"\ntelegram_bot_token_file = "{f}"\n',
                    encoding="utf-8")
    with pytest.raises(SettingsError, match="både TELEGRAM_BOT_TOKEN og "
                       "TELEGRAM_BOT_TOKEN_FILE er satt"):
        load_settings(toml, env={})
    toml.write_text('SMS_RATE = "2"\nsms_rate = "3"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="sms_rate står to ganger"):
        load_settings(toml, env={})


def test_an_empty_secret_file_name_is_refused(here: Path) -> None:
    with pytest.raises(SettingsError, match="METRICS_TOKEN_FILE er satt, men tom"):
        load_settings(env={"METRICS_TOKEN_FILE": " "})


@pytest.mark.parametrize("kind", ["fifo", "device", "folder"])
def test_a_secret_file_that_is_not_a_plain_file_is_refused_without_waiting(
        here: Path, kind: str) -> None:
    if kind == "fifo":
        path = here / "pipe"
        os.mkfifo(path, 0o666)  # nobody writes: reading it would wait for ever
    elif kind == "device":
        path = Path("/dev/zero")  # endless: reading it would never end
    else:
        path = here / "dir"
        path.mkdir(mode=0o700)
    with pytest.raises(SettingsError, match="er ikke en vanlig fil"):
        load_settings(env={"METRICS_TOKEN_FILE": str(path)})


def test_run_refuses_a_world_readable_secret_file(
        here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    f = here / "token"
    f.write_text(TOKEN, encoding="utf-8")
    f.chmod(0o644)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN_FILE", str(f))
    for args in (["run"], ["check-config"]):
        code, _, err = veivis(capsys, *args)
        assert code == 1 and "chmod 600" in err and "Traceback" not in err


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("SMS_RATE", "nan", "SMS_RATE må være et tall"),
    ("TELEGRAM_RATE", "inf", "TELEGRAM_RATE må være et tall"),
    ("VEIVIS_PORT", "99999", "VEIVIS_PORT må være et helt tall fra 1 til 65535"),
    ("VEIVIS_PORT", "80.5", "VEIVIS_PORT må være et helt tall fra 1 til 65535"),
    ("VEIVIS_HOST", "999.1.1.1", "VEIVIS_HOST må være en IP-adresse eller et vertsnavn"),
    ("VEIVIS_HOST", "bad host", "VEIVIS_HOST må være en IP-adresse eller et vertsnavn"),
    ("OUTBOX_MAX_TRIES", "1.5", "OUTBOX_MAX_TRIES må være et helt tall"),
    ("VEIVIS_CLOCK_OFFSET", "nan", "VEIVIS_CLOCK_OFFSET må være et antall sekunder"),
    ("TELEGRAM_API_URL", "notaurl", "TELEGRAM_API_URL må være en nettadresse"),
    ("TWILIO_API_URL", "ftp://x", "TWILIO_API_URL må være en nettadresse"),
    ("VEIVIS_DB", "/etc", "databasen /etc er en mappe"),
    ("VEIVIS_DB", "/nonexistent/dir/v.db", "mappen /nonexistent/dir finnes ikke"),
    ("VEIVIS_DB", "text.db", "databasen text.db er ikke en SQLite-database"),
    ("VEIVIS_SEAL_KEY_FILE", "nodir/key", "mappen nodir finnes ikke"),
    ("VEIVIS_DB", "postgresql://veivis@127.0.0.1:9/veivis", "VEIVIS_SEAL_KEY_FILE må peke på "
     "seglnøkkelen når databasen er PostgreSQL"),
    ("DIGEST_SCHEDULE", "hour=99", "DIGEST_SCHEDULE: «hour=99»: hour må være 0-23"),
    ("DIGEST_SCHEDULE", "day_of_week=mandag", "DIGEST_SCHEDULE: «day_of_week=mandag»: "),
])
def test_settings_that_would_stop_run_are_caught_by_check_config(
        here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        name: str, value: str, expected: str) -> None:
    (here / "text.db").write_text("hei, dette er ikke en database\n", encoding="utf-8")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_URL", "http://127.0.0.1:9")  # never reached
    monkeypatch.setenv(name, value)
    for args in (["check-config"], ["run"]):
        code, out, err = veivis(capsys, *args)
        assert code == 1, out
        assert expected in err, err
        assert "Traceback" not in err and "Error" not in err
        assert not any(w in err for w in ("must", "invalid", "Invalid", "wrong"))


@pytest.mark.parametrize(("db", "expected"), [
    ("/etc", "databasen /etc er en mappe"),
    ("/nonexistent/dir/v.db", "mappen /nonexistent/dir finnes ikke"),
    ("text.db", "databasen text.db er ikke en SQLite-database"),
])
def test_every_command_names_a_bad_database_file_plainly(
        here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        db: str, expected: str) -> None:
    (here / "text.db").write_text("hei, dette er ikke en database\n", encoding="utf-8")
    before = (here / "text.db").read_bytes()
    monkeypatch.setenv("VEIVIS_DB", db)
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # noqa: SIM115  (chat reads stdin)
    for args in (["user", "list"], ["outbox", "list"], ["meeting", "list"],
                 ["chat", "--no-demo"], ["backup", "copy.db"], ["report"]):
        code, _, err = veivis(capsys, *args)
        assert code == 1
        assert expected in err or "databasen finnes ikke" in err, (args, err)
        assert err.count("\n") == 1 and "Error" not in err, (args, err)
    assert (here / "text.db").read_bytes() == before
    assert not (here / "copy.db").exists()


def test_an_unexpected_failure_is_one_norwegian_line(
        here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(args: object) -> int:
        raise RuntimeError("something English went wrong")
    monkeypatch.setattr(cli, "cmd_check_config", boom)
    code, _, err = veivis(capsys, "check-config")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("veivis: noe gikk galt") and "--verbose" in err
    assert "English" not in err


def _options_of(words: list[str]) -> set[str] | None:
    """The options the command named by `words` (veivis user add ...) takes; None: unknown."""
    import argparse
    parser = cli.build_parser()
    known = set(parser._option_string_actions)
    for w in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or w not in subs[0].choices:
            break
        parser = subs[0].choices[w]
        known |= set(parser._option_string_actions)
    return known


@pytest.mark.parametrize("doc", ["README.md", "deploy/README.md"])
def test_every_option_the_docs_show_exists(doc: str) -> None:
    import re
    text = (ROOT / doc).read_text(encoding="utf-8")
    shown = re.findall(r"`(veivis [^`]+)`", text)
    assert shown
    wrong = []
    for command in shown:
        words = re.findall(r"[a-z][a-z-]*", command.split("--")[0])[1:]
        known = _options_of(words) or set()
        wrong += [f"{command}: {o}" for o in re.findall(r"--[a-z][a-z-]*", command)
                  if o not in known]
    assert wrong == []


# -- a database from a newer Veivis --------------------------------------------------------

def _newer_db(path: Path) -> int:
    async def make() -> None:
        store = await Store.open(str(path))
        await store.close()
    asyncio.run(make())
    newer = len(MIGRATIONS) + 1
    c = sqlite3.connect(path)  # closed here, not whenever the collector gets to it
    try:
        c.execute(f"PRAGMA user_version = {newer}")
    finally:
        c.close()
    return newer


async def test_the_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    db = tmp_path / "veivis.db"
    newer = await asyncio.to_thread(_newer_db, db)
    from bot.store.migrations import SchemaTooNew
    with pytest.raises(SchemaTooNew) as e:
        await Store.open(str(db))
    assert (e.value.found, e.value.known) == (newer, len(MIGRATIONS))


def _dump(db: Path) -> list[str]:
    with sqlite3.connect(db) as c:
        return list(c.iterdump())


@pytest.mark.parametrize("args", [["user", "list"], ["outbox", "list"], ["run"],
                                  ["chat", "--no-demo"], ["report"]])
def test_every_command_refuses_a_database_from_a_newer_veivis(
        here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        args: list[str]) -> None:
    db = here / "veivis.db"
    newer = _newer_db(db)
    before = _dump(db)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)  # `run` gets as far as the database
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # noqa: SIM115  (chat reads stdin)
    code, _, err = veivis(capsys, *args)
    assert code == 1
    assert f"har skjemaversjon {newer}, nyere enn denne versjonen av Veivis kjenner" in err
    assert "newer than this Veivis knows" in err and "Traceback" not in err
    assert _dump(db) == before  # nothing changed
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone() == (newer,)


def test_backup_refuses_a_database_from_a_newer_veivis_and_leaves_nothing(
        here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = here / "veivis.db"
    newer = _newer_db(db)
    before = [p.name for p in here.iterdir() if not p.name.endswith(("-wal", "-shm"))]
    code, out, err = veivis(capsys, "backup", str(here / "b.db"))
    assert code == 1, out
    assert f"har skjemaversjon {newer}, nyere enn denne versjonen" in err
    assert "Traceback" not in err
    assert {p.name for p in here.iterdir()} <= set(before)  # no copy, no -wal/-shm


def _live_db(here: Path) -> Path:
    db = here / "veivis.db"
    asyncio.run(_open_close(db))
    return db


async def _open_close(db: Path) -> None:
    store = await Store.open(str(db))
    await store.close()


def test_backup_into_a_missing_folder_or_through_a_symlink_is_refused_plainly(
        here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _live_db(here)
    code, _, err = veivis(capsys, "backup", "nodir/x.db")
    assert code == 1 and "mappen nodir finnes ikke" in err and "Error" not in err
    planted = here / "elsewhere.db"
    (here / "link.db").symlink_to(planted)  # dangling: following it would make elsewhere.db
    code, _, err = veivis(capsys, "backup", "link.db")
    assert code == 1 and "link.db finnes fra før" in err
    assert not planted.exists()


def test_restore_leaves_nothing_beside_the_backup_and_names_a_folder(
        here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _live_db(here)
    kept = here / "kept"
    kept.mkdir()
    assert veivis(capsys, "backup", str(kept / "b.db"))[0] == 0
    code, _, err = veivis(capsys, "restore", str(kept / "b.db"), "--db", str(here / "new.db"))
    assert code == 0, err
    assert sorted(p.name for p in kept.iterdir()) == ["b.db"]
    code, _, err = veivis(capsys, "restore", str(kept), "--db", str(here / "other.db"))
    assert code == 1 and "er en mappe, ikke en sikkerhetskopi" in err
    assert not (here / "other.db").exists()


def test_each_migration_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bot.store.db")

    async def go() -> None:
        await (await Store.open(str(tmp_path / "v.db"))).close()
    asyncio.run(go())
    logged = [r.getMessage() for r in caplog.records]
    assert f"database schema version 0; migrating to {len(MIGRATIONS)}" in logged
    for v in range(1, len(MIGRATIONS) + 1):
        assert f"database migrated to version {v}" in logged


# -- files written whole or not at all -----------------------------------------------------

def test_a_crash_while_writing_the_config_leaves_the_old_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "veivis.yaml"
    shutil.copy(ROOT / "deploy" / "veivis.yaml", cfg)
    cfg.chmod(0o640)
    before = cfg.read_bytes()

    def crash(fd: int) -> None:
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="No space"):
        add_veileder_to_file(cfg, "Per Hansen", "+4740099999", "NAV Gjøvik")
    assert cfg.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["veivis.yaml"]  # no temp file left
    monkeypatch.undo()
    add_veileder_to_file(cfg, "Per Hansen", "+4740099999", "NAV Gjøvik")
    assert "Per Hansen" in cfg.read_text(encoding="utf-8")
    assert cfg.stat().st_mode & 0o777 == 0o640  # its permissions are kept
    new = tmp_path / "ny.yaml"
    add_veileder_to_file(new, "Per Hansen", "+4740099999", "NAV Gjøvik")
    assert new.stat().st_mode & 0o777 == 0o600


def test_a_crash_while_making_the_seal_key_leaves_no_half_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.store.seal import Sealer
    key = tmp_path / "veivis.db.seal-key"

    def crash(fd: int) -> None:
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(Exception, match=r"seglnøkkelen .* kan ikke lages"):
        Sealer.from_file(key)
    assert not key.exists() and list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    sealer = Sealer.from_file(key)
    assert key.stat().st_mode & 0o777 == 0o600
    assert Sealer.from_file(key).mac("x") == sealer.mac("x")  # the same key next time


@pytest.mark.parametrize(("key", "content", "expected"), [
    ("nodir/key", None, "seglnøkkelen nodir/key kan ikke lages: mappen nodir finnes ikke"),
    ("key", b"", "seglnøkkelen key er tom"),
    ("key", b"not a key at all\n", "key er ikke en seglnøkkel (64 heksadesimale tegn)"),
    ("key", b"ab" * 31 + b"\n", "key er ikke en seglnøkkel (64 heksadesimale tegn)"),
])
def test_a_bad_seal_key_is_one_plain_norwegian_line(
        here: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        key: str, content: bytes | None, expected: str) -> None:
    if content is not None:
        (here / key).write_bytes(content)
    monkeypatch.setenv("VEIVIS_SEAL_KEY_FILE", key)
    for args in (["user", "list"], ["outbox", "list"]):
        code, _, err = veivis(capsys, *args)
        assert code == 1
        assert err.startswith(f"veivis: {expected}") and err.count("\n") == 1, err


# -- logs ----------------------------------------------------------------------------------

def test_json_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    import io
    buf = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(load_settings(env={"VEIVIS_LOG_FORMAT": "json"}), service=True,
                      stream=buf)
        logging.getLogger("bot.test").info("veivis is running on %s:%d", "127.0.0.1", 8080)
        logging.getLogger("twilio.http_client").info("Data: To=+4791234567 Body=hei")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert len(lines) == 1  # the Twilio client's request log is held back at INFO
    assert lines[0]["level"] == "INFO" and lines[0]["logger"] == "bot.test"
    assert lines[0]["message"] == "veivis is running on 127.0.0.1:8080"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_library_that_logs_a_secret_has_it_hidden(fmt: str) -> None:
    """python-telegram-bot logs a broken answer's body at ERROR: a proxy that echoes the path
    put /bot<TOKEN>/getMe in veivis run's log."""
    import io
    from urllib.parse import quote
    buf = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    auth = "twilio-auth-token-0123456789"
    try:
        setup_logging(load_settings(env={"VEIVIS_LOG_FORMAT": fmt, "TELEGRAM_BOT_TOKEN": TOKEN,
                                         "TWILIO_AUTH_TOKEN": auth}), service=True, stream=buf)
        lib = logging.getLogger("telegram.request.BaseRequest")
        lib.error("Can not load invalid JSON data: %r", f"err /bot{TOKEN}/getMe")
        lib.error("quoted: %s", quote(f"/bot{TOKEN}/getMe", safe=""))
        try:
            raise RuntimeError(f"https://x:{auth}@api.twilio.com/")
        except RuntimeError:
            logging.getLogger("twilio").exception("failed")
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    out = buf.getvalue()
    assert out.count("[skjult]") >= 3, out
    secret_part = TOKEN.split(":", 1)[1]
    assert secret_part not in out and auth not in out


# -- /metrics and what the logs hold after a real conversation ----------------------------

METRICS_TOKEN = "metrics-token-0123456789"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    return 0.0


async def test_metrics_after_a_scripted_conversation_and_logs_hold_no_texts_or_numbers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def seed(store: Store) -> None:
        await seed_demo(store, NOW, channel="sms")
        await said_yes(store)

    caplog.set_level(logging.DEBUG)  # everything our code logs, at every level
    texts = ["STOPP", "START", "jeg har lyst å ta livet av meg", "HJELP"]
    async with FakeTwilio(SID, "fake-twilio-auth-token") as fake:
        clock = RunningClock()
        fake.clock = clock
        live = await start_live(sms_settings(tmp_path, fake.url, METRICS_TOKEN=METRICS_TOKEN),
                                clock, seed)
        try:
            for t in texts:
                assert (await fake.sms(live.url, PUBLIC, DEMO_USER_PHONE, t))[0] == 200
                await live.settled()
            assert said(live.svc.flows, "system.stopped") in fake.texts_to(DEMO_USER_PHONE)
            replay = {"MessageSid": "SM" + "e" * 32, "AccountSid": SID,
                      "From": DEMO_USER_PHONE, "Body": "HJELP"}
            for _ in range(2):  # a provider retry: handled once, counted as a duplicate
                assert await fake.webhook(live.url, PUBLIC, "/twilio/sms", replay) == 200
            await live.settled()
            assert await fake.webhook(live.url, PUBLIC, "/twilio/sms", replay,
                                      signature=None) == 403
            async with aiohttp.ClientSession() as s:
                async with s.get(live.url + "/metrics") as r:
                    assert r.status == 401
                async with s.get(live.url + "/metrics",
                                 headers={"Authorization": "Bearer wrong"}) as r:
                    assert r.status == 401
                async with s.get(live.url + "/metrics",
                                 headers={"Authorization": f"Bearer {METRICS_TOKEN}"}) as r:
                    assert r.status == 200
                    assert r.headers["Content-Type"].startswith("text/plain")
                    text = await r.text()
            sent = len(fake.sent)
        finally:
            await live.close()
    assert _metric(text, 'veivis_messages_in_total{channel="sms"}') == len(texts) + 1
    assert _metric(text, 'veivis_messages_duplicate_total{channel="sms"}') == 1
    assert _metric(text, "veivis_crisis_replies_total") == 1
    assert _metric(text, 'veivis_messages_out_total{channel="sms"}') == sent > 0
    assert _metric(text, 'veivis_outbox_messages{status="sent"}') == sent
    assert _metric(text, 'veivis_outbox_messages{status="pending"}') == 0
    assert _metric(text, 'veivis_webhook_rejected_total{route="/twilio/sms",status="403"}') == 1
    assert _metric(text, "veivis_pipeline_latency_seconds_count") == len(texts) + 2
    # nothing personal in the scrape
    digits = DEMO_USER_PHONE.lstrip("+")
    assert digits[-8:] not in text and "livet" not in text
    # nor in the logs: every record our code and the libraries wrote, at every level
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert any("crisis signal" in r.getMessage() for r in caplog.records)
    for t in texts:
        assert t not in logged
    assert "livet" not in logged
    assert digits[-8:] not in logged and digits[-6:] not in logged


async def test_no_metrics_without_a_token(tmp_path: Path) -> None:
    async with sms_live(tmp_path) as (live, _fake), aiohttp.ClientSession() as s, \
            s.get(live.url + "/metrics") as r:
        assert r.status == 404


# -- backup while running, restore into a fresh place, start --------------------------------

async def test_backup_while_running_then_restore_into_a_fresh_place_and_start(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def seed(store: Store) -> None:
        await seed_demo(store, NOW, channel="sms")
        await said_yes(store)

    live_dir, fresh = tmp_path / "live", tmp_path / "fresh"
    live_dir.mkdir()
    backup = tmp_path / "backup.db"
    tables = "SELECT * FROM {} ORDER BY id"
    async with sms_live(live_dir, seed) as (live, fake):
        assert (await fake.sms(live.url, PUBLIC, DEMO_USER_PHONE, "HJELP"))[0] == 200
        await live.settled()
        before = {t: await live.store.fetchall(tables.format(t))
                  for t in ("users", "meetings", "scheduled", "outbox", "veiledere")}
        # while the bot runs (and holds the database open)
        code = await asyncio.to_thread(cli.main, ["backup", str(backup), "--db",
                                                  str(live_dir / "veivis.db")])
        assert code == 0
    fresh.mkdir()
    db = fresh / "veivis.db"
    shutil.copy(live_dir / "veivis.db.seal-key", fresh / "veivis.db.seal-key")  # kept apart
    assert cli.main(["restore", str(backup), "--db", str(db)]) == 0
    # never over a database that is there
    code = cli.main(["restore", str(backup), "--db", str(db)])
    assert code == 1 and "finnes; stopp Veivis" in capsys.readouterr().err
    broken = tmp_path / "broken.db"
    broken.write_bytes(backup.read_bytes()[:8192])
    code = cli.main(["restore", str(broken), "--db", str(tmp_path / "x.db")])
    assert code == 1 and not (tmp_path / "x.db").exists()
    async with FakeTwilio(SID, "fake-twilio-auth-token") as fake:
        clock = RunningClock()
        live = await start_live(sms_settings(fresh, fake.url), clock)
        try:
            after = {t: await live.store.fetchall(tables.format(t)) for t in before}
            assert after == before and before["users"] and before["meetings"]
            async with aiohttp.ClientSession() as s, s.get(live.url + "/readyz") as r:
                assert r.status == 200
        finally:
            await live.close()


# -- phone numbers that cannot get an SMS ---------------------------------------------------

@pytest.mark.parametrize("number", ["12345678", "+99912345678", "+4712345678", "0047 1234 5678"])
def test_numbers_that_do_not_exist_are_refused_at_registration(
        here: Path, capsys: pytest.CaptureFixture[str], number: str) -> None:
    code, out, err = veivis(capsys, "user", "add", number)
    assert code == 1 and "er ikke et telefonnummer" in out + err, out + err
    assert "Traceback" not in out + err
    code, out, err = veivis(capsys, "meeting", "add", number, "24.11.2027", "kl", "10")
    assert code == 1 and "er ikke et telefonnummer" in out + err
    assert "ingen brukere" in veivis(capsys, "user", "list")[1]


def test_a_landline_is_registered_with_a_warning(
        here: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = veivis(capsys, "user", "add", "61 00 00 00")
    assert code == 0 and "61 00 00 00 er et fastnummer" in out
    code, out, _ = veivis(capsys, "user", "add", "912 34 567")
    assert code == 0 and "fastnummer" not in out


def test_a_moete_command_with_a_number_that_does_not_exist_is_answered_plainly() -> None:
    from bot.timing.when import WhenError, parse_command
    with pytest.raises(WhenError, match="12 34 56 78 er ikke et telefonnummer som finnes"):
        parse_command("MØTE +4712345678 24.11 10:00", NOW)
    assert parse_command("MØTE 912 34 567 24.11 10:00", NOW).phone == "+4791234567"


def test_commands_other_than_run_do_not_load_the_web_server_libraries() -> None:
    """`veivis user add` and the like start in half the time when the command line does not
    import the web server, aiohttp, python-telegram-bot and the metrics library (each
    process had spent about 0.5 s of CPU on them); `run` and `invite` load them themselves."""
    import subprocess
    import sys

    heavy = ("aiohttp", "telegram", "bot.app.server", "prometheus_client")
    code = ("import sys, bot.app.cli; "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, timeout=60, check=True,
                       env={**os.environ, "VEIVIS_FLOWS": "/nonexistent",
                            "VEIVIS_MESSAGES": "/nonexistent"})
    assert p.stdout.strip() == "[]", p.stdout
