"""The crash test's machinery, shared by tests/test_crash.py (short) and bench/chaos.py (long).

`veivis run` runs as a real process against the fake Twilio on loopback. Young people send
signed webhooks (Twilio's retries included: a webhook that got no 200 is sent again with the
same id; a share is sent twice on purpose); a veileder registers meetings by SMS, whose
preparation and reminder go out while everything else happens; young people write to their
veileder (forwards), stop and start, and erase themselves (SLETT). Meanwhile the process is
killed with SIGKILL at random moments, during intake and during sending, and restarted on the
same database, and the fake Twilio fails a share of sends (500, 503, 429 with Retry-After, a
timeout, and accepted-then-hang). At the end, with the outbox drained, the outcome is compared
with a crash-free replay of the same traffic.

Everything random comes from the plan's seed (the traffic, the faults, the kill times), so a
failing run can be replayed; only the operating system's timing is not in the seed.

The bot's clock is shifted (VEIVIS_CLOCK_OFFSET) so the run starts on a working day at
11.59.00 in Oslo: veiledere are at work, and the reminders two hours before 14.00 meetings
fall due a minute into the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bot.phone import pretty_phone
from bot.timing.display import OSLO
from bot.timing.hours import is_workday

from .fakes import ALL_FAULTS, FakeTwilio

SID = "AC" + "0123456789abcdef" * 2
AUTH = "chaos-twilio-auth-token"
PUBLIC = "https://veivis.example.no"
OUR_NUMBER = "+4759440000"
VEILEDERE = [("Kari Nordmann", "+4740012345"), ("Ola Berg", "+4740012346")]
OFFICE = "NAV Gjøvik"
# Oslo wall time at which the run begins. The veileder's MØTE must be handled before 12.00,
# or the reminder two hours before 14.00 is (rightly) not planned: on a loaded machine the
# bot's start took more than 15 seconds, so leave a minute.
START = (11, 59, 0)
MEETING_AT = "14:00"  # today: the reminder two hours before falls due at 12.00

# What the young people write, one message after the other, each once the one before is
# acknowledged, without waiting for the answers. «!» marks a message sent only when
# everything to (or about) the person so far has gone out: the yes to SLETT erases the
# messages still waiting, so without the wait what they get would depend on timing.
# None enters an anonymous flow, so every message they send is in the inbound log.
SCRIPTS: list[list[str]] = [
    ["hei", "1", "ja", "VEILEDER", "Når er neste møte mitt?", "HJELP"],
    ["Hei!", "1", "ja", "STOPP", "hallo?", "START", "HJELP"],
    ["hei", "1", "ja", "SLETT", "!ja", "hei igjen", "1"],
    ["hallo", "2", "ja", "VEILEDER", "Kan vi flytte møtet?", "STOPP"],
    ["heisann", "1", "nei", "HJELP", "SLETT", "nei", "VEILEDER", "Takk for sist"],
    ["god morgen", "3", "ja", "SPRÅK", "1", "HJELP"],
]


@dataclass
class Plan:
    seed: int = 1
    writers: int = 12  # young people (assigned to a veileder) who write
    readers: int = 3  # young people a veileder registers a first meeting for; they only read
    rate: float = 25.0  # SMS_RATE
    faults: float = 0.3  # share of sends (and lookups) the fake Twilio fails
    kinds: tuple[str, ...] = ALL_FAULTS  # how they fail (tests/fakes.py)
    callbacks: bool = True  # the fake sends Twilio's status callbacks (naming the row)
    kills: int = 4  # SIGKILLs, during intake and sending
    kill_gap: float = 1.5  # mean seconds between kills (exponential)
    dups: float = 0.05  # share of webhooks sent twice on purpose
    send_timeout: float = 0.8  # SEND_TIMEOUT; a hang lasts three times that
    deadline: float = 240.0  # seconds before the run gives up


@dataclass
class Outcome:
    texts: dict[str, list[str]]  # phone -> what reached it, in order (the fake's log)
    log: list[dict[str, Any]]  # every message the fake accepted
    rows: list[tuple[Any, ...]]  # outbox at the end: id, status, provider_id, last_error
    users: dict[str, tuple[Any, ...]]  # phone -> stopped, language, consent, state
    inbound: set[str]  # provider ids in the inbound log
    acknowledged: dict[str, set[str]]  # phone -> webhook ids answered with 200
    facts: dict[str, int]  # what the traffic covered (meetings, reminders, forwards, SLETT)
    kills: list[Kill] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)  # the fake's answers to sends, by kind
    lookups: int = 0  # message lists asked of the fake
    starts: int = 0
    seconds: float = 0.0
    stderr: str = ""
    notes: list[str] = field(default_factory=list)


def phone(i: int) -> str:
    return f"+479{7000000 + i:07d}"


def start_time(now: datetime) -> datetime:
    """The next working day (at least tomorrow) at START, in Oslo."""
    d = now.astimezone(OSLO).date() + timedelta(days=1)
    while not is_workday(d):
        d += timedelta(days=1)
    return datetime(d.year, d.month, d.day, *START, tzinfo=OSLO)


SEED = """
import asyncio, sys
from datetime import UTC, datetime
from bot.store import Store
async def main(db, writers, veiledere, office):
    store = await Store.open(db)
    o = await store.add_office(office)
    ids = [await store.add_veileder(n, p, o) for n, p in veiledere]
    for i, p in enumerate(writers):
        await store.add_user(phone=p, channel="sms", first_name=f"Ung{i}", last_name="Test",
                             veileder_id=ids[i % len(ids)], now=datetime.now(UTC))
    await store.close()
