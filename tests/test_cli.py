"""The two commands a person runs: `veivis chat` and `veivis flows ...`, as real processes.

These tests bring flows of their own: the shipped flows belong to the coordinators, who may
reword them or add questions at any time.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from bot.engine import load

from .conftest import ROOT, english_in, own_flows, said
from .ownflows import MENU, SURVEY, WELCOME, WELCOME_EN

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def veivis(*args: str, stdin: str = "", cwd: Path = ROOT,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], input=stdin, capture_output=True,
                          text=True, cwd=cwd, env=env or ENV, timeout=120)


def flows_folder(tmp_path: Path, **files: str) -> Path:
    return own_flows(tmp_path / "flows", {f"{k}.yaml": v for k, v in files.items()})


def test_chat_reads_lines_and_prints_json(tmp_path: Path) -> None:
    flows = flows_folder(tmp_path, menu=MENU)
    p = veivis("chat", "--db", str(tmp_path / "chat.db"), "--json", "--flows", str(flows),
               "--flow", "menu", "--now", "2026-11-23 07:30", stdin="1\n")
    assert p.returncode == 0, p.stderr
    msgs = [json.loads(line) for line in p.stdout.splitlines()]
    assert msgs[0] == {"to": "+4791234567", "text": "Velg et tall.",
                       "choices": ["Møtet mitt", "Noe annet"]}
    # the demo data: a first meeting with Kari at NAV Gjøvik on the next working day at 10.00
    assert msgs[1] == {"to": "+4791234567", "text": "Du skal møte Kari Nordmann i morgen, "
                       "tirsdag 24. november kl. 10.00. Husk det."}


def test_first_contact_is_the_welcome_and_a_chosen_language_holds(tmp_path: Path) -> None:
    # a number Veivis does not know yet gets the welcome first
    flows = flows_folder(tmp_path, welcome=WELCOME, menu=MENU)
    (tmp_path / "messages").mkdir()
    (tmp_path / "messages" / "en.yaml").write_text(WELCOME_EN, encoding="utf-8")
    p = veivis("chat", "--db", str(tmp_path / "w.db"), "--flows", str(flows), "--json",
               "--no-demo", "--now", "2026-11-23 12:00", stdin="hei\n3\nja\n")
    msgs = [json.loads(line)["text"] for line in p.stdout.splitlines()]
    # English from the moment it is chosen
    assert msgs == ["Velkommen hit.", "Hvilket språk?", "Is that all right?", "Thank you."]


def test_chat_preview_numbers_the_questions_and_stores_nothing(tmp_path: Path) -> None:
    """A coordinator previews a survey against the real database: the questions are numbered
    by the engine, and nothing (no anonymous answer, no user, no log line) is written."""
    flows = flows_folder(tmp_path, survey=SURVEY)
    db = tmp_path / "real.db"
    p = veivis("chat", "--db", str(db), "--flows", str(flows), "--now", "2026-11-23 12:00",
               stdin="")  # the real database, with its demo data
    assert p.returncode == 0, p.stderr
    before = snapshot(db)
    p = veivis("chat", "--db", str(db), "--flows", str(flows), "--flow", "survey", "--now",
               "2026-11-23 12:00", stdin="ja\nja\n4\nFint møte, takk\n")
    assert p.returncode == 0, p.stderr
    for text in ("Vil du svare på 3 spørsmål?", "1 av 3. Var det bra?", "2 av 3. Hvor bra?",
                 "3 av 3. Noe mer?", "Takk."):
        assert text in p.stdout
    assert "ingenting blir lagret" in p.stderr
    assert snapshot(db) == before
    # a preview without any database file leaves none behind
    p = veivis("chat", "--db", str(tmp_path / "none.db"), "--flows", str(flows), "--flow",
               "survey", stdin="ja\nja\n")
    assert p.returncode == 0 and not (tmp_path / "none.db").exists()


def test_flows_test_never_writes_to_the_database_it_is_pointed_at(tmp_path: Path) -> None:
    flows = flows_folder(tmp_path, survey=SURVEY)
    (flows / "tests").mkdir()
    (flows / "tests" / "t.yaml").write_text(
        "flow: survey\nconversation:\n  - bot: 3 spørsmål\n  - user: ja\n  - bot: 1 av 3\n"
        "  - user: ja\n  - bot: 2 av 3\n  - user: '5'\n  - bot: 3 av 3\n  - user: Bra\n"
        "  - bot: Takk\n", encoding="utf-8")
    db = tmp_path / "real.db"
    veivis("chat", "--db", str(db), "--flows", str(flows), stdin="")
    before = snapshot(db)
    p = veivis("flows", "test", "--flows", str(flows), env={**ENV, "VEIVIS_DB": str(db)})
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1] == "1 bestått, 0 feilet"
    assert snapshot(db) == before


def snapshot(db: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table."""
    con = sqlite3.connect(db)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr)
                for t in tables}
    finally:
        con.close()


