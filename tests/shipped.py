"""Which tests depend on the shipped flows and messages (for the guide test, tests/test_guide.py).

The guide test proves that a coordinator's edits to `flows/` and `messages/` leave the suite
green. The suite's code is the same in the coordinator's clone; only those two folders differ.
So a test that never reads them, in this process or in a process it starts, passes there
exactly as it passed here, and only the others need to run again in the clone.

This module watches, with an audit hook (PEP 578), every file opened and every folder listed
while a test runs (its setup, call and teardown), while a test module is imported, and while
a fixture wider than one test is made (its value is shared by every test that asks for it).
A test that starts a process counts as reading the shipped files unless the process is told
to read flows and messages from elsewhere (VEIVIS_FLOWS and VEIVIS_MESSAGES outside them):
what another process opens is not seen here.

Anything read before the first test, or by the module-level code of anything but a test
module (a helper's, or a bot module's on its first import: the value is shared with every
later importer), is noted in `unattributed` and makes the selection refuse: then every test
runs again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import _pytest
import pluggy
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = (os.path.join(str(ROOT), "flows"), os.path.join(str(ROOT), "messages"))

# the test runner's own frames: what is below them (its entry point's module) does not count
_RUNNER = tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (_pytest, pluggy))
_now: list[str] = []  # what is running: a test's id, "module:<id>" or "fixture:<name>"
readers: set[str] = set()
unattributed: set[str] = set()
ran: set[str] = set()


def _shipped(path: Any) -> bool:
    if path is None or isinstance(path, int):
        return False
    try:
        p = os.fsdecode(os.fspath(path))
    except TypeError:
        return False
    p = os.path.normpath(p if os.path.isabs(p) else os.path.join(os.getcwd(), p))
    return any(p == s or p.startswith(s + os.sep) for s in SHIPPED)


def _elsewhere(env: Any) -> bool:
    """A started process told to read flows and messages outside the shipped folders."""
    if env is None:  # the process inherits this one's environment
        env = dict(os.environ)
    if not isinstance(env, dict):
        return False
    vals = {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
    want = [vals.get("VEIVIS_FLOWS", ""), vals.get("VEIVIS_MESSAGES", "")]
    return all(w and not _shipped(w) for w in want)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event in ("open", "os.listdir", "os.scandir"):
        hit = bool(args) and _shipped(args[0])
    elif event == "subprocess.Popen":
        hit = not _elsewhere(args[3] if len(args) > 3 else None)
    elif event in ("os.posix_spawn", "os.exec"):
        hit = not _elsewhere(args[2] if len(args) > 2 else None)
    elif event == "os.system":
        hit = True
    else:
        return
    if not hit:
        return
    if not _now or _shared(sys._getframe(1)):
        unattributed.add(event)
    else:
        readers.add(_now[-1])


def _shared(frame: Any) -> bool:
    """Read by the module-level code of anything but a test module (a test helper, or one of
    the bot's modules imported for the first time): what it read is then shared by every
    later importer, not only the test running now."""
    while frame is not None and not frame.f_code.co_filename.startswith(_RUNNER):
        if (frame.f_code.co_name == "<module>"
                and not os.path.basename(frame.f_code.co_filename).startswith("test_")):
            return True
        frame = frame.f_back
    return False


sys.addaudithook(_hook)


class _Running:
    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> None:
        _now.append(self.name)

    def __exit__(self, *exc: object) -> None:
        _now.pop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    with _Running(item.nodeid):
        try:
            return (yield)
        finally:
            ran.add(item.nodeid)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    if not isinstance(collector, pytest.Module):
        return (yield)
    with _Running("module:" + collector.nodeid):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[Any]) -> Iterator[None]:
    if fixturedef.scope == "function":
        return (yield)
    with _Running("fixture:" + fixturedef.argname):
        return (yield)


def reads(item: pytest.Item) -> bool:
    """Whether this test read the shipped files (or may have, in a process it started)."""
    module = item.nodeid.split("::", 1)[0]
    fixtures = getattr(item, "fixturenames", ())
    return (item.nodeid in readers or "module:" + module in readers
            or any("fixture:" + f in readers for f in fixtures))


def independent(items: Sequence[pytest.Item]) -> list[str]:
    """The tests that ran in this session and read nothing shipped: the ones a clone that
    differs only in flows/ and messages/ need not run again. Empty if anything shipped was
    read before the first test (the selection cannot be trusted then)."""
    if unattributed:
        return []
    return [i.nodeid for i in items if i.nodeid in ran and not reads(i)]
