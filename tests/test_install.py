"""`pip install` as an operator does it, outside the checkout: the hashed lock installs with
--require-hashes, the wheel carries the default flows and translations, and the installed
`veivis` runs from another folder. Slow (a fresh venv): one test. Skipped only when the
package registry cannot be reached; CI runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
           "Failed to establish a new connection", "No route to host")


def _run(cmd: list[str], cwd: Path, env: dict[str, str], stdin: str = "",
         timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
                          timeout=timeout)


def test_the_wheel_installs_from_the_lock_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VEIVIS_", "TWILIO_", "TELEGRAM_", "PYTHON", "VIRTUAL_ENV"))}
    src = tmp_path / "src"  # only what the package is built from: no .venv, no build/
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    for name in ("bot", "flows", "messages"):
        shutil.copytree(ROOT / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    lock = _run([*pip, "install", "-q", "--require-hashes", "--no-deps", "-r",
                 str(ROOT / "deploy" / "requirements.lock")], tmp_path, env)
    if lock.returncode != 0 and any(s in lock.stdout + lock.stderr for s in OFFLINE):
        pytest.skip("the package registry cannot be reached")
    assert lock.returncode == 0, lock.stderr[-3000:]
    wheel = _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                  "-w", str(tmp_path / "dist"), str(src)], tmp_path, env)
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    (whl,) = (tmp_path / "dist").glob("veivis-*.whl")
    inst = _run([*pip, "install", "-q", "--no-deps", "--no-index", str(whl)], tmp_path, env)
    assert inst.returncode == 0, inst.stderr[-3000:]
    check = _run([*pip, "check"], tmp_path, env)
    assert check.returncode == 0, check.stdout  # the lock holds every dependency
    shutil.rmtree(src)  # nothing may come from the sources now
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    veivis = str(venv / "bin" / "veivis")
    version = _run([veivis, "--version"], elsewhere, env)
    assert version.returncode == 0 and version.stdout.strip().startswith("veivis 0."), version
    flows = _run([veivis, "flows", "check"], elsewhere, env)
    assert flows.returncode == 0, flows.stdout + flows.stderr
    assert "0 feil" in flows.stdout + flows.stderr
    chat = _run([veivis, "chat", "--json", "--db", str(elsewhere / "v.db")], elsewhere, env,
                stdin="hei\n", timeout=120)
    assert chat.returncode == 0, chat.stderr
    replies = [json.loads(line) for line in chat.stdout.splitlines()]
    assert replies and all(r["text"] for r in replies)
    assert sorted(p.name for p in elsewhere.iterdir() if not p.name.startswith("v.db")) == []
