"""Which tests depend on the shipped flows and messages (for the guide test, tests/test_guide.py).

The guide test proves that a coordinator's edits to `flows/` and `messages/` leave the suite
green. The suite's code is the same in the coordinator's clone; only those two folders differ.
So a test module none of whose tests ever reads them, in this process or in a process it
starts, passes there exactly as it passed here, and only the others need to run again.

A pytest plugin (`-p tests.shipped` in pyproject.toml, so its hooks see every fixture,
session-wide ones included) with an audit hook (PEP 578) notes what reads them:
- a file opened or a folder listed under them (symbolic links followed), while a test runs
  (setup, call, teardown), while a test module is imported, or while a fixture wider than one
  test is made (then every test using that fixture counts);
- a process started (or a fork) while a test runs, unless the process is told to read flows
  and messages elsewhere (VEIVIS_FLOWS and VEIVIS_MESSAGES outside them) and no argument
  names them or the checkout: what another process opens is not seen here.
The unit is the test module: one reading test makes its whole module run again (a value one
test read may be kept for the next), and so does importing a test module that reads.

Under pytest-xdist each worker process sees only the tests it ran: every worker appends what it
saw to a file in a folder the controller made (TESTS_SHIPPED_SHARE, inherited by them),
and the guide test, the last test of the run, waits for the other workers to finish and
merges their files (`wait_for_the_others`, `independent`).

The selection refuses (every test runs again) when the checkout's code read anything before
the first test (the runner's own processes, such as pytest-xdist asking `uname`, do not count),
or by the module-level code of anything but a test module (a helper's, or a bot module's on
its first import: the value would be shared with every later importer). Values a test helper
keeps between tests (a cache in tests/*.py) would not be seen: tests/test_shipped.py checks
that there is none.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import _pytest
import pluggy
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = (os.path.join(str(ROOT), "flows"), os.path.join(str(ROOT), "messages"))

# the test runner's own frames: what is below them (its entry point's module) does not count
_CHECKOUT = tuple(os.path.join(str(ROOT), d) + os.sep for d in ("bot", "tests", "bench"))
_RUNNER = tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (_pytest, pluggy))
_now: list[str] = []  # what is running: a test's id, "module:<id>" or "fixture:<name>"
readers: set[str] = set()
unattributed: set[str] = set()
ran: set[str] = set()


def _path(path: Any) -> str | None:
    if path is None or isinstance(path, int):
        return None
    try:
        p = os.fsdecode(os.fspath(path))
    except TypeError:
        return None
    return os.path.realpath(p if os.path.isabs(p) else os.path.join(os.getcwd(), p))


def _shipped(path: Any) -> bool:
    p = _path(path)
    return p is not None and any(p == s or p.startswith(s + os.sep) for s in SHIPPED)


def _names_them(arg: Any, cwd: Any = None) -> bool:
    """An argument of a started process that names the shipped folders (or the checkout,
    where they are by default), also relative to the process's folder or inside an option
    such as --flows=..."""
    if not isinstance(arg, str | bytes | os.PathLike):
        return False
    text = os.fsdecode(os.fspath(arg))
    base = _path(cwd) if cwd is not None else os.getcwd()
    for part in {text, text.split("=", 1)[-1], text.split(":", 1)[-1]}:
        if not part:
            continue
        p = _path(part if os.path.isabs(part) else os.path.join(base or "", part))
        if p is not None and (_shipped(p) or p == str(ROOT)):
            return True
    return False


def _elsewhere(env: Any, argv: Any, cwd: Any = None) -> bool:
    """A started process told to read flows and messages outside the shipped folders, with
    no argument naming them."""
    if env is None:  # the process inherits this one's environment
        env = dict(os.environ)
    if not isinstance(env, dict):
        return False
    vals = {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
    want = [vals.get("VEIVIS_FLOWS", ""), vals.get("VEIVIS_MESSAGES", "")]
    if isinstance(argv, str | bytes):
        argv = os.fsdecode(argv).split()
    args = list(argv) if isinstance(argv, list | tuple) else [argv]
    return (all(w and not _shipped(w) for w in want)
            and not any(_names_them(a, cwd) for a in args))


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event in ("open", "os.listdir", "os.scandir"):
        hit = bool(args) and _shipped(args[0])
    elif event == "subprocess.Popen":  # executable, args, cwd, env
        hit = not _elsewhere(args[3], args[1], args[2])
    elif event in ("os.posix_spawn", "os.exec"):  # path, argv, env
        hit = not _elsewhere(args[2], args[1])
    elif event in ("os.system", "os.fork"):
        hit = True
    else:
        return
    if not hit:
        return
    frame = sys._getframe(1)
    if not _now and not _ours(frame):
        return  # the test runner's own doing before any test (xdist's worker asks `uname`)
    if not _now or _shared(frame):
        unattributed.add(event)
    else:
        readers.add(_now[-1])


def _ours(frame: Any) -> bool:
    """Whether code of the checkout (the bot, its tests, benchmarks; not a virtual environment
    inside it) is on the stack."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_CHECKOUT):
            return True
        frame = frame.f_back
    return False


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