asyncio.run(main(sys.argv[1], sys.argv[2].split(","), [v.split("=") for v in
                 sys.argv[3].split(",")], sys.argv[4]))
"""


async def seed(db: Path, plan: Plan, env: dict[str, str]) -> None:
    """Offices, veiledere and the young people who write (each assigned to a veileder),
    written by the Veivis under test (so its own migrations make the database)."""
    writers = ",".join(phone(i) for i in range(plan.writers))
    veiledere = ",".join(f"{n}={p}" for n, p in VEILEDERE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SEED, str(db), writers, veiledere, OFFICE, env=env,
        stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise AssertionError("seeding failed: " + err.decode(errors="replace"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bot:
    """`veivis run` as a process: started, SIGKILLed, restarted, stopped."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.url = f"http://127.0.0.1:{env['VEIVIS_PORT']}"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0
        self.up = asyncio.Event()

    async def start(self) -> None:
        self.starts += 1
        err = open(self.workdir / f"stderr-{self.starts}.txt", "wb")  # noqa: SIM115
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", env=self.env, cwd=str(self.workdir),
            stdout=asyncio.subprocess.DEVNULL, stderr=err)
        err.close()
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as s:
            while True:
                if self.proc.returncode is not None:
                    raise AssertionError("veivis run exited: " + self.stderr())
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with s.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise AssertionError("veivis run did not start")
                await asyncio.sleep(0.02)
        self.up.set()

    async def kill(self) -> None:
        assert self.proc is not None
        self.up.clear()
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1

    async def stop(self) -> int:
        assert self.proc is not None
        self.up.clear()
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 60)

    def stderr(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.workdir.glob("stderr-*.txt")))


class Phones:
    """Young people and veiledere texting the bot through the fake Twilio's webhooks."""

    def __init__(self, fake: FakeTwilio, bot: Bot, rng: random.Random, dups: float,
                 db: Path) -> None:
        self.fake, self.bot, self.rng, self.dups, self.db = fake, bot, rng, dups, db
        self.acknowledged: dict[str, set[str]] = {}
        self.count = 0  # webhooks acknowledged so far
        self.counted = asyncio.Event()  # set at each acknowledgement
        self._ids = 0

    async def text(self, sender: str, body: str) -> None:
        """One SMS, delivered as Twilio does: sent again (same id) until answered with 200."""
        self._ids += 1
        sid = f"SM{self.rng.getrandbits(64):016x}{self._ids:016x}"
        times = 2 if self.rng.random() < self.dups else 1
        for _ in range(times):
            while True:
                await self.bot.up.wait()
                try:
                    status, _ = await self.fake.sms(self.bot.url, PUBLIC, sender, body, sid=sid)
                except (TimeoutError, aiohttp.ClientError, OSError):
                    status = 0
                if status == 200:
                    break
                await asyncio.sleep(0.05)
        self.acknowledged.setdefault(sender, set()).add(sid)
        self.count += 1
        self.counted.set()

    async def reached(self, n: int) -> None:
        while self.count < n:
            self.counted.clear()
            await self.counted.wait()

    async def script(self, sender: str, texts: list[str]) -> None:
        for body in texts:
            await asyncio.sleep(self.rng.uniform(0, 0.3))
            if body.startswith("!"):
                body = body[1:]
                while _waiting_for(self.db, sender):
                    await asyncio.sleep(0.1)
            await self.text(sender, body)


