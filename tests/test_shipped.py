"""The guide test's selection (tests/shipped.py): a test that reads the shipped flows or
messages, lists them, or starts a process that may read them is never left out of the
coordinator's clone; what a helper module reads at import refuses the selection."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import shipped

from .conftest import FLOWS, MESSAGES, ROOT


@pytest.fixture
def watched() -> Iterator[set[str]]:
    """What is marked while the probe runs; the real records are left as they were."""
    readers, unattributed = set(shipped.readers), set(shipped.unattributed)
    shipped.readers.discard("probe")
    try:
        yield shipped.readers
    finally:
        shipped.readers.clear()
        shipped.readers.update(readers)
        shipped.unattributed.clear()
        shipped.unattributed.update(unattributed)


def probe(work: object) -> bool:
    with shipped._Running("probe"):
        assert callable(work)
        work()
    return "probe" in shipped.readers


def test_reading_or_listing_a_shipped_file_marks_the_test(
        watched: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "x.yaml"
    other.write_text("x", encoding="utf-8")
    assert not probe(lambda: other.read_text(encoding="utf-8"))
    assert probe(lambda: (MESSAGES / "nn.yaml").read_bytes())
    watched.discard("probe")
    assert probe(lambda: sorted(FLOWS.iterdir()))
    watched.discard("probe")
    monkeypatch.chdir(ROOT)  # a relative path, from the checkout
    assert probe(lambda: Path("flows/menu.yaml").read_bytes())


def test_a_process_counts_unless_it_is_told_to_read_elsewhere(watched: set[str],
                                                              tmp_path: Path) -> None:
    elsewhere = {"VEIVIS_FLOWS": str(tmp_path / "f"), "VEIVIS_MESSAGES": str(tmp_path / "m"),
                 "PATH": "/usr/bin:/bin"}
    assert not probe(lambda: subprocess.run([sys.executable, "-c", "pass"], env=elsewhere))
    half = {**elsewhere, "VEIVIS_MESSAGES": str(MESSAGES)}
    assert probe(lambda: subprocess.run([sys.executable, "-c", "pass"], env=half))
    watched.discard("probe")
    assert probe(lambda: subprocess.run([sys.executable, "-c", "pass"]))  # inherits ours


def test_a_helper_reading_at_import_refuses_the_selection(watched: set[str]) -> None:
    assert not shipped.unattributed
    helper = compile("open(path).close()", str(ROOT / "tests" / "helper_x.py"), "exec")
    with shipped._Running("probe"):
        exec(helper, {"path": str(FLOWS / "menu.yaml")})
    assert shipped.unattributed
    assert shipped.independent([]) == []


def test_before_the_first_test_only_the_checkouts_own_code_refuses_it(
        watched: set[str]) -> None:
    """Before any test runs, a process the test runner starts (pytest-xdist's worker asks
    `uname`) is not a test's doing; one started by the checkout's code (a conftest) is."""
    start = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'pass'])"
    runner = compile(start, "/usr/lib/python3/some_runner.py", "exec")
    conftest = compile(start, str(ROOT / "tests" / "conftest_x.py"), "exec")
    saved = list(shipped._now)
    shipped._now.clear()  # as before the first test
    try:
        for code in (runner, conftest):  # on a thread: no test's frame below it
            t = threading.Thread(target=exec, args=(code, {}))
            t.start()
            t.join()
            if code is runner:
                assert not shipped.unattributed
        assert shipped.unattributed == {"subprocess.Popen"}
    finally:
        shipped._now[:] = saved


def test_a_symlink_or_an_argument_naming_them_counts(watched: set[str], tmp_path: Path) -> None:
    (tmp_path / "f").symlink_to(FLOWS)
    assert probe(lambda: (tmp_path / "f" / "menu.yaml").read_bytes())
    watched.discard("probe")
    elsewhere = {"VEIVIS_FLOWS": str(tmp_path / "x"), "VEIVIS_MESSAGES": str(tmp_path / "m"),
                 "PATH": "/usr/bin:/bin"}
    for argv in ([sys.executable, "-c", "pass", str(FLOWS)],
                 [sys.executable, "-c", "pass", f"--flows={FLOWS}"],
                 [sys.executable, "-c", "pass", "flows/menu.yaml"]):
        assert probe(lambda a=argv: subprocess.run(a, env=elsewhere, cwd=ROOT)), argv
        watched.discard("probe")


def test_the_session_wide_flows_fixture_counts_for_every_test_using_it(
        flows: object) -> None:
    """Made once, by whichever test asked first: every test that asks for it counts (the
    plugin's fixture hook sees session-wide fixtures too)."""
    assert "fixture:flows" in shipped.readers


def _item(nodeid: str, module: types.ModuleType, fixtures: tuple[str, ...] = ()) -> Any:
    return types.SimpleNamespace(nodeid=nodeid, module=module, fixturenames=fixtures)


def test_a_module_counts_whole_and_so_does_one_importing_it(watched: set[str]) -> None:
    a = types.ModuleType("tests.test_aa")
    b = types.ModuleType("tests.test_bb")
    b.QUESTIONS = a  # type: ignore[attr-defined]  # `from tests import test_aa`
    c = types.ModuleType("tests.test_cc")
    items = [_item("tests/test_aa.py::one", a), _item("tests/test_aa.py::two", a),
             _item("tests/test_bb.py::three", b), _item("tests/test_cc.py::four", c)]
    saved_ran = set(shipped.ran)
    try:
        shipped.ran.update(i.nodeid for i in items)
        watched.add("tests/test_aa.py::one")
        assert shipped.independent(items) == ["tests/test_cc.py::four"]
        watched.add("fixture:probe_fixture")
        items[3].fixturenames = ("probe_fixture",)
        assert shipped.independent(items) == []
    finally:
        shipped.ran.clear()
        shipped.ran.update(saved_ran)


def test_no_test_helper_keeps_values_between_tests() -> None:
    """What a helper caches is not seen by the selection (tests/shipped.py)."""
    for f in sorted((ROOT / "tests").glob("*.py")):
        if f.name == "test_shipped.py":
            continue
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"lru_cache|functools\.cache|@cache\b|@cached_property", text), f


def test_under_xdist_the_other_workers_records_count_too(
        watched: set[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pytest-xdist worker sees only its own tests: the guide test merges what the other
    workers wrote, waits until they are done, and refuses the selection when one of them
    saw a read it could not attribute."""
    monkeypatch.setattr(shipped, "_WORKER", "gw0")
    monkeypatch.setenv(shipped.SHARE, str(tmp_path))
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    theirs = tmp_path / "gw1.jsonl"
    line = {"ran": ["tests/test_x.py::t"], "readers": ["tests/test_x.py::t"],
            "unattributed": [], "done": False}
    theirs.write_text(json.dumps(line) + "\n" + '{"ran": ["half', encoding="utf-8")
    merged, done = shipped._theirs()
    assert merged["readers"] == {"tests/test_x.py::t"} and not done  # half a line: not yet
    with pytest.raises(TimeoutError):
        shipped.wait_for_the_others(timeout=0)  # gw1 has not finished
    theirs.write_text(json.dumps({**line, "done": True}) + "\n", encoding="utf-8")
    shipped.wait_for_the_others(timeout=0)
    assert "tests/test_x.py" in shipped.reading_modules([], shipped._theirs()[0]["readers"])
    with theirs.open("a", encoding="utf-8") as f:
        f.write(json.dumps({**line, "ran": [], "unattributed": ["open"]}) + "\n")
    assert shipped.independent([]) == []
    assert shipped._theirs()[0]["unattributed"] == {"open"}
