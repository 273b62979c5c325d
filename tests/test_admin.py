"""`veivis user|veileder|meeting` and the chat clock, as a coordinator runs them."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from bot.engine.model import FlowSet
from bot.timing.planner import OSLO

from .conftest import Mirror, yes_to_welcome
from .test_cli import veivis


def oslo(d: int, h: int, mi: int = 0) -> datetime:
    return datetime(2026, 11, d, h, mi, tzinfo=OSLO)


def ok(*args: str) -> str:
    p = veivis(*args)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_register_list_move_cancel(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    ok("veileder", "add", "Ola Nordmann", "400 11 111", "--office", "NAV Østre Toten", "--db", db)
    ok("user", "add", "912 00 000", "--name", "Ali Khan", "--veileder", "40011111", "--db", db)
    out = ok("meeting", "add", "91200000", "24.11.2027", "10:00", "NAV", "Gjøvik", "--db", db)
    assert out.strip() == "møte 1: onsdag 24.11.2027 kl. 10.00, NAV Gjøvik"  # far: the year
    listing = ok("meeting", "list", "--db", db)
    assert "first" in listing and "Ali Khan" in listing and "ikke svart" in listing
    ok("meeting", "move", "1", "25.11.2027", "kl", "12", "--db", db)
    assert "torsdag 25.11.2027 kl. 12.00" in ok("meeting", "list", "--db", db)
    ok("meeting", "cancel", "1", "--db", db)
    assert ok("meeting", "list", "--db", db).strip() == "ingen møter"
    assert "AVLYST" in ok("meeting", "list", "--all", "--db", db)


def test_mistakes_get_one_plain_line(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    cases = [
        (("user", "add", "12"), "«12» er ikke et telefonnummer"),
        (("meeting", "add", "91200000", "i", "morgen", "kl", "10"), "ingen bruker har nummeret"),
        (("meeting", "cancel", "7"), "møte 7 finnes ikke"),
        (("user", "add", "91200000", "--veileder", "40000000"), "ingen veileder har jobbtelefonen"),
    ]
    for args, message in cases:
        p = veivis(*args, "--db", db)
        assert p.returncode == 1 and message in p.stdout, p.stdout + p.stderr
        assert "Traceback" not in p.stdout + p.stderr


def test_csv_import_is_all_or_nothing_with_line_numbers(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    ok("user", "add", "912 00 000", "--db", db)
    bad = tmp_path / "bad.csv"
    bad.write_text("telefon;tid;sted;type\n912 00 000;1.12.2027 kl 10;NAV Gjøvik;første\n"
                   "912 00 001;2.12.2027 kl 10;;\n91200000;31.11.2027 kl 10;;\n"
                   "91200000;3.12.2027 kl 10;;kanskje\n", encoding="utf-8")
    p = veivis("meeting", "import", str(bad), "--db", db)
    assert p.returncode == 1
    lines = p.stdout.strip().splitlines()
    assert lines == [f"veivis: {bad}:3: ingen bruker har nummeret 912 00 001; legg brukeren "
                     "til først (veivis user add)",
                     f"{bad}:4: datoen 31.11 finnes ikke",
                     f"{bad}:5: type må være første eller oppfølging, ikke «kanskje»",
                     "ingenting ble lagt inn"]
    assert ok("meeting", "list", "--db", db).strip() == "ingen møter"
    good = tmp_path / "good.csv"
    good.write_text("telefon,tid,sted\n912 00 000,1.12.2027 kl 10,NAV Gjøvik\n"
                    "912 00 000,8.12.2027 kl 10,\n", encoding="utf-8")
    assert ok("meeting", "import", str(good), "--db", db).strip() == "la inn 2 møter"
    kinds = [line.split()[5] for line in ok("meeting", "list", "--db", db).splitlines()]
    assert kinds == ["first", "followup"]


def test_chat_clock_fires_reminders_as_it_passes_them(tmp_path: Path, flows: FlowSet) -> None:
    welcome = yes_to_welcome(flows)  # the demo user is new: the welcome comes first
    p = veivis("chat", "--db", str(tmp_path / "c.db"), "--json", "--now", "2026-11-23 12:00",
               stdin="\n".join([*welcome, "/tid +6h", "ja", "/tid +1d", ""]))
    assert p.returncode == 0, p.stderr
    texts = [json.loads(line)["text"] for line in p.stdout.splitlines()]
    def shows(part: list[str]) -> bool:
        return any(texts[i:i + len(part)] == part for i in range(len(texts)))
    assert texts[:1] == Mirror(flows).texts("welcome")[:1]
    assert shows(Mirror(flows).texts("first_meeting_prep"))  # once the welcome has its yes
    assert shows(Mirror(flows, oslo(23, 18, 0)).texts("meeting_reminder"))  # 18.00 the day before
    survey = Mirror(flows).texts("first_meeting_survey")
    assert texts[-len(survey):] == survey  # the survey, after the meeting


def test_chat_rejects_a_bad_clock(tmp_path: Path) -> None:
    p = veivis("chat", "--db", str(tmp_path / "c.db"), "--now", "i morgen")
    assert p.returncode == 2 and "2026-11-24 17:00" in p.stderr