def _waiting_for(db: Path, who: str) -> int:
    """Messages to this person, or about them, not yet out."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(con.execute(
            "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending', 'unsure') "
            "AND (address = ? OR about_user IN (SELECT id FROM users WHERE phone = ?))",
            (who, who)).fetchone()[0])
    finally:
        con.close()


def _unsettled(db: Path, now: datetime) -> int:
    """Messages still to go out, and scheduled flows due but not handled."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        out = con.execute("SELECT COUNT(*) FROM outbox WHERE status IN ('pending', "
                          "'sending', 'unsure')").fetchone()[0]
        due = con.execute("SELECT COUNT(*) FROM scheduled WHERE status = 'pending' "
                          "AND due_at <= ?", (now.isoformat(timespec="seconds"),)).fetchone()[0]
        return int(out) + int(due)
    finally:
        con.close()


async def settled(db: Path, clock: Any, deadline: float) -> None:
    """Wait until the reminders are due, the outbox is drained and everything due has been
    handled, twice in a row a moment apart (a callback or a tick may still be on its way)."""
    noon = clock().astimezone(OSLO).replace(hour=12, minute=0, second=1)
    calm = 0
    while calm < 2 or clock() < noon:
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled in time: {_unsettled(db, clock())} left")
        calm = calm + 1 if _unsettled(db, clock()) == 0 else 0
        await asyncio.sleep(0.25)


