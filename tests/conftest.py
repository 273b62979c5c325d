from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.app.config import Config, load_config
from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.engine import load
from bot.engine.model import FlowSet
from bot.service.pipeline import Inbound, Pipeline
from bot.store import Store

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


def config_from(path: Path, text: str) -> Config:
    """A configuration file with this text, loaded; it must have no mistakes."""
    path.write_text(text, encoding="utf-8")
    conf, errors = load_config(path)
    assert errors == [] and conf is not None, errors
    return conf


OLA = "+4740099999"  # another veileder at the demo office (the `d` fixture)


class Desk:
    """The pipeline with the demo user and veiledere; messages in, what each number got."""

    def __init__(self, store: Store, flows: FlowSet, clock: ManualClock) -> None:
        self.store, self.clock, self.flows = store, clock, flows
        self.pipeline = Pipeline(store, flows, clock)
        self.n = 0

    async def send(self, channel: str, address: str, text: str) -> list[str]:
        self.n += 1
        h = await self.pipeline.submit(Inbound(channel, address, text, f"m{self.n}"))
        return [r.text for r in h.replies]

    async def user(self, text: str) -> list[str]:
        return await self.send("console", DEMO_USER_PHONE, text)

    async def veileder(self, phone: str, text: str) -> list[str]:
        return await self.send("sms", phone, text)

    async def to(self, address: str) -> list[str]:
        rows = await self.store.fetchall("SELECT text FROM outbox WHERE address = ? "
                                         "ORDER BY id", (address,))
        return [r[0] for r in rows]


@pytest.fixture
async def d(tmp_path: Path, flows: FlowSet, clock: ManualClock) -> AsyncIterator[Desk]:
    """The demo user (Sara, consented) and veileder (Kari), another veileder (Ola)."""
    store = await Store.open(tmp_path / "v.db")
    await seed_demo(store, NOW)
    office = await store.add_office("NAV Gjøvik")
    await store.add_veileder("Ola Hansen", OLA, office)
    async with store.transaction() as c:
        await c.execute("UPDATE users SET consent = 1")
    desk = Desk(store, flows, clock)
    await desk.pipeline.start()
    yield desk
    await desk.pipeline.stop()
    await store.close()
