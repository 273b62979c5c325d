"""The SQLite store (aiosqlite, WAL): the only code that writes SQL.

The pipeline works in batches: one `Batch` is one transaction, opened with BEGIN IMMEDIATE,
in which it reads what it needs for every message of the batch with a few set-wise queries
and writes every change with executemany. So the cost of a round-trip to the database thread
is paid per batch, not per statement (group commit). A message's changes are never split
across transactions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple, cast
from urllib.parse import quote

import aiosqlite

from . import meetings as M
from .anonymous import AnonymousRow, pool_anonymous, release
from .migrations import MIGRATIONS, SchemaTooNew
from .outbox import Outbox, OutboxItem, outbox_item
from .queries import Queries
from .seal import Sealer, SealError, key_file_for
from .sql import PHONE_CHANNELS, Step, chunks, iso, run_steps, together
from .tx import Tx

log = logging.getLogger(__name__)
PURGE_CHUNK = 200  # rows per purge transaction (bench/scale.py: well under 100 ms each)
# aiosqlite logs every statement with its parameters at DEBUG: message texts and phone
# numbers. Logs must never hold those, whatever level the app runs at.
logging.getLogger("aiosqlite").setLevel(logging.WARNING)



# the batch's value types are named tuples: one of each is made for every message, and a
# frozen dataclass costs three times as much to make


class UserRow(NamedTuple):
    id: int
    channel: str
    address: str
    first_name: str | None
    language: str
    stopped: bool


class UserContext(NamedTuple):
    """What flows may show about the user: their first name, veileder, office, next meeting."""

    first_name: str | None = None
    veileder: str | None = None
    work_phone: str | None = None
    office: str | None = None
    meeting_at: datetime | None = None
    meeting_place: str | None = None
    working_hours: str | None = None
    away_until: date | None = None
    backup_phone: str | None = None  # the veileder's own backup, else the office's


class OutRow(NamedTuple):
    user_id: int | None
    channel: str
    address: str
    text: str
    choices: Sequence[str]
    numbered: bool
    due_at: datetime
    forget: bool = False  # wipe the address and text once sent (the answer to SLETT)


@dataclass
class Changes:
    """Everything a batch writes, in one transaction."""

    inbound: list[tuple[int | None, str, str, str | None, str]] = field(default_factory=list)
    states: dict[int, str] = field(default_factory=dict)
    outbox: list[OutRow] = field(default_factory=list)
    answers: list[tuple[int, str, str, str, int | None]] = field(default_factory=list)
    scheduled_done: list[int] = field(default_factory=list)
    anonymous: list[AnonymousRow] = field(default_factory=list)
    stopped: dict[int, bool] = field(default_factory=dict)
    language: dict[int, str] = field(default_factory=dict)
    consent: dict[int, bool] = field(default_factory=dict)
    hear_back: dict[int, bool] = field(default_factory=dict)
    erased: list[int] = field(default_factory=list)
    # (channel, provider id) of messages typed inside an anonymous flow: kept only as a keyed
    # hash with the day, never with the user
    seen_only: list[tuple[str, str]] = field(default_factory=list)


class Batch(Tx):
    """One open transaction of the pipeline: set-wise reads and writes for a whole batch."""

    last: Sequence[Step] = ()  # the writes `write` leaves for the COMMIT

    async def users_for(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], UserRow]:
        """The users behind (channel, address) keys; creates the ones not seen before.

        Phone channels (sms, console) find a user by phone, Telegram by chat id. A user who
        writes on another channel than before gets replies on the new one.
        """
        keys = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], UserRow] = {}
        for attempt in range(2):
            by_phone = [a for c, a in keys if c in PHONE_CHANNELS]
            by_chat = [a for c, a in keys if c not in PHONE_CHANNELS]
            rows: list[Any] = []
            for col, vals in (("phone", by_phone), ("telegram_chat_id", by_chat)):
                for chunk in chunks(vals, 500):
                    q = (f"SELECT id, channel, {col}, first_name, language, stopped FROM users "
                         f"WHERE {col} IN ({','.join('?' * len(chunk))})")
                    rows.extend((col, r) for r in await self._c.execute_fetchall(q, chunk))
            index = {(col, r[2]): r for col, r in rows}
            missing = []
            moved = []
            for ch, addr in keys:
                col = "phone" if ch in PHONE_CHANNELS else "telegram_chat_id"
                r = index.get((col, addr))
                if r is None:
                    missing.append((ch, addr))
                    continue
                if r[1] != ch:
                    moved.append((ch, r[0]))
                found[ch, addr] = UserRow(r[0], ch, addr, r[3], r[4], bool(r[5]))
            if moved:
                await self._c.executemany("UPDATE users SET channel = ? WHERE id = ?", moved)
            if not missing or attempt == 1:
                break
            now = iso(self.now)
            await self._c.executemany(
                "INSERT INTO users (phone, telegram_chat_id, channel, created_at) "
                "VALUES (?, ?, ?, ?)",
                [(a if c in PHONE_CHANNELS else None, None if c in PHONE_CHANNELS else a, c, now)
                 for c, a in missing],
            )
            keys = missing
        return found

    async def seen(self, channel: str, provider_ids: Sequence[str]) -> set[str]:
        """Which of these provider message ids were processed before (in the message log, or
        as a keyed hash when they were typed inside an anonymous flow)."""
        keys = {self._seen_key(channel, pid): pid for pid in provider_ids}
        reads = [self._c.execute_fetchall(
            f"SELECT key FROM seen_keys WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            for chunk in chunks(list(keys), 500)]
        logged = [self._c.execute_fetchall(
            f"SELECT provider_id FROM inbound WHERE channel = ? AND provider_id IN "
            f"({','.join('?' * len(chunk))})", [channel, *chunk])
            for chunk in chunks(list(provider_ids), 500)]
        got = await together(*reads, *logged)
        out = {keys[bytes(r[0])] for rows in got[:len(reads)] for r in rows}
        out.update(r[0] for rows in got[len(reads):] for r in rows)
        return out

    async def states(self, user_ids: Sequence[int]) -> dict[int, str]:
        """Each user's conversation state as stored (JSON text; the pipeline reads it)."""
        out: dict[int, str] = {}
        for chunk in chunks(list(user_ids), 500):
            q = (f"SELECT user_id, state FROM conversations WHERE user_id IN "
                 f"({','.join('?' * len(chunk))})")
            for uid, s in await self._c.execute_fetchall(q, chunk):
                out[uid] = s
        return out

    async def contexts(self, user_ids: Sequence[int]) -> dict[int, UserContext]:
        out: dict[int, UserContext] = {}
        now = iso(self.now)
        for chunk in chunks(list(user_ids), 400):
            marks = ",".join("?" * len(chunk))
            q = f"""
                SELECT u.id, u.first_name, v.name, v.work_phone, o.name, m.starts_at, m.place,
                       v.working_hours, v.away_until, COALESCE(v.backup_phone, o.backup_phone)
                FROM users u
                LEFT JOIN veiledere v ON v.id = u.veileder_id
                LEFT JOIN offices o ON o.id = v.office_id
                LEFT JOIN meetings m ON m.id = (
                    SELECT id FROM meetings WHERE user_id = u.id AND status = 'planned'
                    AND starts_at >= ? ORDER BY starts_at LIMIT 1)
                WHERE u.id IN ({marks})"""
            for (uid, first, vname, phone, office, starts, place, hours, away,
                 backup) in await self._c.execute_fetchall(q, [now, *chunk]):
                out[uid] = UserContext(
                    first, vname, phone, office,  # first name, veileder, work phone, office
                    datetime.fromisoformat(starts) if starts else None, place, hours,
                    date.fromisoformat(away) if away else None, backup)
        return out

    async def desk_events(self, user_ids: Sequence[int], now: datetime
                          ) -> dict[int, tuple[int, bool]]:
        """For each user: how many messages they sent their veileder in the last hour, and
        whether a crisis notice about them went out in the last half hour."""
        out: dict[int, tuple[int, bool]] = {}
        hour, half = iso(now - timedelta(hours=1)), iso(now - timedelta(minutes=30))
        for chunk in chunks(list(user_ids), 500):
            q = (f"SELECT t.user_id, "
                 f"SUM(CASE WHEN e.direction = 'in' AND e.at >= ? THEN 1 ELSE 0 END), "
                 f"SUM(CASE WHEN e.direction = 'crisis' AND e.at >= ? THEN 1 ELSE 0 END) "
                 f"FROM thread_events e JOIN threads t ON t.id = e.thread_id WHERE e.at >= ? "
                 f"AND t.user_id IN ({','.join('?' * len(chunk))}) GROUP BY t.user_id")
            out.update((int(u), (int(n), bool(c))) for u, n, c
                       in await self._c.execute_fetchall(q, [hour, half, hour, *chunk]))
        return out

    async def sent_to(self, user_ids: Sequence[int], minute: datetime, day: datetime
                      ) -> dict[int, tuple[int, int]]:
        """For each user: how many messages were queued to them since `minute` and since
        `day` (every kind: replies, reminders, crisis answers)."""
        out: dict[int, tuple[int, int]] = {}
        for chunk in chunks(list(user_ids), 500):
            q = (f"SELECT user_id, SUM(CASE WHEN created_at >= ? THEN 1 ELSE 0 END), "
                 f"COUNT(*) FROM outbox WHERE user_id IN ({','.join('?' * len(chunk))}) "
                 f"AND created_at >= ? GROUP BY user_id")
            out.update((int(u), (int(m), int(d))) for u, m, d
                       in await self._c.execute_fetchall(q, [iso(minute), *chunk, iso(day)]))
        return out

    async def newest_user(self) -> int:
        """The highest user id so far (users made after it are new)."""
        async with self._c.execute("SELECT COALESCE(MAX(id), 0) FROM users") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def strangers_since(self, since: datetime, up_to: int) -> int:
        """People who wrote first (made by a message, with no veileder) since `since`,
        among the users up to id `up_to`."""
        async with self._c.execute("SELECT COUNT(*) FROM users WHERE created_at >= ? AND "
                                   "veileder_id IS NULL AND id <= ?",
                                   (iso(since), up_to)) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def sent_on(self, channels: Sequence[str], since: datetime) -> dict[str, int]:
        """Messages queued on each channel since `since` (to anyone: the day's budget)."""
        out: dict[str, int] = {}
        for ch in channels:
            async with self._c.execute("SELECT COUNT(*) FROM outbox WHERE channel = ? "
                                       "AND created_at >= ?", (ch, iso(since))) as cur:
                row = await cur.fetchone()
            out[ch] = int(row[0]) if row else 0
        return out

    async def meetings(self, ids: Sequence[int]) -> dict[int, tuple[datetime, str | None]]:
        """Start and place of particular meetings (the one a reminder is about)."""
        out: dict[int, tuple[datetime, str | None]] = {}
        for chunk in chunks(list(ids), 500):
            q = (f"SELECT id, starts_at, place FROM meetings WHERE id IN "
                 f"({','.join('?' * len(chunk))})")
            for mid, starts, place in await self._c.execute_fetchall(q, chunk):
                out[mid] = (datetime.fromisoformat(starts), place)
        return out

    async def write(self, ch: Changes) -> None:
        """The batch's changes, the last thing it does: erasures now, the rest sent to the
        database with the COMMIT when the batch's block ends (one call to its thread, not
        one for each statement). Nothing is read or written in the batch after this."""
        c = self._c
        now = iso(self.now)
        for uid in ch.erased:
            await erase_user(c, self._sealer, uid, self.now)
        writes: list[Step] = []  # run in this order
        if ch.inbound:
            writes.append((
                "INSERT OR IGNORE INTO inbound (user_id, channel, provider_id, text, received_at)"
                " VALUES (?, ?, ?, ?, ?)", ch.inbound, True))
        if ch.states:
            writes.append((
                "INSERT INTO conversations (user_id, state, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, "
                "updated_at = excluded.updated_at",
                [(uid, s, now) for uid, s in ch.states.items()], True))
        if ch.stopped:
            writes.append(("UPDATE users SET stopped = ? WHERE id = ?",
                           [(int(v), uid) for uid, v in ch.stopped.items()], True))
        if ch.language:
            writes.append(("UPDATE users SET language = ? WHERE id = ?",
                           [(v, uid) for uid, v in ch.language.items()], True))
        if ch.consent:
            writes.append(("UPDATE users SET consent = ? WHERE id = ?",
                           [(int(v), uid) for uid, v in ch.consent.items()], True))
        if ch.hear_back:
            writes.append(("UPDATE users SET hear_back = ? WHERE id = ?",
                           [(int(v), uid) for uid, v in ch.hear_back.items()], True))
        if ch.answers:
            writes.append((
                "INSERT INTO answers (user_id, flow, key, value, meeting_id, saved_at) "
                "VALUES (?, ?, ?, ?, ?, ?)", [(*a, now) for a in ch.answers], True))
        if ch.scheduled_done:
            writes.append(("UPDATE scheduled SET status = 'done', handled_at = ? "
                           "WHERE id = ? AND status = 'pending'",
                           [(now, i) for i in ch.scheduled_done], True))
        if ch.outbox:
            shown: dict[tuple[str, ...], str] = {}  # the same choices, encoded once a batch
            at = self.now
            writes.append((
                "INSERT INTO outbox (user_id, channel, address, text, choices, numbered, "
                "created_at, due_at, forget) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(uid, chn, address, text, _choices_json(choices, shown), int(numbered), now,
                  now if due is at or due == at else iso(due), int(forget))
                 for uid, chn, address, text, choices, numbered, due, forget in ch.outbox],
                True))
        if ch.seen_only:
            day = self.now.astimezone(UTC).date().isoformat()
            writes.append((
                "INSERT OR IGNORE INTO seen_keys (key, day) VALUES (?, ?)",
                [(self._seen_key(chn, pid), day) for chn, pid in ch.seen_only], True))
        await pool_anonymous(c, self._sealer, ch.anonymous)  # (rarely any)
        self.last = writes
        self._c = _WRITTEN

    def _seen_key(self, channel: str, provider_id: str) -> bytes:
        return self._sealer.mac("seen", channel, provider_id)


