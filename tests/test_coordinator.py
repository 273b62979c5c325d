"""What a coordinator does with the flows: numbered questions that stay right when one is
added, translations kept up to date with one command, and code that stays readable."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

from bot.engine import StartFlow, State, UserText, load, step
from bot.engine.i18n import load_all

from .conftest import NOW, ROOT, english_in, own_flows
from .ownflows import SURVEY
from .test_cli import veivis


def walk(flows_dir: Path, answers: list[str], lang: str = "nb",
         messages: Path | None = None) -> list[str]:
    """Start the survey, answer, and return everything the user was told."""
    report = load_all([flows_dir], messages) if messages else load([flows_dir])
    assert not report.errors, [str(d) for d in report.errors]
    fs = report.flowset
    assert fs is not None
    r = step(fs, State(consent=True, lang=lang), StartFlow("survey"), NOW, {})
    said = [x.text for x in r.replies]
    for a in answers:
        r = step(fs, r.state, UserText(a), NOW, {})
        said += [x.text for x in r.replies]
    return said


def test_the_engine_numbers_and_counts_the_questions(tmp_path: Path) -> None:
    flows = own_flows(tmp_path / "flows", {"survey.yaml": SURVEY})
    said = walk(flows, ["ja", "ja", "4", "Bra"])
    assert said == ["Vil du svare på 3 spørsmål?", "1 av 3. Var det bra?", "2 av 3. Hvor bra?",
                    "3 av 3. Noe mer?", "Takk."]
    # a coordinator adds a yes/no question in the middle: every number follows by itself
    (flows / "survey.yaml").write_text(SURVEY.replace(
        "  - id: c\n", "  - id: ny\n    ask: \"{nr} av {antall}. Fikk du hjelp?\"\n"
        "    type: yesno\n    save: hjelp\n  - id: c\n"), encoding="utf-8")
    said = walk(flows, ["ja", "ja", "4", "nei", "Bra"])
    assert said == ["Vil du svare på 4 spørsmål?", "1 av 4. Var det bra?", "2 av 4. Hvor bra?",
                    "3 av 4. Fikk du hjelp?", "4 av 4. Noe mer?", "Takk."]


def test_numbers_in_a_translation_and_in_a_reask(tmp_path: Path) -> None:
    flows = own_flows(tmp_path / "flows", {"survey.yaml": SURVEY.replace(
        "    save: bra\n", "    save: bra\n    hint: Svar ja eller nei på spørsmål {nr}.\n")})
    messages = tmp_path / "messages"
    messages.mkdir()
    (messages / "en.yaml").write_text(
        "survey.a:\n  bokmål: '{nr} av {antall}. Var det bra?'\n"
        "  engelsk: '{nr} of {antall}. Was it good?'\n", encoding="utf-8")
    said = walk(flows, ["ja", "kanskje"], lang="en", messages=messages)
    assert said[1:] == ["1 of 3. Was it good?", "Svar ja eller nei på spørsmål 1."]


# -- translations, as the guide tells a coordinator to keep them ------------------------------

def translations(tmp_path: Path) -> tuple[Path, Path]:
    flows = own_flows(tmp_path / "flows", {"survey.yaml": SURVEY})
    return flows, tmp_path / "messages"


def test_the_translations_command_writes_what_is_missing_with_lines(tmp_path: Path) -> None:
    flows, messages = translations(tmp_path)
    p = veivis("flows", "translations", "--flows", str(flows), "--messages", str(messages))
    assert p.returncode == 0, p.stdout + p.stderr
    nn = (messages / "nn.yaml").read_text(encoding="utf-8")
    assert "survey.intro:\n  bokmål: Vil du svare på {antall} spørsmål?\n  nynorsk:\n" in nn
    # every missing text is listed with the line to write it on, and that line is right
    listed = [line for line in p.stdout.splitlines() if line.startswith(str(messages / "nn"))]
    lines = nn.splitlines()
    assert listed and all(lines[int(x.split(":")[1]) - 1].startswith("  nynorsk:")
                          for x in listed[1:])
    assert not english_in(p.stdout)
    # the coordinator translates one text, and the checker counts one fewer missing
    before = [d for d in load_all([flows], messages).warnings if d.path.endswith("nn.yaml")]
    (messages / "nn.yaml").write_text(nn.replace(
        "  bokmål: Vil du svare på {antall} spørsmål?\n  nynorsk:\n",
        "  bokmål: Vil du svare på {antall} spørsmål?\n  nynorsk: Vil du svare på {antall} "
        "spørsmål?\n"), encoding="utf-8")
    after = [d for d in load_all([flows], messages).warnings if d.path.endswith("nn.yaml")]
    assert len(after) == len(before) - 1


def test_a_reworded_text_keeps_the_old_translation_only_as_a_help(tmp_path: Path) -> None:
    flows, messages = translations(tmp_path)
    messages.mkdir()
    (messages / "nn.yaml").write_text("survey.a:\n  bokmål: '{nr} av {antall}. Var det bra?'\n"
                                      "  nynorsk: '{nr} av {antall}. Var det bra?'\n"
                                      "gone.step:\n  bokmål: Borte\n  nynorsk: Borte\n",
                                      encoding="utf-8")
    (flows / "survey.yaml").write_text(SURVEY.replace("Var det bra?", "Var møtet bra?"),
                                       encoding="utf-8")
    p = veivis("flows", "translations", "--flows", str(flows), "--messages", str(messages))
    assert p.returncode == 0
    assert "1 endret tekst" in p.stdout and "1 tekst fjernet" in p.stdout
    nn = (messages / "nn.yaml").read_text(encoding="utf-8")
    assert ("survey.a:\n  bokmål: '{nr} av {antall}. Var møtet bra?'\n  nynorsk:\n"
            "  gammel: '{nr} av {antall}. Var det bra?'\n") in nn
    assert "gone.step" not in nn
    # until it is translated again, a nynorsk user reads the new bokmål, never the old text
    assert walk(flows, ["ja"], lang="nn", messages=messages)[1] == "1 av 3. Var møtet bra?"
    # run twice: nothing changes
    veivis("flows", "translations", "--flows", str(flows), "--messages", str(messages))
    assert (messages / "nn.yaml").read_text(encoding="utf-8") == nn


def test_a_broken_translations_file_is_never_overwritten(tmp_path: Path) -> None:
    flows, messages = translations(tmp_path)
    messages.mkdir()
    broken = "survey.a:\n  bokmål: Var det bra?\n  nynorsk: Husk: dette\n"
    (messages / "nn.yaml").write_text(broken, encoding="utf-8")
    p = veivis("flows", "translations", "--flows", str(flows), "--messages", str(messages))
    assert p.returncode == 1
    assert f"{messages / 'nn.yaml'}:3: feil: kolon og mellomrom" in p.stderr
    assert "filen ble ikke endret" in p.stderr
    assert (messages / "nn.yaml").read_text(encoding="utf-8") == broken
    assert (messages / "en.yaml").exists()  # the other language is still brought up to date


def test_the_translations_command_refuses_flows_with_errors(tmp_path: Path) -> None:
    flows, messages = translations(tmp_path)
    (flows / "survey.yaml").write_text(SURVEY.replace("type: scale", "type: skala"),
                                       encoding="utf-8")
    p = veivis("flows", "translations", "--flows", str(flows), "--messages", str(messages))
    assert p.returncode == 1 and "ukjent type 'skala'" in p.stderr
    assert not messages.exists()


def test_no_function_in_the_engine_is_over_80_lines() -> None:
    long = []
    for f in sorted((ROOT / "bot" / "engine").glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > 80:
                    long.append(f"{f.name}:{node.lineno} {node.name} ({n} lines)")
    assert long == []


# -- ./veivis: the command the guide tells coordinators to type --------------------------------

STUB_PYTHON = """#!/bin/sh
echo "python3 $*" >> "{log}"
case "$1" in
  -c) case "$2" in *"import bot"*) exit 1 ;; *) exit 0 ;; esac ;;
  -m) if [ "$2" = venv ]; then
        mkdir -p "$3/bin"
        printf '#!/bin/sh\\necho "pip $*" >> "{log}"\\n' > "$3/bin/pip"
        printf '#!/bin/sh\\necho "veivis $*"\\n' > "$3/bin/veivis"
        chmod +x "$3/bin/pip" "$3/bin/veivis"
      fi ;;
