"""The two commands a person runs: `veivis chat` and `veivis flows ...`, as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def veivis(*args: str, stdin: str = "", cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd, env=ENV, timeout=120)


def test_chat_reads_lines_and_prints_json(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    p = veivis("chat", "--db", str(db), "--json", "--flows", str(ROOT / "flows"),
               "--flow", "menu", "--now", "2026-11-23 07:30", stdin="1\n")
    assert p.returncode == 0, p.stderr
    msgs = [json.loads(line) for line in p.stdout.splitlines()]
    assert msgs[0]["text"] == "Hva vil du gjøre?"
    assert msgs[0]["choices"] == ["Se møtene mine", "Sende melding til veilederen",
                                  "Si hva du synes (anonymt)", "Hva er aktivitetsplikt?", "Hjelp"]
    assert msgs[0]["to"] == "+4791234567"
    # the demo data: a first meeting with Kari at NAV Gjøvik on the next working day at 10.00
    assert msgs[1]["text"].startswith("Neste møte med Kari Nordmann er ")
    assert "kl. 10.00" in msgs[1]["text"] and "choices" not in msgs[1]


def test_first_contact_is_the_welcome(tmp_path: Path) -> None:
    # a number Veivis does not know yet (the demo user would get the preparation first)
    p = veivis("chat", "--db", str(tmp_path / "w.db"), "--json", "--no-demo", "--now",
               "2026-11-23 12:00", stdin="hei\n3\nja\n")
    msgs = [json.loads(line) for line in p.stdout.splitlines()]
    assert msgs[0]["text"].startswith("Hei! Jeg er Veivis")
    assert msgs[1]["choices"] == ["Bokmål", "Nynorsk", "English"]
    # English from the moment it is chosen
    assert msgs[2]["text"].startswith("I store your number")
    assert msgs[-1]["text"] == "Thank you! Write MENU to see what I can do."


def test_chat_preview_a_flow_and_continue_after_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "chat.db")
    p = veivis("chat", "--db", db, "--flow", "first_meeting_survey", "--no-demo", "--now",
               "2026-11-23 12:00", stdin="ja\n")
    assert p.returncode == 0, p.stderr
    assert "Vil du svare på 8 korte" in p.stdout and "[Ja / Nei]" in p.stdout
    assert "Spurte veilederen" in p.stdout
    p2 = veivis("chat", "--db", db, "--now", "2026-11-23 12:05",
                stdin="ja\n")  # a new process, same database
    assert "Fikk du se planen din" in p2.stdout


def test_chat_as_another_user_without_demo(tmp_path: Path) -> None:
    p = veivis("chat", "--db", str(tmp_path / "x.db"), "--no-demo", "--user", "400 11 222",
               "--json", stdin="meny\n1\n")
    msgs = [json.loads(line) for line in p.stdout.splitlines()]
    assert msgs[0]["to"] == "+4740011222"
    assert "veilederen din" in msgs[1]["text"]  # no veileder known: a friendly stand-in


def test_chat_explains_bad_arguments(tmp_path: Path) -> None:
    p = veivis("chat", "--db", str(tmp_path / "x.db"), "--user", "12ab")
    assert p.returncode == 2 and "not a phone number" in p.stderr
    p = veivis("chat", "--db", str(tmp_path / "x.db"), "--flow", "nope")
    assert p.returncode == 2 and "there is no flow 'nope'" in p.stderr
    assert "Traceback" not in p.stderr


def test_chat_refuses_broken_flows_with_their_lines(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "bad.yaml").write_text("id: x\ntitle: y\nsteps:\n  - id: a\n    sy: z\n")
    p = veivis("chat", "--db", str(tmp_path / "x.db"), "--flows", str(tmp_path / "f"))
    assert p.returncode == 1
    assert "bad.yaml:5: error: unknown key 'sy' in a step (did you mean 'say'?)" in p.stderr
    assert "Traceback" not in p.stderr


def test_flows_test_runs_the_shipped_transcripts() -> None:
    p = veivis("flows", "test")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1].endswith(" passed, 0 failed")


def test_flows_test_reports_a_wrong_transcript_at_its_line(tmp_path: Path) -> None:
    t = tmp_path / "t.yaml"
    t.write_text("flow: menu\nconversation:\n  - bot: Hva vil du gjøre?\n  - user: '1'\n"
                 "  - bot: Neste møte med Ola\n", encoding="utf-8")
    p = veivis("flows", "test", str(t))
    assert p.returncode == 1
    assert f"{t}:5: expected the bot to say 'Neste møte med Ola', but it said" in p.stdout
    assert p.stdout.strip().splitlines()[-1] == "0 passed, 1 failed"