_COMMIT: Step = ("COMMIT", (), False)


class _Written:
    """A batch's connection once it is written: nothing more goes into its transaction."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the batch is written: nothing more goes into its transaction")


_WRITTEN = cast(aiosqlite.Connection, _Written())


def _choices_json(choices: Sequence[str], shown: dict[tuple[str, ...], str]) -> str | None:
    """An outbox row's choices as stored (JSON), or None without choices."""
    if not choices:
        return None
    if type(choices) is not tuple:
        return json.dumps(list(choices), ensure_ascii=False)
    got = shown.get(choices)
    if got is None:
        got = shown[choices] = json.dumps(list(choices), ensure_ascii=False)
    return got


async def erase_user(c: aiosqlite.Connection, sealer: Sealer, uid: int, now: datetime) -> None:
    """SLETT (and the 90-day retention): remove a person's data, in the caller's transaction.
    Anonymous rows hold nothing to remove (and a pooled answer cannot be found by person).

    - the message log's rows go; their provider ids stay only as keyed hashes (seen_keys), so
      a retried webhook is still recognised and nothing tells when the person wrote;
    - every outbox row to them or about them (a forward, a summary or a crisis notice to the
      veileder, a veileder's confirmation naming them) goes, pending or sent;
    - the user row goes, and with it (ON DELETE CASCADE) the conversation, answers,
      meetings and what was scheduled for them, threads and their events, invites.
    `secure_delete` overwrites what is deleted; the WAL is emptied after the batch.
    """
    async with c.execute("SELECT channel, provider_id FROM inbound WHERE user_id = ?",
                         (uid,)) as cur:
        ids = await cur.fetchall()
    day = now.astimezone(UTC).date().isoformat()
    await c.executemany("INSERT OR IGNORE INTO seen_keys (key, day) VALUES (?, ?)",
                        [(sealer.mac("seen", ch, pid), day) for ch, pid in ids])
    await c.execute("DELETE FROM inbound WHERE user_id = ?", (uid,))
    await c.execute("DELETE FROM outbox WHERE user_id = ? OR about_user = ?", (uid, uid))
    await c.execute("DELETE FROM users WHERE id = ?", (uid,))


