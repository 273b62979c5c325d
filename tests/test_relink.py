"""Attacks on «anonymous means anonymous», made the way an outsider with the files would.

The threat model (README, «Anonymous answers»): someone holds any of (a) a copy of the
database files taken at any moment, (b) two such copies taken at different moments, (c) every
report, (d) the logs, (e) the configuration (who works where). They must not tell which
person gave an anonymous answer with better odds than 1 in 5.

Each attack here is code that really tries. Where it is useful, the same attack is run
against the old design (every answer written at once, in arrival order, next to a message-log
row with the user and the time: `old_design`) to show that it would have succeeded.

Every attack that means something on PostgreSQL runs there too (the `backend` fixture). There
the attacker's copy of the files is the cluster's data directory: the database's files under
base/ (read byte for byte after a CHECKPOINT) and the WAL segments in pg_wal/; a backup is
`pg_dump`, as deploy/README.md tells operators to take. What PostgreSQL keeps that SQLite
does not (the WAL, arrival order) is asserted as deploy/README.md states it.

The tests use an anonymous flow of their own (coordinators own the shipped ones).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import sqlite3
import stat
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app.settings import load_flows
from bot.engine.model import FlowSet
from bot.reports.digest import make_report
from bot.reports.formats import markdown
from bot.reports.report import PeriodError, protect
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.store import Store, open_store
from bot.store.anonymous import REGION, AnonymousRow, write_anonymous

from . import pgserver
from .conftest import NOW, ROOT, ManualClock, copy_flows, said_yes

SURVEY = """\
id: first_meeting_survey
title: Test av anonyme svar
anonymous: true
steps:
  - id: q1
    ask: Fikk du et nummer du kan ringe?
    type: yesno
    save: nummer
  - id: q2
    ask: Skriv hva du synes om møtet.
    type: text
    save: tekst
  - id: takk
    say: Takk for svaret.
"""


def marker(n: int) -> str:
    """A comment no one else writes, so the attacker can find it in raw bytes."""
    return f"kommentar fra person {n:02d} xq{n:02d}xq"


@dataclass
class Person:
    n: int
    phone: str
    name: str
    office: str


def is_pg(target: str) -> bool:
    return target.startswith("postgresql://")


def another(target: str, folder: Path) -> str:
    """A second, empty database on the same backend."""
    if is_pg(target):
        return pgserver.new_database(target.rsplit("/", 1)[0])
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / "v.db")


def wal_start(target: str) -> int:
    """Where the WAL stands now (PostgreSQL): what is written after it is the test's."""
    return pgserver.wal_position(target) if is_pg(target) else 0


def files(target: str, wal_from: int = 0) -> bytes:
    """The raw bytes an attacker with a copy of the database files reads: SQLite's file and
    WAL; on PostgreSQL the database's files under base/ and the WAL written since
    `wal_from`. Never the seal key."""
    if is_pg(target):
        return pgserver.database_files(target) + b"".join(
            r for _, r in pgserver.wal_since(target, wal_from))
    return b"".join(f.read_bytes() for f in Path(target).parent.glob(Path(target).name + "*")
                    if not f.name.endswith("seal-key"))


@asynccontextmanager
async def world(tmp_path: Path, offices: list[str], target: str | None = None) -> AsyncIterator[
        tuple[Store, Pipeline, list[Person], ManualClock]]:
    """People with veiledere at these offices (one person per entry), on a file database
    (`target`: the backend fixture's; by default an SQLite file in tmp_path)."""
    flows_dir = copy_flows(tmp_path)
    # a survey of the test's own, in place of the shipped one (the report reads it)
    (flows_dir / "first_meeting_survey.yaml").write_text(SURVEY, encoding="utf-8")
    flows: FlowSet = load_flows(flows_dir)
    store = await open_store(target or str(tmp_path / "v.db"))
    ids: dict[str, int] = {}
    people = []
    for n, office in enumerate(offices):
        if office not in ids:
            oid = await store.add_office(office)
            ids[office] = await store.add_veileder(f"Veileder {office}",
                                                   f"+474000{len(ids):04d}", oid)
        p = Person(n, f"+479100{n:04d}", f"Navn{n:02d}", office)
        await store.add_user(phone=p.phone, channel="sms", first_name=p.name,
                             last_name="Etternavn", veileder_id=ids[office], now=NOW)
        await said_yes(store, p.phone)  # the welcome is answered
        people.append(p)
    clock = ManualClock(NOW)
    pipeline = Pipeline(store, flows, clock)
    await pipeline.start()
    try:
        yield store, pipeline, people, clock
    finally:
        await pipeline.stop()
        await store.close()


