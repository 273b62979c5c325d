from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.engine import load
from bot.engine.model import FlowSet

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
MESSAGES = ROOT / "messages"
NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # Monday 12.00 in Oslo


@pytest.fixture(scope="session")
def flows() -> FlowSet:
    report = load([FLOWS])
    assert not report.errors, [str(d) for d in report.errors]
    assert report.flowset is not None
    return report.flowset


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def copy_flows(tmp_path: Path, file: str | None = None, old: str = "", new: str = "", *,
               messages: bool = False) -> Path:
    """The shipped flows (and, with `messages`, translations) copied under tmp_path, with
    `old` replaced by `new` in one file; returns the copied flows folder."""
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows)
    if messages:
        shutil.copytree(MESSAGES, tmp_path / "messages")
    if file is not None:
        f = flows / file
        f.write_text(f.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")
    return flows