class Store(Queries, Outbox):
    """An open database. Use `await Store.open(path)`; `close()` when done."""

    def __init__(self, conn: aiosqlite.Connection, path: str, sealer: Sealer) -> None:
        self._conn = conn
        self._sealer = sealer
        self.history_pending = False  # erased data may still be in the WAL
        self.path = path
        self.created = False  # True when this open created the schema (a new database)
        # one connection, many tasks (pipeline, senders, webhooks): one transaction at a time
        self._tx_lock = asyncio.Lock()
        self.shared = False  # one process owns this database (PostgreSQL: several may)

    @classmethod
    async def open(cls, path: str | Path, sealer: Sealer | None = None) -> Store:
        """Open (and migrate) the database. `sealer`: the key for the anonymous pool; by
        default the key file `key_file_for(path)` (made if missing)."""
        p = str(path)
        if sealer is None:
            key_file = key_file_for(p)
            sealer = Sealer.from_file(key_file) if key_file else Sealer.ephemeral()
        if p != ":memory:":
            Path(p).parent.mkdir(parents=True, exist_ok=True)
        pending = aiosqlite.connect(p, isolation_level=None)
        # A store left open (a crash, a failed test) must not keep the process alive: the
        # worker thread is a daemon. Durability comes from SQLite's commit (WAL); a thread
        # stopped mid-transaction is a crash, which SQLite rolls back.
        worker: Any = getattr(pending, "_thread", pending)
        worker.daemon = True
        conn = await pending
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        # deleted data (SLETT, retention, redacted logs) is overwritten, not left in free pages
        await conn.execute("PRAGMA secure_delete = ON")
        await conn.execute("PRAGMA busy_timeout = 5000")
        store = cls(conn, p, sealer)
        try:
            await store.migrate()
            await store.check_seal_key()
        except BaseException:
            await conn.close()
            raise
        if p != ":memory:":  # files that were there already may have been made 0644
            for f in (p, p + "-wal", p + "-shm"):
                with contextlib.suppress(FileNotFoundError, PermissionError):
                    os.chmod(f, 0o600)
        return store

    async def close(self) -> None:
        await self._conn.close()

    async def check_seal_key(self) -> None:
        """Refuse a seal key other than the one this database's pool and keyed hashes were
        made with (a wrong key file, or a new one made because the file was missing)."""
        async with self.tx(datetime.now(UTC)) as tx:
            ok = await tx.seal_key_matches()
        if not ok:
            raise SealError(f"{self.path}: seal-nøkkelen passer ikke til denne databasen (den "
                            "ble laget med en annen nøkkel). Bruk den samme nøkkelfila som "
                            "før (VEIVIS_SEAL_KEY_FILE); ingenting er endret")

    async def schema_version(self) -> int:
        async with self._conn.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self) -> None:
        current = await self.schema_version()
        if current > len(MIGRATIONS):
            raise SchemaTooNew(self.path, current, len(MIGRATIONS))
        self.created = current == 0
        if current < len(MIGRATIONS):
            log.info("database schema version %d; migrating to %d", current, len(MIGRATIONS))
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            async with self.transaction() as c:
                for stmt in _statements(sql):
                    await c.execute(stmt)
                await c.execute(f"PRAGMA user_version = {version}")
            log.info("database migrated to version %d", version)

    @asynccontextmanager
    async def batch(self, now: datetime) -> AsyncIterator[Batch]:
        """One pipeline batch in one transaction. What `Batch.write` leaves for the end goes
        to the database's thread with the COMMIT, in one call."""
        async with self._tx_lock:
            c = self._conn
            await c.execute("BEGIN IMMEDIATE")
            try:
                b = Batch(c, now, self._sealer)
                yield b
                await run_steps(c, [*b.last, _COMMIT])
            except BaseException:
                if c.in_transaction:  # a failed COMMIT may have ended it already
                    await c.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def tx(self, now: datetime) -> AsyncIterator[Tx]:
        """One write transaction for the service: committed when the block ends, rolled back
        if it raises."""
        async with self.transaction() as c:
            yield Tx(c, now, self._sealer)

    @asynccontextmanager
    async def job_lock(self, name: str) -> AsyncIterator[bool]:
        """Whether this process is the one to run job `name` now: on SQLite, always (one
        process owns the database). The PostgreSQL store picks one instance."""
        yield True

    async def watch_outbox(self, wake: Callable[[], None]) -> None:
        """Call `wake` when another process queues messages: none can here (the pipeline
        wakes this process's senders itself)."""

    async def ping(self) -> None:
        """Raises if the database does not answer (for /readyz)."""
        await self.fetchall("SELECT 1")

    # -- reads for meetings (outside a transaction; Tx has the same inside one) -----------
    async def user_by_phone(self, phone: str) -> tuple[int, int | None] | None:
        return await M.user_by_phone(self._conn, phone)

    async def meeting_count(self, user_id: int) -> int:
        return await M.meeting_count(self._conn, user_id)

    async def is_work_phone(self, phone: str) -> bool:
        return await M.is_work_phone(self._conn, phone)

    async def next_meeting(self, user_id: int, now: datetime) -> int | None:
        return await M.next_meeting(self._conn, user_id, now)

    async def meeting_start(self, meeting_id: int) -> tuple[datetime, str, int]:
        return await M.meeting_start_in(self._conn, meeting_id)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at the SQL level, for this package, tests and benchmarks
        (the service uses `tx()`): committed when the block ends, rolled back if it raises.
        Tasks sharing the store wait for each other's transactions (not reentrant)."""
        async with self._tx_lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def release_anonymous(self, now: datetime) -> int:
        """Move what enough people answered out of the anonymous pool (one transaction that
        touches nothing about any person); returns how many rows were released."""
        async with self.transaction() as c:
            n = await release(c, self._sealer, now)
        if n:
            log.info("released %d anonymous answers", n)
        return n

    async def forget_history(self) -> bool:
        """Copy the WAL into the database and empty it, so erased data (SLETT) does not stay
        in the WAL's old frames. Never waits: while a reader (a backup, a report, an sqlite3
        shell) holds an old snapshot the checkpoint cannot finish, so it says so (False) and
        `history_pending` stays set; the pipeline and the scheduler's tick try again."""
        row = None
        async with self._tx_lock:  # never in the middle of another task's transaction
            await self._conn.execute("PRAGMA busy_timeout = 0")
            try:
                async with self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
                    row = await cur.fetchone()
            except sqlite3.OperationalError as e:  # locked: the same as busy, try later
                log.info("WAL checkpoint postponed: %s", e)
            finally:
                await self._conn.execute("PRAGMA busy_timeout = 5000")
        done = row is not None and int(row[0]) == 0
        if done:
            if self.history_pending:
                log.info("WAL checkpointed and emptied")
            self.history_pending = False
        else:
            self.history_pending = True
            log.info("WAL checkpoint postponed: a reader holds an old snapshot")
        return done

    # -- outbox ------------------------------------------------------------------------------
    async def due_outbox(self, channel: str, now: datetime, limit: int = 100) -> list[OutboxItem]:
        async with self._conn.execute(
            "SELECT id, user_id, channel, address, text, choices, numbered, tries FROM outbox "
            "WHERE status = 'pending' AND channel = ? AND due_at <= ? ORDER BY id LIMIT ?",
            (channel, iso(now), limit),
        ) as cur:
            return [outbox_item(r) for r in await cur.fetchall()]

    async def mark_sent(self, ids: Sequence[int], now: datetime,
                        provider_ids: Sequence[str | None] | None = None) -> None:
        pids = provider_ids or [None] * len(ids)
        async with self.transaction() as c:
            await c.executemany(
                "UPDATE outbox SET status = 'sent', sent_at = ?, provider_id = ?, "
                "tries = tries + 1 WHERE id = ? AND status = 'pending'",
                [(iso(now), p, i) for i, p in zip(ids, pids, strict=True)])

    # -- people and meetings (the meetings issue grows this) --------------------------------
    async def add_office(self, name: str) -> int:
        async with self.transaction() as c:
            await c.execute("INSERT OR IGNORE INTO offices (name) VALUES (?)", (name,))
            async with c.execute("SELECT id FROM offices WHERE name = ?", (name,)) as cur:
                row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def add_veileder(self, name: str, work_phone: str, office_id: int) -> int:
        async with self.transaction() as c:
            cur = await c.execute(
                "INSERT INTO veiledere (name, work_phone, office_id) VALUES (?, ?, ?)",
                (name, work_phone, office_id))
        return int(cur.lastrowid or 0)

    async def add_user(self, *, phone: str, channel: str, first_name: str | None,
                       last_name: str | None, veileder_id: int | None, now: datetime,
                       discreet: bool = False) -> int:
        async with self.transaction() as c:
            cur = await c.execute(
                "INSERT INTO users (phone, channel, first_name, last_name, veileder_id, "
                "discreet, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (phone, channel, first_name, last_name, veileder_id, int(discreet), iso(now)))
        return int(cur.lastrowid or 0)

    async def veiledere_by_phone(self, phones: Sequence[str]) -> list[tuple[int, str, str]]:
        """(id, name, work phone) of the veiledere whose work phone is among `phones`."""
        return [(int(r[0]), str(r[1]), str(r[2])) for r in await self.fetchall(
            f"SELECT id, name, work_phone FROM veiledere WHERE work_phone IN "
            f"({','.join('?' * len(phones))})", phones)]

    async def upsert_offices(self, offices: Sequence[tuple[str, str | None, str | None,
                                                           str | None]]) -> None:
        """(name, address, opening hours, backup phone), matched by name."""
        async with self.transaction() as c:
            await c.executemany(
                "INSERT INTO offices (name, address, opening_hours, backup_phone) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET address = excluded.address,"
                " opening_hours = excluded.opening_hours, backup_phone = excluded.backup_phone",
                offices)

    async def upsert_veiledere(self, veiledere: Sequence[tuple[str, str, str, str | None,
                                                               str | None, str | None]]) -> None:
        """(name, work phone, office name, working hours, away until, backup phone), matched by
        work phone."""
        async with self.transaction() as c:
            await c.executemany(
                "INSERT INTO veiledere (name, work_phone, office_id, working_hours, away_until, "
                "backup_phone) VALUES (?, ?, (SELECT id FROM offices WHERE name = ?), ?, ?, ?) "
                "ON CONFLICT (work_phone) DO UPDATE SET name = excluded.name, "
                "office_id = excluded.office_id, working_hours = excluded.working_hours, "
                "away_until = excluded.away_until, backup_phone = excluded.backup_phone",
                veiledere)

    # -- retention ---------------------------------------------------------------------------
    async def purge(self, now: datetime, keep_logs: timedelta = timedelta(days=90),
                    keep_meetings: timedelta = timedelta(days=365),
                    keep_seen: timedelta = timedelta(days=400),
                    chunk: int = PURGE_CHUNK) -> dict[str, int]:
        """Delete what is older than the welcome text promises: a person who has not used
        Veivis for 90 days (no message, no step of a conversation, no meeting in that time)
        with everything about them; message logs, sent messages and stored answers after 90
        days; meetings (and what was scheduled for them) after a year. Dedupe hashes are
        kept longer than any webhook retry or replay (400 days). Anonymous rows are not
        personal and are kept. Returns counts per table.

        In bounded transactions: each quiet person is erased in a transaction of their own,
        and old rows go `chunk` at a time, each chunk found by an index on its time column
        (migration 10) and committed before the next, so the pipeline and the senders get
        the write lock between chunks. Each transaction is whole; a crash half-way leaves the
        rest for the next run."""
        logs, meetings = iso(now - keep_logs), iso(now - keep_meetings)
        counts: dict[str, int] = {}
        quiet = [int(r[0]) for r in await self.fetchall(
            "SELECT u.id FROM users u WHERE u.created_at < ? "
            "AND NOT EXISTS (SELECT 1 FROM conversations v WHERE v.user_id = u.id "
            "AND v.updated_at >= ?) "
            "AND NOT EXISTS (SELECT 1 FROM inbound i WHERE i.user_id = u.id "
            "AND i.received_at >= ?) "
            "AND NOT EXISTS (SELECT 1 FROM meetings m WHERE m.user_id = u.id "
            "AND m.starts_at >= ?)", (logs, logs, logs, logs))]
        for uid in quiet:
            async with self.transaction() as c:
                # still quiet? (a message may have come since the list was read)
                async with c.execute(
                        "SELECT 1 FROM users u WHERE u.id = ? AND (EXISTS (SELECT 1 FROM "
                        "conversations v WHERE v.user_id = u.id AND v.updated_at >= ?) OR "
                        "EXISTS (SELECT 1 FROM inbound i WHERE i.user_id = u.id AND "
                        "i.received_at >= ?) OR EXISTS (SELECT 1 FROM meetings m WHERE "
                        "m.user_id = u.id AND m.starts_at >= ?))",
                        (uid, logs, logs, logs)) as cur:
                    if await cur.fetchone() is not None:
                        continue
                await erase_user(c, self._sealer, uid, now)
                counts["users"] = counts.get("users", 0) + 1
        counts.setdefault("users", 0)
        seen = (now - keep_seen).astimezone(UTC).date().isoformat()
        for table, where, arg in (
            ("inbound", "received_at < ?", logs),
            ("outbox", "status != 'pending' AND created_at < ?", logs),
            ("answers", "saved_at < ?", logs),
            ("scheduled", "status != 'pending' AND handled_at < ?", logs),
            ("meetings", "starts_at < ?", meetings),
            # conversations with a veileder, quiet for the whole period (events cascade)
            ("threads", "last_at < ?", logs),
            ("seen_keys", "day < ?", seen),
        ):
            key = "key" if table == "seen_keys" else "id"
            counts[table] = 0
            while True:
                async with self.transaction() as c:
                    if table == "inbound":
                        await self._keep_ids(c, logs, chunk)
                    cur2 = await c.execute(
                        f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} "
                        f"WHERE {where} LIMIT ?)", (arg, chunk))
                n = cur2.rowcount
                counts[table] += n
                if n < chunk:
                    break
        return counts

    async def _keep_ids(self, c: aiosqlite.Connection, before: str, chunk: int) -> None:
        """The provider ids of the log rows the purge's next chunk deletes (the oldest, as
        the chunk takes them) stay as keyed hashes with the day they came: a captured
        webhook replayed after 90 days is still a duplicate."""
        async with c.execute("SELECT channel, provider_id, received_at FROM inbound WHERE id IN "
                             "(SELECT id FROM inbound WHERE received_at < ? LIMIT ?)",
                             (before, chunk)) as cur:
            old = await cur.fetchall()
        await c.executemany(
            "INSERT OR IGNORE INTO seen_keys (key, day) VALUES (?, ?)",
            [(self._sealer.mac("seen", ch, pid),
              datetime.fromisoformat(at).astimezone(UTC).date().isoformat())
             for ch, pid, at in old])

    # -- raw reads: for this package, tests, benchmarks and attack tests --------------------
    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read-only SQL. Not part of the store's interface (bot.store.protocol): code outside
        bot/store never calls it."""
        return [tuple(r) for r in await self._conn.execute_fetchall(sql, params)]


def _statements(sql: str) -> list[str]:
    """Split a migration script into statements (no semicolons inside our SQL text, but
    for the ones that end the statements of a trigger's BEGIN ... END)."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    out: list[str] = []
    for part in (p.strip() for p in "\n".join(lines).split(";")):
        if out and out[-1].upper().startswith("CREATE TRIGGER") \
                and not out[-1].upper().endswith("END"):
            out[-1] += ";" + (" " + part if part else "")
        elif part:
            out.append(part)
    return out


def backup_file(source: Path, target: Path, known: int, *, still: bool = False) -> None:
    """SQLite's online backup of a database file: a consistent copy while the bot runs
    (`veivis backup`). `target` must be a new file: it is made here (0600, never through a
    symlink) and removed again if the copy fails. Raises SchemaTooNew for a database from a
    newer Veivis. `still`: the source is a file nobody writes (a backup being restored); it
    is read as it is, leaving no -wal or -shm beside it."""
    # read-write (nothing is written) so that closing the last connection tidies up the
    # -wal and -shm files; a read-only one would leave them beside a stopped database
    mode = "ro&immutable=1" if still else "rw"
    src = sqlite3.connect(f"file:{quote(str(source))}?mode={mode}", uri=True)
    try:
        found = int(src.execute("PRAGMA user_version").fetchone()[0])
        if found > known:
            raise SchemaTooNew(str(source), found, known)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        os.close(fd)
        try:
            dst = sqlite3.connect(target)
            try:
                with dst:
                    src.backup(dst)
            finally:
                dst.close()
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    finally:
        src.close()


def check_backup(path: Path, known: int) -> str | None:
    """What is wrong with a backup file before `veivis restore` puts it in place (in
    Norwegian), or None: it must exist, pass SQLite's integrity check, and have a schema
    this Veivis knows."""
    if path.is_dir():
        return "er en mappe, ikke en sikkerhetskopi"
    if not path.is_file():
        return "finnes ikke"
    # immutable: a backup nobody writes; opening it leaves no -wal or -shm beside it
    con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro&immutable=1", uri=True)
    try:
        version = int(con.execute("PRAGMA user_version").fetchone()[0])
        if version == 0:
            return "er ikke en database fra Veivis (skjemaversjon 0)"
        if version > known:
            return (f"har skjemaversjon {version}, nyere enn denne versjonen av Veivis kjenner "
                    f"({known})")
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        return None if ok == "ok" else f"er skadet ({ok})"
    finally:
        con.close()
