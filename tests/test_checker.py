"""The flow checker: every kind of mistake is reported at its exact line, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.engine import load

from .conftest import FLOWS, ROOT, english_in

BROKEN = Path(__file__).parent / "broken_flows"
EXPECT = re.compile(r"#\s*expect:\s*(\d+):\s*(feil|advarsel):\s*(.+)$", re.MULTILINE)
SEVERITY = {"feil": "error", "advarsel": "warning"}
LINE_FORMAT = re.compile(r"^[^:\n]+:\d+: (feil|advarsel): \S.*$")


def fixtures() -> list[Path]:
    files = [p for p in BROKEN.rglob("*.yaml")]
    return sorted(p for p in files if EXPECT.search(p.read_text(encoding="utf-8")))


def expectations(path: Path) -> list[tuple[int, str, str]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        m = EXPECT.search(line)
        if m:
            out.append((int(m.group(1)), SEVERITY[m.group(2)], m.group(3).strip()))
    return out


@pytest.mark.parametrize("fixture", fixtures(), ids=lambda p: p.stem)
def test_broken_flow_is_reported_at_its_line(fixture: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    if fixture.parent == BROKEN:
        targets = [fixture]
    elif fixture.parent.name == "language":  # each with the shared word list of the folder
        targets = [fixture, fixture.parent / "ordliste.yaml"]
    else:
        targets = [fixture.parent]
    report = load([t.relative_to(ROOT) for t in targets])
    rel = str(fixture.relative_to(ROOT))
    got = [(d.line, d.severity, d.message) for d in report.diagnostics if d.path == rel]
    for line, severity, text in expectations(fixture):
        assert any(g[0] == line and g[1] == severity and text in g[2] for g in got), (
            f"expected {rel}:{line}: {severity}: ...{text}...; got {got}")


def test_every_kind_of_mistake_has_a_fixture() -> None:
    names = {p.stem for p in fixtures()} | {p.parent.name for p in fixtures()}
    for kind in ("yaml_syntax", "unknown_key", "missing_title", "wrong_type", "duplicate_step",
                 "missing_target", "unreachable", "unknown_variable", "empty_text",
                 "choice_without_options", "duplicate_flow_id"):
        assert kind in names


def test_cli_prints_one_line_per_problem_and_exits_1() -> None:
    folders = [str(BROKEN), *(str(d) for d in sorted(BROKEN.iterdir()) if d.is_dir())]
    proc = subprocess.run([sys.executable, "-m", "bot", "flows", "check", *folders],
                          capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) >= len(fixtures())
    for line in lines:
        assert LINE_FORMAT.match(line), line
    assert re.search(r"^\d+ flyte?r? sjekket: [1-9]\d* feil, \d+ advars", proc.stderr,
                     re.MULTILINE), proc.stderr


def test_cli_exit_0_on_the_shipped_flows() -> None:
    proc = subprocess.run([sys.executable, "-m", "bot", "flows", "check"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_shipped_flows_have_no_errors_and_no_warnings() -> None:
    report = load([FLOWS])
    assert [str(d) for d in report.diagnostics] == []


GARBAGE = [
    b"\xff\xfe\x00garbage", b"id: x\x00\n", b"{{{{", b"- - - -\n  - [", b"&a [*a, *a]",
    b"id: !!python/object:os.system x\ntitle: t\nsteps: []\n", b"a" * 100_000, b"\t\t",
    b"steps:\n" + b"  - " * 5000 + b"x",
]


@pytest.mark.parametrize("content", GARBAGE)
def test_garbage_files_give_diagnostics_not_tracebacks(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "bad.yaml"
    f.write_bytes(content)
    report = load([f])
    assert report.errors, "garbage must be reported as an error"
    for d in report.diagnostics:
        assert LINE_FORMAT.match(str(d)), str(d)


def test_every_message_a_coordinator_reads_is_norwegian(tmp_path: Path) -> None:
    """Every kind of mistake (the fixtures, garbage bytes, a wrong translation) is explained
    in Norwegian: no English from the checker or from the YAML library underneath."""
    for i, content in enumerate(GARBAGE):
        (tmp_path / f"g{i}.yaml").write_bytes(content)
    paths = [BROKEN, *(d for d in sorted(BROKEN.iterdir()) if d.is_dir()), tmp_path]
    report = load(paths)
    assert len(report.diagnostics) > 40
    for d in report.diagnostics:
        assert not english_in(d.message), str(d)
        assert str(d).split(": ")[1] in ("feil", "advarsel"), str(d)


def test_missing_path_is_reported(tmp_path: Path) -> None:
    report = load([tmp_path / "nope.yaml"])
    assert [d.message for d in report.errors] == ["filen eller mappen finnes ikke"]