esac
"""


def test_the_launcher_installs_once_then_runs_the_command(tmp_path: Path) -> None:
    """On a coordinator's machine python3 has none of Veivis's packages: the first
    `./veivis ...` makes .venv and installs Veivis there, later ones go straight to it."""
    root = tmp_path / "veivis-main"
    root.mkdir()
    shutil.copy(ROOT / "veivis", root / "veivis")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    log = tmp_path / "log"
    (stubs / "python3").write_text(STUB_PYTHON.format(log=log), encoding="utf-8")
    (stubs / "python3").chmod(0o755)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp_path)}
    first = subprocess.run([str(root / "veivis"), "flows", "check"], capture_output=True,
                           text=True, env=env, cwd=root, timeout=30)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "veivis flows check\n"
    assert "Første gang: installerer Veivis" in first.stderr
    assert f"python3 -m venv {root}/.venv" in log.read_text()
    assert f"pip install -q -e {root}" in log.read_text()
    calls = log.read_text()
    again = subprocess.run([str(root / "veivis"), "flows", "test"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, timeout=30)
    assert again.stdout == "veivis flows test\n" and again.stderr == ""
    assert log.read_text() == calls  # no second install
    shutil.rmtree(root / ".venv")
    none = subprocess.run([str(root / "veivis"), "flows", "check"], capture_output=True,
                          text=True, env={**env, "PYTHON": "python3-finnes-ikke"}, timeout=30)
    assert none.returncode == 1 and "Fant ikke python3" in none.stderr