async def answer(p: Pipeline, person: Person, clock: ManualClock, yes: bool = True) -> None:
    clock.now += timedelta(minutes=7)
    await p.submit(FlowRequest("sms", person.phone, "first_meeting_survey"))
    await p.submit(Inbound("sms", person.phone, "ja" if yes else "nei", secrets.token_hex(8)))
    clock.now += timedelta(seconds=40)
    await p.submit(Inbound("sms", person.phone, marker(person.n), secrets.token_hex(8)))


def page_order_attack(raw: bytes, people: list[Person], answered: list[int]) -> int:
    """Cells are written into a page from its end towards its start, so within a page a
    later insert lies at a lower offset. Sort the comments by offset, highest first, and
    pair them with the people in the order they answered (which the attacker reads from the
    message log or the outbox). Returns how many pairs are right."""
    found = sorted(((raw.find(marker(p.n).encode()), p.n) for p in people
                    if marker(p.n).encode() in raw), reverse=True)
    return sum(1 for (_, n), who in zip(found, answered, strict=False) if n == who)


async def old_design(tmp_path: Path, people: list[Person], like: str) -> bytes:
    """The design before issue 13: each answer written at once, with random ids, in the same
    transaction as a message-log row holding the user and the exact time. Returns the file
    the attacker reads (on PostgreSQL, the table's own file)."""
    target = another(like, tmp_path / "old")
    store = await open_store(target)
    async with store.transaction() as c:
        for p in people:
            await c.execute("INSERT INTO users (phone, channel, created_at) VALUES (?, 'sms', ?)",
                            (p.phone, NOW.isoformat()))
    for p in people:
        async with store.transaction() as c:
            await c.execute("INSERT INTO inbound (user_id, channel, provider_id, text, "
                            "received_at) VALUES (?, 'sms', ?, NULL, ?)",
                            (p.n + 1, secrets.token_hex(8),
                             (NOW + timedelta(minutes=p.n)).isoformat()))
            await write_anonymous(c, [AnonymousRow("first_meeting_survey", "tekst",
                                                   marker(p.n))], NOW)
    await store.close()
    if is_pg(target):
        return pgserver.relation_file(target, "anonymous_answers")
    return Path(target).read_bytes()


async def test_page_order_beside_the_message_log_links_no_one(
        tmp_path: Path, backend: str) -> None:
    """PostgreSQL fills a heap page from its end too: the same attack on the table file."""
    people_offices = ["NAV Gjøvik"] * 20
    async with world(tmp_path, people_offices, backend) as (_, p, people, clock):
        for person in people:
            await answer(p, person, clock)
        order = [person.n for person in people]
    raw = (pgserver.relation_file(backend, "anonymous_answers") if is_pg(backend)
           else Path(backend).read_bytes())
    linked = page_order_attack(raw, people, order)
    # the old design gave the attacker everyone
    old = page_order_attack(await old_design(tmp_path, people, backend), people, order)
    assert old == 20
    # now: released in groups of 5, shuffled; chance alone gets about 4 of 20 right
    assert linked <= 12, linked


async def test_nothing_readable_until_five_have_answered(tmp_path: Path, backend: str) -> None:
    async with world(tmp_path, ["NAV Gjøvik"] * 5, backend) as (store, p, people, clock):
        start = wal_start(backend)
        for i, person in enumerate(people[:4]):
            await answer(p, person, clock)
            if is_pg(backend) and i < 3:
                continue  # a CHECKPOINT each: the WAL read after the 4th holds every step
            raw = files(backend, start)
            for q in people[:4]:
                assert marker(q.n).encode() not in raw
        assert await store.fetchall("SELECT COUNT(*) FROM anonymous_answers") == [(0,)]
        await answer(p, people[4], clock)
        rows = await store.fetchall("SELECT value FROM anonymous_answers WHERE question = ?",
                                    ("tekst",))
        assert sorted(v for (v,) in rows) == sorted(marker(q.n) for q in people)
        assert await store.fetchall("SELECT COUNT(*) FROM anonymous_pool") == [(0,)]
        # the reader sees the released answers: it would have seen them before
        assert all(marker(q.n).encode() in files(backend, start) for q in people)