SHARE = "TESTS_SHIPPED_SHARE"  # where the workers write (no VEIVIS_ name: veivis warns of those)
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_written: dict[str, set[str]] = {"ran": set(), "readers": set(), "unattributed": set()}
_made = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # a new folder for each run (a clone's run too)
        os.environ[SHARE] = tempfile.mkdtemp(prefix="veivis-shipped-")  # workers inherit it
        config.stash[_made] = os.environ[SHARE]


def pytest_unconfigure(config: pytest.Config) -> None:
    made = config.stash.get(_made, None)
    if made is not None:
        shutil.rmtree(made, ignore_errors=True)
        os.environ.pop(SHARE, None)


def _save(done: bool = False) -> None:
    """A worker appends what is new since last time (one JSON line) to its file."""
    share = os.environ.get(SHARE)
    if not _WORKER or not share:
        return
    now = {"ran": ran, "readers": readers, "unattributed": unattributed}
    line: dict[str, Any] = {k: sorted(v - _written[k]) for k, v in now.items()}
    for k, v in now.items():
        _written[k] |= v
    line["done"] = done
    with open(os.path.join(share, _WORKER + ".jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


def _theirs() -> tuple[dict[str, set[str]], set[str]]:
    """What the other workers wrote so far, and which of them are done."""
    merged: dict[str, set[str]] = {"ran": set(), "readers": set(), "unattributed": set()}
    done: set[str] = set()
    share = os.environ.get(SHARE)
    if not _WORKER or not share or not os.path.isdir(share):
        return merged, done
    for name in os.listdir(share):
        worker = name.removesuffix(".jsonl")
        if worker == _WORKER or not name.endswith(".jsonl"):
            continue
        with open(os.path.join(share, name), encoding="utf-8") as f:
            for raw in f:
                if not raw.endswith("\n"):
                    break  # a line still being written
                line = json.loads(raw)
                for k in merged:
                    merged[k].update(line[k])
                if line["done"]:
                    done.add(worker)
    return merged, done


def wait_for_the_others(timeout: float = 1500) -> None:
    """Under xdist: until every other worker has finished its tests (the guide test is the
    last unit of work, so they get no more). A worker that never finishes (it crashed) fails
    the guide test at the timeout instead of hanging the run."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if not _WORKER or count <= 1:
        return
    end = time.monotonic() + timeout
    while len(_theirs()[1]) < count - 1:
        if time.monotonic() > end:
            raise TimeoutError(f"the other test workers did not finish in {timeout:.0f} s")
        time.sleep(0.2)  # a barrier between processes, not a timing assumption


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    with _Running(item.nodeid):
        try:
            return (yield)
        finally:
            ran.add(item.nodeid)
            _save()


def pytest_sessionfinish(session: pytest.Session) -> None:
    _save(done=True)


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


def _module_of(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _imports(item: pytest.Item) -> set[str]:
    """The other test modules this test's module takes names from."""
    module = getattr(item, "module", None)
    if module is None:
        return set()
    out = set()
    for value in vars(module).values():
        name = value.__name__ if isinstance(value, types.ModuleType) else \
            getattr(value, "__module__", None)
        if isinstance(name, str) and name.startswith("tests.test_") and name != module.__name__:
            out.add("tests/" + name.removeprefix("tests.") + ".py")
    return out


def reading_modules(items: Sequence[pytest.Item],
                    seen: set[str] | None = None) -> set[str]:
    """The test modules that read the shipped files (or may have): `seen` is what read them
    (this process's `readers` unless given)."""
    seen = readers if seen is None else seen
    fixtures = {r.removeprefix("fixture:") for r in seen if r.startswith("fixture:")}
    reading = {r.removeprefix("module:").split("::", 1)[0] for r in seen
               if not r.startswith("fixture:")}
    reading |= {_module_of(i) for i in items if fixtures & set(getattr(i, "fixturenames", ()))}
    edges = {(_module_of(i), dep) for i in items for dep in _imports(i)}
    while True:  # a module that imports a reading test module reads too
        more = {m for m, dep in edges if dep in reading} - reading
        if not more:
            return reading
        reading |= more


def independent(items: Sequence[pytest.Item]) -> list[str]:
    """The tests that ran in this session, in modules that read nothing shipped: the ones a
    clone that differs only in flows/ and messages/ need not run again. Empty if anything
    shipped was read where it cannot be told who used it (the selection is refused then)."""
    theirs, _ = _theirs()  # under xdist: what the other workers saw too
    if unattributed or theirs["unattributed"]:
        return []
    reading = reading_modules(items, readers | theirs["readers"])
    done = ran | theirs["ran"]
    return [i.nodeid for i in items if i.nodeid in done and _module_of(i) not in reading]