def _env(plan: Plan, workdir: Path, fake: FakeTwilio, offset: float,
         code: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TWILIO_", "TELEGRAM_", "VEIVIS_", "SMS_", "DIGEST_"))}
    env.update({
        "VEIVIS_DB": str(workdir / "veivis.db"), "VEIVIS_PORT": str(_free_port()),
        "VEIVIS_PUBLIC_URL": PUBLIC, "VEIVIS_CLOCK_OFFSET": f"{offset:.3f}",
        "VEIVIS_SHUTDOWN_SECONDS": "5", "TWILIO_ACCOUNT_SID": SID, "TWILIO_AUTH_TOKEN": AUTH,
        "TWILIO_FROM": OUR_NUMBER, "TWILIO_API_URL": fake.url, "SMS_RATE": f"{plan.rate:g}",
        "SEND_TIMEOUT": f"{plan.send_timeout:g}", "SMS_CHECK_SECONDS": "0.5",
        "OUTBOX_MAX_TRIES": "12", "VEIVIS_FLOWS": str(Path(__file__).parent.parent / "flows"),
    })
    if code is not None:  # another checkout's Veivis (bench/chaos.py --code)
        env["PYTHONPATH"] = str(code)
    return env


@dataclass
class Kill:
    intake: bool  # young people were still writing
    unsent: int  # messages waiting or in flight at that moment


async def killer(bot: Bot, phones: Phones, plan: Plan, rng: random.Random, db: Path,
                 intake: asyncio.Event, kills: list[Kill]) -> None:
    """SIGKILL at random moments, restarting at once on the same database. The first comes
    after a random number of the young people's messages were acknowledged (so always during
    intake), the last just after intake ended (while the replies are being sent), the others
    after random pauses."""
    total = sum(len(SCRIPTS[i % len(SCRIPTS)]) for i in range(plan.writers))
    for k in range(plan.kills):
        if k == 0:
            await phones.reached(plan.readers + rng.randint(1, max(1, total // 2)))
        elif k == plan.kills - 1:
            await intake.wait()
            await asyncio.sleep(rng.uniform(0, 0.3))
        else:
            await asyncio.sleep(rng.expovariate(1 / plan.kill_gap))
        kills.append(Kill(not intake.is_set(), _unsettled(db, datetime.now(UTC))))
        await bot.kill()
        await bot.start()


async def _writers(phones: Phones, plan: Plan, intake: asyncio.Event) -> None:
    await asyncio.gather(*(phones.script(phone(i), SCRIPTS[i % len(SCRIPTS)])
                           for i in range(plan.writers)))
    intake.set()


async def run(plan: Plan, workdir: Path, *, chaos: bool = True,
              code: Path | None = None) -> Outcome:
    """The whole run; with `chaos` False: no faults, no kills, no deliberate duplicates (the
    crash-free replay of the same traffic). `code`: run the Veivis in that checkout."""
    t0 = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "veivis.db"
    offset = (start_time(datetime.now(UTC)) - datetime.now(UTC)).total_seconds()
    async with FakeTwilio(SID, AUTH, log=workdir / "twilio.jsonl", seed=plan.seed) as fake:
        # Twilio stamps its messages with the real time; the bot's clock runs `offset` ahead
        # (its lookups compare in Twilio's time)
        bot_clock = lambda: datetime.now(UTC) + timedelta(seconds=offset)  # noqa: E731
        fake.callbacks_to, fake.public_url = None, PUBLIC
        fake.hang_seconds = plan.send_timeout * 3
        if chaos:
            fake.fail.rate, fake.fail.kinds, fake.fail_lists = plan.faults, plan.kinds, True
        bot = Bot(workdir, _env(plan, workdir, fake, offset, code))
        await seed(db, plan, bot.env)
        fake.callbacks_to = bot.url if plan.callbacks else None
        phones = Phones(fake, bot, random.Random(plan.seed + 1), plan.dups if chaos else 0.0,
                        db)
        await bot.start()
        await meetings(phones, plan, bot_clock())
        intake, kills = asyncio.Event(), []
        work = [_writers(phones, plan, intake)]
        if chaos:
            work.append(killer(bot, phones, plan, random.Random(plan.seed + 2), db, intake,
                               kills))
        await asyncio.wait_for(asyncio.gather(*work), plan.deadline)
        await settled(db, bot_clock, t0 + plan.deadline)
        exit_code = await bot.stop()
        out = collect(db, workdir, phones.acknowledged)
        out.kills, out.starts, out.stderr = kills, bot.starts, bot.stderr()
        out.faults, out.lookups = dict(fake.fail.counts), fake.lists
        out.seconds = time.monotonic() - t0
        if exit_code != 0:
            out.notes.append(f"veivis run exited with {exit_code} on SIGTERM")
    return out


async def meetings(phones: Phones, plan: Plan, now: datetime) -> None:
    """Each reader's veileder registers a first meeting at 14.00 today by SMS, before
    noon, so its reminder falls due during the run."""
    day = now.astimezone(OSLO).date()
    for i in range(plan.readers):
        who = phone(1000 + i)
        _, work_phone = VEILEDERE[i % len(VEILEDERE)]
        await phones.text(work_phone, f"MØTE {pretty_phone(who)} {day.day}.{day.month} "
                                      f"{MEETING_AT} {OFFICE}")


def collect(db: Path, workdir: Path, acknowledged: dict[str, set[str]]) -> Outcome:
    log = [json.loads(line) for line in
           (workdir / "twilio.jsonl").read_text(encoding="utf-8").splitlines() if line]
    texts: dict[str, list[str]] = {}
    for m in log:
        texts.setdefault(m["to"], []).append(m["body"])
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id, status, provider_id, last_error FROM outbox "
                           "ORDER BY id").fetchall()
        users = {str(p): (s, lang, c, _state(st)) for p, s, lang, c, st in con.execute(
            "SELECT u.phone, u.stopped, u.language, u.consent, c.state FROM users u "
            "LEFT JOIN conversations c ON c.user_id = u.id")}
        inbound = {str(r[0]) for r in con.execute("SELECT provider_id FROM inbound")}
        facts = {name: int(con.execute(sql).fetchone()[0]) for name, sql in FACTS.items()}
    finally:
        con.close()
    return Outcome(texts, log, rows, users, inbound, acknowledged, facts)


FACTS = {
    "meetings": "SELECT COUNT(*) FROM meetings",
    "reminders": "SELECT COUNT(*) FROM scheduled WHERE kind = 'reminder' AND status = 'done'",
    "forwards": "SELECT COUNT(*) FROM thread_events WHERE direction = 'in'",
    "erased": "SELECT COUNT(*) FROM outbox WHERE forget = 1",
}


def _state(raw: str | None) -> str | None:
    """A conversation's state without its timestamps (a replay runs at another moment)."""
    if raw is None:
        return None
    d = json.loads(raw)
    d.pop("started_at", None)
    return json.dumps(d, sort_keys=True)


# -- judging ---------------------------------------------------------------------------------

_CODE = re.compile(r"\bK\d+\b")
WORK_PHONES = {p for _, p in VEILEDERE}


def normal(phone_: str, texts: list[str]) -> list[str]:
    """What a phone got, comparable across runs: a veileder's conversation codes (K7) are
    numbered in the order young people happened to write, and the order of messages from
    different young people is not fixed, so a work phone's messages are compared as a set."""
    if phone_ in WORK_PHONES:
        return sorted(_CODE.sub("K#", t) for t in texts)
    return texts


@dataclass
class Verdict:
    lost: int = 0  # acknowledged webhooks not processed, or messages the replay has and we lack
    unsent: int = 0  # rows failed or never sent, whose message the fake never accepted
    dup: int = 0  # messages the fake accepted beyond what the replay sent
    failed_without_reason: int = 0
    different: list[str] = field(default_factory=list)  # phones whose story differs

    @property
    def clean(self) -> bool:
        return not (self.lost or self.unsent or self.dup or self.failed_without_reason
                    or self.different)

    def line(self) -> str:
        return f"lost={self.lost} unsent={self.unsent} dup={self.dup}"


def judge(out: Outcome, replay: Outcome, erasers: set[str]) -> Verdict:
    v = Verdict()
    for who in sorted(set(out.texts) | set(replay.texts)):
        got = Counter(normal(who, out.texts.get(who, [])))
        want = Counter(normal(who, replay.texts.get(who, [])))
        v.dup += sum((got - want).values())
        v.lost += sum((want - got).values())
        if normal(who, out.texts.get(who, [])) != normal(who, replay.texts.get(who, [])):
            v.different.append(who)
    accepted = {m["sid"] for m in out.log}
    for _rid, status, pid, error in out.rows:
        if status != "sent":
            v.unsent += 1  # failed, or still waiting at the end
        elif pid not in accepted:
            v.lost += 1  # recorded as sent, but Twilio never had it
        if status == "failed" and not error:
            v.failed_without_reason += 1
    v.lost = max(0, v.lost - v.unsent)  # a row never sent is counted once, as unsent
    for who, sids in out.acknowledged.items():
        if who not in erasers:  # SLETT keeps only a keyed hash of the ids
            v.lost += len(sids - out.inbound)
    for who in sorted(set(out.users) | set(replay.users)):
        if out.users.get(who) != replay.users.get(who) and who not in v.different:
            v.different.append(who)
    return v


def erasers(plan: Plan) -> set[str]:
    return {phone(i) for i in range(plan.writers) if "SLETT" in SCRIPTS[i % len(SCRIPTS)]}


async def chaos_and_replay(plan: Plan, workdir: Path, code: Path | None = None
                           ) -> tuple[Outcome, Outcome, Verdict]:
    """The run under faults and kills, and its crash-free replay, side by side. `code`: the
    checkout whose Veivis runs under chaos (the replay always runs this one)."""
    out, replay = await asyncio.gather(run(plan, workdir / "chaos", code=code),
                                       run(plan, workdir / "replay", chaos=False))
    return out, replay, judge(out, replay, erasers(plan))

