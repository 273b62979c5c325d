from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.app.config import Config, load_config
from bot.app.demo import DEMO_USER_PHONE, DEMO_VEILEDER_PHONE, seed_demo
from bot.channels.base import plain_text
from bot.engine import StartFlow, State, UserText, load, step
from bot.engine.answers import YES_VALUE
from bot.engine.model import Flow, FlowSet, Kind, Step
from bot.engine.runtime import Desk as EngineDesk
from bot.engine.runtime import Effect, Reply, Summary, tr
from bot.engine.templates import render
from bot.service.pipeline import Inbound, Pipeline
from bot.store import Store, open_store
from bot.timing.display import meeting_time
from bot.timing.hours import Duty
from tests import pgserver

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
MESSAGES = ROOT / "messages"
NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # Monday 12.00 in Oslo


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[str | None]:
    """A throwaway PostgreSQL cluster for the whole run, or None where PostgreSQL is not
    installed (those tests skip; with VEIVIS_REQUIRE_POSTGRES=1, as in CI, they fail)."""
    if pgserver.SKIP:
        yield None
        return
    try:
        with pgserver.cluster() as base:
            yield base
    except FileNotFoundError:
        if pgserver.REQUIRE:
            raise
        yield None


@pytest.fixture
def pg_url(pg_cluster: str | None) -> str:
    """A new, empty PostgreSQL database."""
    if pg_cluster is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql); CI runs these")
    return pgserver.new_database(pg_cluster)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> str:
    """Where a store-level or pipeline-level test keeps its data: an SQLite file, and a
    new PostgreSQL database (skipped where PostgreSQL is not installed). On PostgreSQL the
    seal key is a file of the test's own, named by VEIVIS_SEAL_KEY_FILE as an operator
    would (so the CLI run as a subprocess finds it too)."""
    if request.param == "sqlite":
        return str(tmp_path / "v.db")
    monkeypatch.setenv("VEIVIS_SEAL_KEY_FILE", str(tmp_path / "seal-key"))
    return str(request.getfixturevalue("pg_url"))


async def open_backend(target: str) -> Store:
    return await open_store(target)


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


# English words that must never reach a coordinator or a veileder (the flow format's own keys,
# such as 'ask', 'type' and 'next', are not among them)
ENGLISH = re.compile(
    r"\b(no|not|the|time|date|write|phone|number|did|understand|with|after|passed|there|is|"
    r"are|meeting|has|must|give|future|already|user|add|them|first|expected|digits|only|"
    r"allowed|which|does|exist|missing|unknown|error|errors|warning|warnings|line|file|"
    r"found|mean|step|flow|empty|twice|used|list|mapping|key|should|cannot|while|parsing|"
    r"checked|passed|failed|translation|stale)\b", re.IGNORECASE)


_QUOTED = re.compile(r"'[^']*'|«[^»]*»|\{[^}]*\}|\b(text|yesno|choice|scale|number)\b")


def english_in(text: str) -> list[str]:
    """English words in a message, leaving out what it quotes ('key', «text», {variable})
    and the names of the question types."""
    return ENGLISH.findall(_QUOTED.sub("", text))


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


async def said_yes(store: Store, phone: str = DEMO_USER_PHONE, channel: str = "console") -> None:
    """This person has answered the welcome with a yes, as the pipeline keeps it: on the user
    and in their conversation (a new person is registered first). Until then, whatever the
    service starts waits for the welcome: tests/test_young_user.py."""
    if not await store.fetchall("SELECT 1 FROM users WHERE phone = ?", (phone,)):
        await store.add_user(phone=phone, channel=channel, first_name=None, last_name=None,
                             veileder_id=None, now=NOW)
    async with store.transaction() as c:  # plain SQL both backends speak
        await c.execute("UPDATE users SET consent = 1 WHERE phone = ?", (phone,))
        async with c.execute("SELECT u.id, u.created_at, v.state FROM users u LEFT JOIN "
                             "conversations v ON v.user_id = u.id WHERE u.phone = ?",
                             (phone,)) as cur:
            uid, created, state = await cur.fetchone()
        await c.execute(
            "INSERT INTO conversations (user_id, state, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET state = excluded.state",
            (uid, json.dumps({**json.loads(state or "{}"), "consent": True}), created))


def yes_to_welcome(flows: FlowSet) -> list[str]:
    """What a person types to get through the shipped welcome with a yes, whatever its
    questions are now: the first option of a choice, «ja» to a yes/no, a word to a text."""
    welcome = flows.get("welcome")
    assert welcome is not None
    return [typed for _, typed in answers(welcome, text="hei")]


def said(flows: FlowSet, ref: str, **values: str) -> str:
    """What the bot says for a text of the flows, in bokmål: `flow.step` or `system.key`,
    filled in with these values (the rest: the defaults a user with nothing known gets).
    Tests compare with this instead of quoting the coordinators' wording."""
    head, _, key = ref.partition(".")
    if head == "system":
        return render(flows.texts[key], values)
    flow = flows.flows[head]
    st = flow.step(key)
    assert st is not None and st.text is not None, ref
    numbers = {"nr": str(st.number or ""), "antall": str(flow.questions)}
    return render(st.text, {**numbers, **values})


def shown(flows: FlowSet, lang: str, flow: str, step: Step) -> str:
    """A step's text in a language as the user sees it, with its question number filled in
    (other variables left as they are)."""
    f = flows.flows[flow]
    text = tr(flows, lang, f"{flow}.{step.id}", step.text or "")
    return render(text, {"nr": str(step.number or ""), "antall": str(f.questions)}) \
        if step.number is not None or "{antall}" in text else text


