"""The guide test's selection (tests/shipped.py): a test that reads the shipped flows or
messages, lists them, or starts a process that may read them is never left out of the
coordinator's clone; what a helper module reads at import refuses the selection."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