def test_chat_as_another_user_without_demo(tmp_path: Path) -> None:
    flows = flows_folder(tmp_path, menu=MENU)
    p = veivis("chat", "--db", str(tmp_path / "x.db"), "--flows", str(flows), "--no-demo",
               "--user", "400 11 222", "--json", stdin="meny\n1\n")
    msgs = [json.loads(line) for line in p.stdout.splitlines()]
    assert msgs[0]["to"] == "+4740011222"
    # no meeting known: never a made-up one, the system text for it instead
    fs = load([flows]).flowset
    assert fs is not None and msgs[1]["text"] == said(fs, "system.no_meeting")


def test_chat_explains_bad_arguments_in_norwegian(tmp_path: Path) -> None:
    p = veivis("chat", "--db", str(tmp_path / "x.db"), "--user", "12ab")
    assert p.returncode == 2 and "«12ab» er ikke et telefonnummer" in p.stderr
    p = veivis("chat", "--db", str(tmp_path / "x.db"), "--flow", "nope")
    assert p.returncode == 2 and "det finnes ingen flyt som heter 'nope'" in p.stderr
    p = veivis("chat", "--db", str(tmp_path / "x.db"), "--now", "i morgen")
    assert p.returncode == 2 and "2026-11-24 17:00" in p.stderr
    for out in (p.stderr,):
        assert "Traceback" not in out and not english_in(out)


def test_chat_refuses_broken_flows_with_their_lines(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "bad.yaml").write_text("id: x\ntitle: y\nsteps:\n  - id: a\n    sy: z\n")
    p = veivis("chat", "--db", str(tmp_path / "x.db"), "--flows", str(tmp_path / "f"))
    assert p.returncode == 1
    assert "bad.yaml:5: feil: ukjent nøkkel 'sy' i et steg (mente du 'say'?)" in p.stderr
    assert "Traceback" not in p.stderr


def test_flows_test_runs_the_shipped_transcripts() -> None:
    """The coordinators' own tests pass (the guide says how to update them after an edit)."""
    p = veivis("flows", "test")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip().splitlines()[-1].endswith(" bestått, 0 feilet")
    assert p.stderr == ""  # a transcript's crisis is a test: no developer log in the output


def test_flows_test_reports_a_wrong_transcript_at_its_line(tmp_path: Path) -> None:
    flows = flows_folder(tmp_path, menu=MENU)
    t = tmp_path / "t.yaml"
    t.write_text("flow: menu\nconversation:\n  - bot: Velg et tall.\n  - user: '1'\n"
                 "  - bot: Du skal møte Ola\n", encoding="utf-8")
    p = veivis("flows", "test", "--flows", str(flows), str(t))
    assert p.returncode == 1
    assert (f"{t}:5: boten skulle si «Du skal møte Ola», men sa «Du skal møte Kari Nordmann "
            "i morgen, tirsdag 24. november kl. 10.00. Husk det.»") in p.stdout
    assert p.stdout.strip().splitlines()[-1] == "0 bestått, 1 feilet"
    t.write_text("flow: menu\nconversation:\n  - bot: Velg et tall.\n  - user: '2'\n",
                 encoding="utf-8")
    p = veivis("flows", "test", "--flows", str(flows), str(t))
    assert f"{t}:4: boten sa også «Ok.», som ikke står i testen" in p.stdout
    assert not english_in(p.stdout)