def wal_transactions(wal: bytes) -> Iterator[bytes]:
    """The pages of each committed transaction in a WAL file (a frame whose header names the
    database size ends a transaction)."""
    if len(wal) < 32:
        return
    page_size = struct.unpack(">I", wal[8:12])[0]
    at, pages = 32, []
    while at + 24 + page_size <= len(wal):
        commit = struct.unpack(">I", wal[at + 4:at + 8])[0]
        pages.append(wal[at + 24:at + 24 + page_size])
        at += 24 + page_size
        if commit:
            yield b"".join(pages)
            pages = []


def analyze(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("ANALYZE")


def pg_wal_transactions(url: str, start: int) -> list[bytes]:
    """The WAL records written since `start`, joined per transaction (full-page images
    included); a record of no transaction (xid 0) stands alone."""
    txs: dict[object, list[bytes]] = {}
    for i, (xid, record) in enumerate(pgserver.wal_since(url, start)):
        txs.setdefault(xid or ("alone", i), []).append(record)
    return [b"".join(t) for t in txs.values()]


@contextmanager
def reader_holding_a_snapshot(target: str) -> Iterator[None]:
    """A backup, a report or an sqlite3/psql shell with a read transaction open."""
    if is_pg(target):
        import psycopg

        with psycopg.connect(target, autocommit=True) as pc:
            pc.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            # a snapshot, and no lock on a person's tables (a lock: the pg_dump test below)
            pc.execute("SELECT COUNT(*) FROM offices").fetchall()
            yield
        return
    c = sqlite3.connect(target)
    c.execute("BEGIN")
    c.execute("SELECT COUNT(*) FROM users").fetchall()
    try:
        yield
    finally:
        c.close()


async def test_a_reader_holding_the_wal_sees_no_answer_beside_a_person(
        tmp_path: Path, backend: str) -> None:
    async with world(tmp_path, ["NAV Gjøvik"] * 6, backend) as (store, p, people, clock):
        await answer(p, people[0], clock)
        if is_pg(backend):  # the pages written next go into the WAL whole, as in production
            pgserver.relation_file(backend, "anonymous_pool")
        start = wal_start(backend)
        with reader_holding_a_snapshot(backend):
            for person in people[1:5]:
                await answer(p, person, clock)  # the 5th releases all five
            # another user's message is not held up by the anonymous writes
            t0 = time.perf_counter()
            await p.submit(Inbound("sms", people[5].phone, "hei", "other"))
            latency = time.perf_counter() - t0
            txs = (pg_wal_transactions(backend, start) if is_pg(backend)
                   else list(wal_transactions(Path(backend + "-wal").read_bytes())))
        assert await store.fetchall("SELECT COUNT(*) FROM anonymous_answers") == [(10,)]
    assert latency < 1.0, latency  # was 4.97 s: every anonymous write waited for the reader
    with_answers = [t for t in txs if any(marker(q.n).encode() in t for q in people)]
    assert with_answers  # the release is in the WAL, and the attacker reads it ...
    assert any(people[5].phone.encode() in t for t in txs)  # (as they read the people)
    for t in with_answers:  # ... in transactions that name nobody
        for q in people:
            assert q.phone.encode() not in t and q.phone[3:].encode() not in t
            assert q.name.encode() not in t


async def test_an_office_with_few_answers_is_not_named(tmp_path: Path, backend: str) -> None:
    """One respondent from Søndre Land among five from Gjøvik: a join of office and week
    against the configuration would name her, so the whole release is stored as the region."""
    offices = ["NAV Gjøvik"] * 5 + ["NAV Søndre Land"]
    async with world(tmp_path, offices, backend) as (store, p, people, clock):
        for person in [people[5], *people[:4]]:
            await answer(p, person, clock)
        rows = await store.fetchall("SELECT office, week, COUNT(*) FROM anonymous_answers "
                                    "GROUP BY office, week, question")
        assert rows and all(office == REGION and n == 5 for office, _, n in rows)
        # with five from each office, offices are kept
        for person in people[4:5]:
            await answer(p, person, clock)
    async with world(tmp_path / "b", ["NAV Gjøvik"] * 5 + ["NAV Østre Toten"] * 5,
                     another(backend, tmp_path / "b")) as (store, p, people, clock):
        for person in people:
            await answer(p, person, clock)
        rows = await store.fetchall("SELECT office, COUNT(*) FROM anonymous_answers "
                                    "WHERE question = 'tekst' GROUP BY office ORDER BY office")
        assert rows == [("NAV Gjøvik", 5), ("NAV Østre Toten", 5)]


def backup(db: str, target: Path) -> dict[str, set[tuple[object, ...]]]:
    """The operator's backup, then every table read as the attacker would: `veivis backup`
    (SQLite's online backup), or a plain `pg_dump` (its COPY lines, split into columns)."""
    if is_pg(db):
        rows = pgserver.dumped_rows(pgserver.pg_dump(db, target))
        return {t: {tuple(line.split("\t")) for line in lines} for t, lines in rows.items()}
    src, dst = sqlite3.connect(f"file:{db}?mode=ro", uri=True), sqlite3.connect(target)
    with dst:
        src.backup(dst)
    src.close()
    tables = [r[0] for r in dst.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    out = {t: set(dst.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}
    dst.close()
    return out


async def test_two_backups_around_one_answer_show_nothing_of_it(
        tmp_path: Path, backend: str) -> None:
    async with world(tmp_path, ["NAV Gjøvik"] * 6, backend) as (_store, p, people, clock):
        a = backup(backend, tmp_path / "a.db")
        await answer(p, people[0], clock)
        b = backup(backend, tmp_path / "b.db")
        new = {t: b[t] - a.get(t, set()) for t in b}
        assert new["anonymous_answers"] == set()
        assert len(new["anonymous_pool"]) == 2  # two sealed rows; their bytes say nothing
        raw_b = (tmp_path / "b.db").read_bytes()
        assert marker(0).encode() not in raw_b
        for person in people[1:5]:
            await answer(p, person, clock)
        c = backup(backend, tmp_path / "c.db")
    released = c["anonymous_answers"] - b["anonymous_answers"]
    # the diff around a release holds the answers of five people, not one
    texts = {r[3] for r in released if r[2] == "tekst"}
    assert texts == {marker(q.n) for q in people[:5]}
    assert {r[4] for r in released} == {"2026-W48"}  # the week of the release, nothing finer


async def test_after_slett_the_files_hold_nothing_of_the_person(
        tmp_path: Path, backend: str) -> None:
    """She writes to her veileder, sends a crisis message (the veileder is told), her
    veileder registers a meeting by SMS (the confirmation names her number), she answers
    the survey; then SLETT. The database files, a backup taken after (and on SQLite the WAL)
    hold none of her number (in any form), her name or what she wrote. On PostgreSQL the
    table files are rewritten after SLETT: her rows do not stay in their free space, and
    her number is in no planner statistics (autovacuum's ANALYZE ran while she was there);
    the WAL still holds her, as deploy/README.md says."""
    async with world(tmp_path, ["NAV Gjøvik"] * 5, backend) as (store, p, people, clock):
        start = wal_start(backend)
        sara = people[0]
        clock.now = NOW  # Monday 12.00 in Oslo: the veileder is at work
        long = " ".join(secrets.token_urlsafe(6) for _ in range(240))  # out of line (TOAST)
        for i, text in enumerate(["VEILEDER", f"Kan du ringe meg om bostøtte xyzzy? {long}",
                                  "jeg vil ikke leve mer"]):
            await p.submit(Inbound("sms", sara.phone, text, f"s{i}"))
        work = (await store.fetchall("SELECT work_phone FROM veiledere"))[0][0]
        await p.submit(Inbound("sms", work, f"MØTE {sara.phone[3:]} i morgen kl 10", "v1"))
        await answer(p, sara, clock)
        about = await store.fetchall("SELECT COUNT(*) FROM outbox WHERE address = ?", (work,))
        assert about[0][0] >= 3  # the forward, the crisis notice, the confirmation
        if is_pg(backend):
            analyze(backend)  # as autovacuum does on a live database
        await p.submit(Inbound("sms", sara.phone, "SLETT", "s8"))
        await p.submit(Inbound("sms", sara.phone, "ja", "s9"))
        # the answer to SLETT is sent (a fake sender marks it), then forgets where it went
        pending = await store.fetchall("SELECT id FROM outbox WHERE status = 'pending'")
        await store.mark_sent([r[0] for r in pending], clock.now)
        assert await store.forget_history()
        after = backup(backend, tmp_path / "after.db")
        if is_pg(backend):
            raw = pgserver.database_files(backend) + (tmp_path / "after.db").read_bytes()
            wal = b"".join(r for _, r in pgserver.wal_since(backend, start))
        else:
            raw = files(backend) + (tmp_path / "after.db").read_bytes()
    forms = [sara.phone, sara.phone[3:], sara.phone[1:], f"{sara.phone[3:6]} "
             f"{sara.phone[6:8]} {sara.phone[8:]}", sara.name, "xyzzy", "bostøtte",
             long[1000:1040]]
    for form in forms:
        assert form.encode() not in raw, form
    assert all(sara.phone not in str(rows) for rows in after.values())
    if is_pg(backend):  # what PostgreSQL keeps until its WAL is recycled (not promised)
        assert sara.phone.encode() in wal and b"xyzzy" in wal


async def test_erasing_with_a_reader_open_empties_the_wal_when_it_closes(
        tmp_path: Path, backend: str) -> None:
    """SQLite: the WAL cannot be emptied while a reader holds an old snapshot. PostgreSQL: a
    transaction that began before SLETT still sees her rows, so rewriting the tables then
    would copy them into the new files; the rewrite waits for it in the same way."""
    async with world(tmp_path, ["NAV Gjøvik"], backend) as (store, p, people, _clock):
        sara = people[0]
        await p.submit(Inbound("sms", sara.phone, "Hei, jeg heter Navn00 qwerty", "t0"))
        with reader_holding_a_snapshot(backend):
            await p.submit(Inbound("sms", sara.phone, "SLETT", "t1"))
            await p.submit(Inbound("sms", sara.phone, "ja", "t2"))
            assert store.history_pending  # the checkpoint could not finish, and said so
        assert await store.forget_history()  # the next try, after the reader closed
        assert not store.history_pending
        if is_pg(backend):
            assert b"qwerty" not in pgserver.database_files(backend)
        else:
            assert Path(backend + "-wal").stat().st_size == 0
            assert b"qwerty" not in Path(backend).read_bytes()


async def test_a_backup_running_postpones_the_rewrite_and_holds_no_one_up(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: a `pg_dump` holds a lock on every table it copies, for as long as it
    runs. The rewrite after SLETT must not wait for it (every instance's writes to the
    table would queue behind the rewrite): it gives up at once, and a later try, after the
    dump, takes her rows out of the files."""
    import psycopg

    monkeypatch.setenv("VEIVIS_SEAL_KEY_FILE", str(tmp_path / "seal-key"))
    async with world(tmp_path, ["NAV Gjøvik"] * 2, pg_url) as (store, p, people, _clock):
        sara = people[0]
        await p.submit(Inbound("sms", sara.phone, "Hei, jeg heter Navn00 plugh", "b0"))
        await p.submit(Inbound("sms", sara.phone, "SLETT", "b1"))
        with psycopg.connect(pg_url, autocommit=True) as dump:
            dump.execute("BEGIN")
            dump.execute("LOCK TABLE outbox IN ACCESS SHARE MODE")  # what pg_dump takes
            t0 = time.perf_counter()
            await p.submit(Inbound("sms", sara.phone, "ja", "b2"))
            waited = time.perf_counter() - t0
            assert store.history_pending
            await p.submit(Inbound("sms", people[1].phone, "hei", "b3"))  # served meanwhile
            dump.execute("COMMIT")
        assert waited < 2.0, waited
        assert await store.forget_history()
        assert b"plugh" not in pgserver.database_files(pg_url)


async def test_a_second_erasure_waits_for_readers_older_than_it(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: a reader that began after the first SLETT but before the second still
    sees the second person's rows; the rewrite waits for it too, not only for readers older
    than the first."""
    monkeypatch.setenv("VEIVIS_SEAL_KEY_FILE", str(tmp_path / "seal-key"))
    async with world(tmp_path, ["NAV Gjøvik"] * 2, pg_url) as (store, p, people, _clock):
        sara, ola = people
        await p.submit(Inbound("sms", sara.phone, "jeg heter Navn00 frotz", "e0"))
        await p.submit(Inbound("sms", ola.phone, "jeg heter Navn01 gnusto", "e1"))
        with ExitStack() as first, ExitStack() as second:
            first.enter_context(reader_holding_a_snapshot(pg_url))
            await p.submit(Inbound("sms", sara.phone, "SLETT", "e2"))
            await p.submit(Inbound("sms", sara.phone, "ja", "e3"))
            second.enter_context(reader_holding_a_snapshot(pg_url))  # after the first SLETT
            await p.submit(Inbound("sms", ola.phone, "SLETT", "e4"))
            await p.submit(Inbound("sms", ola.phone, "ja", "e5"))
            first.close()  # the reader older than both erasures ends
            assert not await store.forget_history()  # the second still sees Ola's rows
            second.close()
        assert await store.forget_history()
        raw = pgserver.database_files(pg_url)
        assert b"frotz" not in raw and b"gnusto" not in raw


async def test_the_anonymous_path_keeps_up(tmp_path: Path, backend: str) -> None:
    """Not a timing target (bench/anonymous.py measures it): many people answering at once
    are all handled, and the pool ends empty."""
    async with world(tmp_path, ["NAV Gjøvik"] * 25, backend) as (store, p, people, clock):
        await asyncio.gather(*(answer(p, person, clock) for person in people))
        assert await store.fetchall("SELECT COUNT(*) FROM anonymous_answers") == [(50,)]
        assert await store.fetchall("SELECT COUNT(*) FROM anonymous_pool") == [(0,)]


async def test_no_table_column_or_log_line_names_a_respondent(
        tmp_path: Path, backend: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with world(tmp_path, ["NAV Gjøvik"] * 5, backend) as (store, p, people, clock):
        for person in people:
            await answer(p, person, clock)
        if is_pg(backend):
            cols = [r[0] for r in await store.fetchall(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = "
                "'public' AND table_name = 'anonymous_answers' ORDER BY ordinal_position")]
            tables = [r[0] for r in await store.fetchall(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                "'public' AND table_name != 'anonymous_answers'")]
        else:
            cols = [r[1] for r in await store.fetchall("PRAGMA table_info(anonymous_answers)")]
            tables = [r[0] for r in await store.fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name != 'anonymous_answers' AND name NOT LIKE 'sqlite_%'")]
        assert cols == ["id", "flow", "question", "value", "week", "office"]
        assert "users" in tables
        for t in tables:  # no other table holds what they wrote, in any form
            dump = str(await store.fetchall(f"SELECT * FROM {t}"))
            assert not any(marker(q.n) in dump for q in people), t
    for q in people:  # (d) the logs: never a text, never a whole number
        assert marker(q.n) not in caplog.text and q.phone not in caplog.text


def test_files_with_personal_data_are_for_the_owner_only(tmp_path: Path) -> None:
    """The database, its WAL, the seal key, a backup and an export made by `veivis`: 0600,
    whatever the umask of the shell that ran it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    db = tmp_path / "p.db"

    def veivis(*args: str, stdin: str = "") -> None:
        done = subprocess.run([sys.executable, "-c", "import os, sys; os.umask(0o022); "
                               "from bot.app.cli import main; sys.exit(main())", *args],
                              input=stdin, capture_output=True, text=True, env=env,
                              timeout=120, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    veivis("chat", "--db", str(db), "--json", "--now", "2026-11-23 12:00", stdin="hei\n")
    veivis("backup", "--db", str(db), str(tmp_path / "copy.db"))
    (tmp_path / "me.json").write_text("")  # a file that was there, readable by all
    (tmp_path / "me.json").chmod(0o644)
    veivis("export-user", "--db", str(db), "91234567", "--out", str(tmp_path / "me.json"))
    made = [db, Path(f"{db}.seal-key"), tmp_path / "copy.db", tmp_path / "me.json"]
    for f in made:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


async def test_two_reports_cannot_be_subtracted(
        tmp_path: Path, backend: str) -> None:
    """(c) every report: only fixed periods that are over, so a report made later about the
    same period is the same report, and the period going on now is never reported."""
    async with world(tmp_path, ["NAV Gjøvik"] * 10, backend) as (store, p, people, clock):
        flows = p.flows
        clock.now = NOW - timedelta(days=10)  # in the period before NOW (weeks 46-47)
        for person in people[:5]:
            await answer(p, person, clock)
        first = await make_report(store, flows, NOW)
        clock.now = NOW  # five more answer in the period going on now
        for person in people[5:]:
            await answer(p, person, clock)
        later = await make_report(store, flows, NOW + timedelta(days=3))
        with pytest.raises(PeriodError):
            await make_report(store, flows, NOW, week=NOW.date())
    assert first.survey_n == 5
    made = "Laget"  # everything but the line that says when it was made
    assert ([ln for ln in markdown(first).splitlines() if made not in ln]
            == [ln for ln in markdown(later).splitlines() if made not in ln])


async def test_a_crash_between_the_answer_and_the_release_loses_nothing(
        tmp_path: Path, backend: str) -> None:
    async with world(tmp_path, ["NAV Gjøvik"] * 5, backend) as (store, p, people, clock):
        for person in people[:4]:
            await answer(p, person, clock)
        release = Store.release_anonymous

        async def crash(self: Store, now: object) -> int:
            raise RuntimeError("killed before the release")
        Store.release_anonymous = crash  # type: ignore[method-assign,assignment]
        try:
            await answer(p, people[4], clock)  # the fifth answer is committed, then a crash
        finally:
            Store.release_anonymous = release  # type: ignore[method-assign]
        assert await store.fetchall("SELECT COUNT(*) FROM anonymous_answers") == [(0,)]
        await p.stop()
        await p.start()  # the restart releases what waited
        assert await store.fetchall("SELECT COUNT(*) FROM anonymous_answers") == [(10,)]


def test_a_report_gives_no_hidden_count_away() -> None:
    """The attack: ratings 2,3,4,4,4,4,4,4,4,4 were shown as 1:0, 2:hidden, 3:hidden, 4:8,
    5:0 with «Svarte: 10»; the hidden ones add up to 2 and each is at least 1 (the zeros
    say so), so both were exactly 1. Now no value of a hidden cell follows from what is
    shown and the total."""
    counts = [0, 1, 1, 8, 0]
    shown = protect(counts)
    total = sum(counts)
    hidden = [i for i, c in enumerate(shown) if c is None]
    rest = total - sum(c for c in shown if c is not None)
    # a «0» shown beside hidden cells would tell the attacker that hidden means at least 1
    low = 1 if 0 in shown else 0
    # every assignment of the hidden cells that fits the total: each cell takes >1 value
    fits = [a for a in itertools.product(range(low, rest + 1), repeat=len(hidden))
            if sum(a) == rest]
    for k in range(len(hidden)):
        assert len({a[k] for a in fits}) > 1


async def test_a_sealed_answer_says_nothing_by_its_length(
        tmp_path: Path, backend: str) -> None:
    """The attack: sealed rows were as long as what they sealed, so a «ja» and a «nei» told
    themselves apart, and a sealed text matched its released text by length (24/24 yes/no
    answers read from one copy; 25/25 texts linked). Now every sealed row is as long as
    every other."""
    async with world(tmp_path, ["NAV Gjøvik"] * 4, backend) as (store, p, people, clock):
        await answer(p, people[0], clock, yes=True)
        await answer(p, people[1], clock, yes=False)
        clock.now += timedelta(minutes=5)
        await p.submit(FlowRequest("sms", people[2].phone, "first_meeting_survey"))
        await p.submit(Inbound("sms", people[2].phone, "nei", "long-a"))
        await p.submit(Inbound("sms", people[2].phone, "æøå 😢 " * 400, "long-b"))
        lengths = await store.fetchall("SELECT length(sealed) FROM anonymous_pool")
    assert len(lengths) == 6 and len(set(lengths)) == 1, lengths


async def test_the_answer_to_slett_forgets_its_number_when_it_cannot_be_sent(
        tmp_path: Path, backend: str) -> None:
    """The attack: the provider refused the answer to SLETT (400) or was down for good; the
    failed row kept the full number and «… er slettet» for 90 days."""
    async with world(tmp_path, ["NAV Gjøvik"], backend) as (store, p, people, _clock):
        sara = people[0]
        await p.submit(Inbound("sms", sara.phone, "SLETT", "f1"))
        await p.submit(Inbound("sms", sara.phone, "ja", "f2"))
        [(row,)] = await store.fetchall("SELECT id FROM outbox WHERE forget = 1")
        await store.record_failed(row, "HTTP 400 from the provider", "21211")
        assert await store.fetchall("SELECT address, text FROM outbox WHERE id = ?",
                                    (row,)) == [("", "")]
        assert await store.fetchall("SELECT COUNT(*) FROM outbox WHERE address = ?",
                                    (sara.phone,)) == [(0,)]


async def test_files_that_were_there_already_are_made_the_owners_only(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    store = await Store.open(db)
    await store.close()
    key = Path(f"{db}.seal-key")
    for f in (db, key):
        f.chmod(0o644)
    store = await Store.open(db)
    await store.add_office("NAV Gjøvik")  # the WAL is there now
    for f in (db, key, Path(f"{db}-wal")):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    await store.close()
