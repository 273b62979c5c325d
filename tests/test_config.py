"""The configuration file: errors with lines, applied to the database, edited by the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

from bot.app.config import load_config

from .conftest import ROOT, config_from


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VEIVIS_FLOWS": str(ROOT / "flows")}
    env.pop("VEIVIS_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_the_shipped_example_is_valid() -> None:
    conf, errors = load_config(ROOT / "deploy" / "veivis.yaml")
    assert errors == [] and conf is not None
    assert [o.name for o in conf.offices] == ["NAV Gjøvik", "NAV Nordre Land", "NAV Søndre Land",
                                              "NAV Vestre Toten", "NAV Østre Toten"]


def test_mistakes_are_reported_at_their_line(tmp_path: Path) -> None:
    f = tmp_path / "v.yaml"
    f.write_text("kontorer:\n  - navn: A\n    reservetelefon: 12\n  - navn: A\nveiledere:\n"
                 "  - navn: B\n    jobbtelefon: 40011111\n    kontor: C\n  - navn: D\n"
                 "    jobbtelefon: 400 11 111\n    kontor: A\npåminnelser:\n  timer_før: mange\n"
                 "  stille_fra: \"25.00\"\n  kveld: 1\n", encoding="utf-8")
    conf = config_from(tmp_path / "ok.yaml",
                       "kontorer:\n  - navn: A\nveiledere:\n  - navn: B\n    jobbtelefon: "
                       "40011111\n    kontor: A\n    arbeidstid: 08.00-15.30\n    borte_til: "
                       "24.12.2026\n    vikar: 400 22 222\n")
    v = conf.veiledere[0]
    assert (v.working_hours, str(v.away_until), v.backup_phone) == (
        "08.00-15.30", "2026-12-24", "+4740022222")
    conf, errors = load_config(f)
    assert conf is None
    msgs = [e.split(": ", 1)[1] for e in errors]
    lines = [int(e.split(":")[1]) for e in errors]
    assert list(zip(lines, msgs, strict=True)) == [
        (3, "feil: «12» er ikke et telefonnummer (et norsk nummer har 8 sifre)"),
        (4, "feil: kontoret 'A' står to ganger (første gang på linje 2)"),
        (8, "feil: veileder B: kontoret 'C' står ikke under kontorer:"),
        (10, "feil: jobbtelefonen 400 11 111 står to ganger (første gang på linje 6)"),
        (13, "feil: 'timer_før' må være et antall timer (0 til 48)"),
        (14, "feil: 'stille_fra' må være et klokkeslett som \"18.00\""),
        (15, "feil: ukjent nøkkel 'kveld' i påminnelser (mente du 'kvelden_før'?)"),
    ]


def test_the_cli_uses_the_file_and_writes_to_it(tmp_path: Path) -> None:
    shutil.copy(ROOT / "deploy" / "veivis.yaml", tmp_path / "veivis.yaml")
    cfg = tmp_path / "veivis.yaml"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace('kvelden_før: "18.00"',
                                                           'kvelden_før: "17.30"'),
                   encoding="utf-8")
    p = run("veileder", "add", "Per Hansen", "400 99 999", "--office", "NAV Østre Toten",
            cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    text = cfg.read_text(encoding="utf-8")
    assert "  - navn: Per Hansen\n    jobbtelefon: 400 99 999\n    kontor: NAV Østre Toten\n" \
        in text
    assert "# Fyll inn adresse" in text  # comments survive
    assert run("user", "add", "91200000", "--veileder", "40099999", cwd=tmp_path).returncode == 0
    assert run("meeting", "add", "91200000", "24.11.2027", "kl", "10", cwd=tmp_path
               ).returncode == 0
    rows = subprocess.run(
        [sys.executable, "-c", "import sqlite3; print(sqlite3.connect('veivis.db').execute("
         "\"SELECT due_at FROM scheduled WHERE slot LIKE 'evening%'\").fetchone()[0])"],
        capture_output=True, text=True, cwd=tmp_path)
    assert rows.stdout.strip() == "2027-11-23T16:30:00+00:00"  # 17.30 in Oslo, from the file


def test_closed_days_and_working_hours(tmp_path: Path) -> None:
    p = tmp_path / "v.yaml"
    conf = config_from(p, "kontorer:\n  - navn: NAV Gjøvik\nstengt:\n  - 24.12.2026\n"
                          "  - 31.12.2026\nveiledere:\n  - navn: Kari\n    jobbtelefon: "
                          "400 12 345\n    kontor: NAV Gjøvik\n    arbeidstid: 09.00-14.30\n")
    assert conf.rules.closed_days == {date(2026, 12, 24), date(2026, 12, 31)}
    assert conf.veiledere[0].working_hours == "09.00-14.30"
    p.write_text("stengt:\n  - 24.12.2026\n  - 32.12.2026\nveiledere:\n  - navn: Kari\n"
                 "    jobbtelefon: 400 12 345\n    kontor: NAV Gjøvik\n"
                 "    arbeidstid: 15.00-08.00\nkontorer:\n  - navn: NAV Gjøvik\n",
                 encoding="utf-8")
    conf, errors = load_config(p)
    assert conf is None
    assert errors == [f"{p}:3: feil: 'stengt' må være en dato som 24.12.2026",
                      f"{p}:8: feil: veileder Kari: 'arbeidstid' må skrives som \"08.00-15.30\""]