def answers(flow: Flow, text: str = "Det var fint.", choice: str = "1") -> list[tuple[Step, str]]:
    """A way through a flow: yes to every yes/no question, `choice` to every choice, 4 on a
    scale, `text` where text is asked; each answer with the step it answers. Taken from the
    flow as it is, so a question added or reworded by a coordinator changes nothing here."""
    out: list[tuple[Step, str]] = []
    st: Step | None = flow.first
    seen: set[str] = set()
    while st is not None and st.id not in seen:
        seen.add(st.id)
        target = st.next
        if st.kind is not None:
            value, given = {
                Kind.YESNO: (YES_VALUE, "ja"), Kind.SCALE: ("4", "4"),
                Kind.NUMBER: (str(st.min or 1), str(st.min or 1)), Kind.TEXT: (text, text),
            }.get(st.kind, ("", choice))
            if st.kind is Kind.CHOICE:
                value = st.options[int(choice) - 1].value
            out.append((st, given))
            target = dict(st.routes).get(value, st.next)
        if st.end or st.start_flow:
            break
        st = flow.step(target) if target else flow.following(st.id)
    return out


def own_flows(folder: Path, files: dict[str, str], *, system: bool = True) -> Path:
    """A flows folder of the test's own: these files (name -> YAML), plus the shipped system
    texts (which the bot needs to run; no test asserts their wording)."""
    folder.mkdir(parents=True, exist_ok=True)
    if system:
        shutil.copy(FLOWS / "system.yaml", folder / "system.yaml")
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


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
async def d(backend: str, flows: FlowSet, clock: ManualClock) -> AsyncIterator[Desk]:
    """The demo user (Sara, consented) and veileder (Kari), another veileder (Ola); on
    SQLite and on PostgreSQL."""
    store = await open_backend(backend)
    await seed_demo(store, NOW)
    office = await store.add_office("NAV Gjøvik")
    await store.add_veileder("Ola Hansen", OLA, office)
    await said_yes(store)
    desk = Desk(store, flows, clock)
    await desk.pipeline.start()
    yield desk
    await desk.pipeline.stop()
    await store.close()


# What the demo user's texts are filled in with (the demo meeting: Tuesday 24.11 at 10.00)
DEMO = {"fornavn": "Sara", "veileder": "Kari Nordmann", "kontor": "NAV Gjøvik",
        "møtested": "NAV Gjøvik", "jobbtelefon": "400 12 345"}
DEMO_MEETING = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tuesday 10.00 in Oslo


class Mirror:
    """The pure engine on the same flows, fed the same messages: what the user must get.
    Live tests compare what arrives over SMS or Telegram with it, so they check the whole
    stack (webhook, pipeline, outbox, sender) without quoting the coordinators' wording."""

    def __init__(self, flows: FlowSet, now: datetime = NOW,
                 meeting: datetime = DEMO_MEETING, desk: EngineDesk | None = None,
                 **ctx: str) -> None:
        self.flows = flows
        self.ctx = {**DEMO, "møtetid": meeting_time(meeting, "nb", now), **ctx}
        # the demo user's veileder reads messages now (working hours), unless told otherwise
        self.desk = desk or EngineDesk(Duty(DEMO_VEILEDER_PHONE, open_now=True, read_from=now))
        self.state = State(consent=True)
        self.effects: list[Effect] = []

    def _run(self, event: StartFlow | UserText) -> list[Reply]:
        r = step(self.flows, self.state, event, NOW, self.ctx, self.desk)
        self.state = r.state
        self.effects += r.effects
        return list(r.replies)

    def start(self, flow: str) -> list[Reply]:
        return self._run(StartFlow(flow))

    def texts(self, flow: str) -> list[str]:
        """The texts of a flow's opening (its messages up to its first question)."""
        return [r.text for r in self.start(flow)]

    def say(self, text: str) -> list[Reply]:
        return self._run(UserText(text))

    def summary(self, meeting: str = "tirsdag 24.11 kl. 10.00") -> str:
        """The SMS the veileder gets with the answers of a finished flow."""
        s = next(e for e in reversed(self.effects) if isinstance(e, Summary))
        answers = (f"{s.items[0][1]}." if len(s.items) == 1  # one answer speaks for itself
                   else " ".join(f"{label}: {value}." for label, value in s.items))
        return f"Veivis K1 fra Sara H. – {s.title} ({meeting}): {answers} Svar: K1 + tekst."


def as_sms(replies: list[Reply]) -> list[str]:
    return [plain_text(r.text, r.choices, r.numbered) for r in replies]


GUIDE = "tests/test_guide.py::"
GUIDE_SKIP = "VEIVIS_GUIDE_SKIP"  # in the guide's clone: a file of the tests it need not run


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The guide test last (it runs in the clone what the others showed may depend on the
    shipped flows); in the guide's clone, the tests shown not to are left out."""
    items.sort(key=lambda i: i.nodeid.startswith(GUIDE))  # stable: the rest keep their order
    skip_file = os.environ.get(GUIDE_SKIP)
    if skip_file:
        skip = set(Path(skip_file).read_text(encoding="utf-8").splitlines())
        kept = [i for i in items if i.nodeid not in skip]
        config.hook.pytest_deselected(items=[i for i in items if i.nodeid in skip])
        items[:] = kept
