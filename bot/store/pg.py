"""The PostgreSQL store (psycopg 3, async): the same interface as the SQLite one, for several
`veivis run` instances on one database.

One source of truth for the SQL: the store's modules write SQLite-flavoured SQL (`?`
placeholders, `INSERT OR IGNORE`), and `PgConn` translates each statement once (cached) for
PostgreSQL; `pg_statements` translates the migrations (identity columns, BIGINT, BYTEA, the
trigger as a function). Times stay ISO text in UTC, as in SQLite, so they sort and compare
the same way and `veivis migrate-to` copies them as they are.

How several instances share one database:
- Every write transaction of the service (a pipeline batch, a veileder's command, a
  meeting change, the purge...) first takes one advisory lock (`pg_advisory_xact_lock`), so
  they run one at a time across all instances, exactly as SQLite's BEGIN IMMEDIATE runs them
  in one process. A person's messages are therefore handled in commit order whichever
  instance received them, and every read-then-write of the store stays correct unchanged.
- The sender's own small writes (claiming a row, recording the provider's answer) do not
  take that lock: each is one row, claimed with `FOR UPDATE SKIP LOCKED`, so two instances
  never claim the same row and senders do not wait for the pipeline.
- A row an instance claimed and never settled (it died mid-send) is taken over by any
  instance once the claim is older than the lease (`Sender.lease`); with Twilio it is looked
  up at the provider before anything is sent again.
- Jobs that must run once (the scheduler's tick, the purge, the digest) run under
  `pg_try_advisory_xact_lock`: an instance that does not get the lock skips that run.
- A commit that queued outgoing messages sends `NOTIFY veivis_outbox`; every instance
  LISTENs and wakes its senders (they still look every `poll` seconds as a safety net).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import secrets
import socket
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiosqlite
import psycopg

from .db import Batch, Store, _statements
from .migrations import MIGRATIONS, SchemaTooNew
from .seal import Sealer, SealError, key_file_for
from .sql import Step, iso, run_steps

log = logging.getLogger(__name__)
# as for aiosqlite (db.py): whatever level the app logs at, no statement with its parameters
logging.getLogger("psycopg").setLevel(logging.WARNING)

WRITE_LOCK = 0x7665_6976  # the one advisory lock every write transaction takes ("veiv")
MIGRATE_LOCK = WRITE_LOCK + 1
CHANNEL = "veivis_outbox"
# The tables that hold a person (SLETT and the retention purge delete from them, with what
# cascades; rows change while a person uses the service). PostgreSQL leaves a deleted or
# replaced row's bytes in the table and index files: VACUUM marks the space free but does
# not overwrite it (measured: a page's newest rows, and a row's old versions, stay readable
# there after VACUUM). So after SLETT and the purge these tables are rewritten (VACUUM FULL:
# new files, the old ones removed), and ANALYZE never samples their text into pg_statistic.
PERSONAL = ("users", "conversations", "answers", "meetings", "scheduled", "threads",
            "thread_events", "invites", "inbound", "outbox")
_PERSONAL_UPPER = {t.upper() for t in PERSONAL}
REWRITE_LOCK_TIMEOUT = "200ms"  # the longest the rewrite waits for a table (others queue)
# tables whose `id` is an identity column: an INSERT into one returns the new id
_ID_TABLES = {"offices", "veiledere", "users", "meetings", "inbound", "outbox", "answers",
              "anonymous_answers", "anonymous_pool", "scheduled", "threads", "thread_events"}


def is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> tuple[str, bool]:
    """A statement in the store's SQL for PostgreSQL; True if it returns the new row's id."""
    q = sql.replace("%", "%%").replace("?", "%s")
    ignore = re.match(r"\s*INSERT\s+OR\s+IGNORE\s+INTO\b", q, re.I)
    if ignore:
        q = "INSERT INTO" + q[ignore.end():] + " ON CONFLICT DO NOTHING"
    m = re.match(r"\s*INSERT\s+INTO\s+(\w+)", q, re.I)
    if m and m.group(1).lower() in _ID_TABLES and "RETURNING" not in q.upper() \
            and "SELECT" not in q.upper():
        return q + " RETURNING id", True
    return q, False


def _param(v: Any) -> Any:
    return int(v) if isinstance(v, bool) else v  # flags are INTEGER 0/1, as in SQLite


class PgCursor:
    """What the store's modules use of a cursor: fetchone/fetchall, rowcount, lastrowid."""

    def __init__(self, cur: psycopg.AsyncCursor[Any], lastrowid: int | None) -> None:
        self._cur = cur
        self.lastrowid = lastrowid
        self.rowcount = cur.rowcount
        self.description = cur.description

    async def fetchone(self) -> Any:
        return await self._cur.fetchone()

    async def fetchall(self) -> list[Any]:
        return await self._cur.fetchall()


class _Result:
    """`await conn.execute(...)` or `async with conn.execute(...) as cur`, as in aiosqlite."""

    def __init__(self, run: Any) -> None:
        self._run = run
        self._cur: PgCursor | None = None

    def __await__(self) -> Any:
        return self._run.__await__()

    async def __aenter__(self) -> PgCursor:
        self._cur = cast(PgCursor, await self._run)
        return self._cur

    async def __aexit__(self, *exc: object) -> None:
        return None


class PgConn:
    """A psycopg connection seen through the part of aiosqlite's interface that the store's
    modules use (execute, execute_fetchall, executemany), translating their SQL."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.raw = conn
        self.queued = False  # an outbox row was written in the open transaction
        self.deleted = False  # a row of a PERSONAL table was deleted in it

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Result:
        return _Result(self._execute(sql, params))

    async def _execute(self, sql: str, params: Sequence[Any]) -> PgCursor:
        q, returning = translate(sql)
        cur = self.raw.cursor()
        await cur.execute(cast(Any, q), [_param(p) for p in params])
        rowid = None
        if returning:
            row = await cur.fetchone()
            rowid = int(row[0]) if row else None
        self._note(q)
        return PgCursor(cur, rowid)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await (await self._execute(sql, params)).fetchall()

    async def executemany(self, sql: str, seq: Any) -> None:
        rows = [[_param(p) for p in r] for r in seq]
        if not rows:
            return
        q, returning = translate(sql)
        if returning:
            q = q[:-len(" RETURNING id")]
        async with self.raw.cursor() as cur:
            await cur.executemany(cast(Any, q), rows)
        self._note(q)

    async def run_steps(self, steps: Sequence[Step]) -> list[Any]:
        """`sql.run_steps`: each statement in turn."""
        out: list[Any] = []
        for sql, params, many in steps:
            if many:
                await self.executemany(sql, params)
                out.append(None)
            else:
                out.append(await self.execute_fetchall(sql, params))
        return out

    def _note(self, q: str) -> None:
        head = q.lstrip()[:40].upper()
        if not self.queued and head.startswith("INSERT INTO OUTBOX"):
            self.queued = True
        elif not self.deleted and head.startswith("DELETE FROM "):
            self.deleted = head[12:].split(None, 1)[0] in _PERSONAL_UPPER


def _as_sqlite(conn: PgConn) -> aiosqlite.Connection:
    """The store's modules are typed for aiosqlite; PgConn has the part of it they use."""
    return cast(aiosqlite.Connection, conn)


_TRIGGER = re.compile(r"CREATE TRIGGER (\w+) (AFTER|BEFORE) (.+?) ON (\w+)\s+WHEN (.+?)\s+"
                      r"BEGIN (.+?);\s*END$", re.S | re.I)


def pg_statements(sql: str) -> list[str]:
    """One migration, written for SQLite, as PostgreSQL statements."""
    out: list[str] = []
    for stmt in _statements(sql):
        t = _TRIGGER.match(stmt)
        if t:
            name, when, event, table, cond, body = t.groups()
            out.append(f"CREATE FUNCTION {name}_fn() RETURNS trigger LANGUAGE plpgsql AS $$ "
                       f"BEGIN {body}; RETURN NULL; END $$")
            out.append(f"CREATE TRIGGER {name} {when} {event} ON {table} FOR EACH ROW "
                       f"WHEN ({cond}) EXECUTE FUNCTION {name}_fn()")
            continue
        s = re.sub(r"\bid INTEGER PRIMARY KEY( AUTOINCREMENT)?",
                   "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", stmt)
        s = re.sub(r"\bINTEGER\b", "BIGINT", s)
        s = re.sub(r"\bBLOB\b", "BYTEA", s)
        s = re.sub(r"\bREAL\b", "DOUBLE PRECISION", s)
        s = re.sub(r"\)\s*WITHOUT ROWID\s*$", ")", s)
        s = re.sub(r"\bINSERT\s+OR\s+IGNORE\s+INTO\b(.*)$", r"INSERT INTO\1 ON CONFLICT DO NOTHING",
                   s, flags=re.S | re.I)
        out.append(s)
    return out


def _lock_key(name: str) -> int:
    return WRITE_LOCK + 16 + zlib.crc32(name.encode())


class PgStore(Store):
    """An open PostgreSQL database. `await PgStore.open(url)`; `close()` when done."""

    def __init__(self, conns: dict[str, psycopg.AsyncConnection[Any]], url: str,
                 sealer: Sealer) -> None:
        self._pg = conns
        self._w = PgConn(conns["write"])
        super().__init__(_as_sqlite(PgConn(conns["read"])), url, sealer)
        self._o = PgConn(conns["outbox"])
        self._o_lock = asyncio.Lock()
        self._job_locks: dict[str, asyncio.Lock] = {}
        self._listener: asyncio.Task[None] | None = None
        self.shared = True
        self.instance = ""
        # the server's time after the latest erasure: transactions older than it may still
        # see erased rows (None: take it at the next rewrite)
        self._erased_at: datetime | None = None

    @classmethod
    async def open(cls, path: Any, sealer: Sealer | None = None) -> PgStore:
        """Connect (and migrate). Every instance must use the same seal key: without
        `sealer`, the key file VEIVIS_SEAL_KEY_FILE names."""
        url = str(path)
        if sealer is None:
            key_file = os.environ.get("VEIVIS_SEAL_KEY_FILE")
            if not key_file:
                raise SealError("VEIVIS_SEAL_KEY_FILE must name the seal key file when the "
                                "database is PostgreSQL (every instance needs the same key)")
            sealer = Sealer.from_file(Path(key_file))
        # this instance's name on the server: every connection carries it, so the others can
        # see whether it is still there (pg_stat_activity)
        instance = f"{socket.gethostname()[:30]}-{os.getpid()}-{secrets.token_hex(3)}"
        conns: dict[str, psycopg.AsyncConnection[Any]] = {}
        try:
            for name in ("write", "read", "outbox"):
                conns[name] = await psycopg.AsyncConnection.connect(
                    url, autocommit=True, application_name=f"veivis-{instance}")
        except BaseException:
            for c in conns.values():
                await c.close()
            raise
        store = cls(conns, url, sealer)
        store.instance = instance
        try:
            await store.migrate()
            await store.check_seal_key()  # every instance must hold the same key
        except BaseException:
            await store.close()
            raise
        return store

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        for c in self._pg.values():
            with contextlib.suppress(Exception):
                await c.close()

    async def schema_version(self) -> int:
        rows = await self.fetchall("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        return int(rows[0][0])

    async def migrate(self) -> None:
        """The same migrations as SQLite's, translated; one instance at a time (the others
        wait for it and then find nothing to do)."""
        w = self._pg["write"]
        async with w.transaction():
            await w.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            await w.execute("CREATE TABLE IF NOT EXISTS schema_version "
                            "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
            cur = await w.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            row = await cur.fetchone()
            current = int(row[0]) if row else 0
            if current > len(MIGRATIONS):  # a newer Veivis made it: never run on it
                raise SchemaTooNew(self.path.rpartition("@")[2], current, len(MIGRATIONS))
            self.created = current == 0
            for version, sql in enumerate(MIGRATIONS, start=1):
                if version <= current:
                    continue
                for stmt in pg_statements(sql):
                    await w.execute(cast(Any, stmt))
                await w.execute("INSERT INTO schema_version (version, applied_at) "
                                "VALUES (%s, %s)", (version, iso(datetime.now().astimezone())))
                log.info("database migrated to version %d", version)
            # ANALYZE (autovacuum) would copy sampled values of these columns (phone numbers,
            # names, what was written) into pg_statistic, where SLETT cannot reach them
            cur = await w.execute(
                "SELECT c.relname, a.attname FROM pg_attribute a JOIN pg_class c ON "
                "c.oid = a.attrelid WHERE c.relnamespace = current_schema()::regnamespace "
                "AND c.relname = ANY(%s) AND a.attnum > 0 AND NOT a.attisdropped AND "
                "a.atttypid IN ('text'::regtype, 'bytea'::regtype) AND "
                "COALESCE(a.attstattarget, -1) <> 0", (list(PERSONAL),))
            for table, column in await cur.fetchall():
                await w.execute(cast(Any, f'ALTER TABLE {table} ALTER COLUMN "{column}" '
                                          "SET STATISTICS 0"))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, one at a time across every instance (the write lock)."""
        async with self._tx_lock:
            w = self._w
            w.queued = w.deleted = False
            async with w.raw.transaction():
                await w.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
                yield _as_sqlite(w)
                if w.queued:
                    await w.raw.execute(f"NOTIFY {CHANNEL}")
            if w.deleted:  # the next rewrite waits for transactions older than this one
                self._erased_at = None

    @asynccontextmanager
    async def batch(self, now: datetime) -> AsyncIterator[Batch]:
        """One pipeline batch in one write transaction; its last writes before the commit."""
        async with self.transaction() as c:
            b = Batch(c, now, self._sealer)
            yield b
            await run_steps(c, b.last)

    @asynccontextmanager
    async def outbox_transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """The sender's small writes: row locks only, not the write lock."""
        async with self._o_lock, self._o.raw.transaction():
            yield _as_sqlite(self._o)

    @asynccontextmanager
    async def job_lock(self, name: str) -> AsyncIterator[bool]:
        """True if this instance is the one to run job `name` now (held until the block
        ends, or until this instance's sessions end). Each job has a session of its own, so
        one job never waits for another."""
        lock = self._job_locks.setdefault(name, asyncio.Lock())
        async with lock:
            j = self._pg.get(f"job:{name}")
            if j is None:
                j = self._pg[f"job:{name}"] = await psycopg.AsyncConnection.connect(
                    self.path, autocommit=True, application_name=f"veivis-{self.instance}")
            async with j.transaction():
                cur = await j.execute("SELECT pg_try_advisory_xact_lock(%s)", (_lock_key(name),))
                row = await cur.fetchone()
                yield bool(row and row[0])

    async def watch_outbox(self, wake: Callable[[], None]) -> None:
        """Call `wake` whenever any instance commits outgoing messages."""
        if self._listener is not None:
            return
        conn = await psycopg.AsyncConnection.connect(self.path, autocommit=True,
                                                     application_name=f"veivis-{self.instance}")
        self._pg["listen"] = conn
        await conn.execute(f"LISTEN {CHANNEL}")

        async def listen() -> None:
            try:
                async for _n in conn.notifies():
                    wake()
            except psycopg.OperationalError as e:  # the server went away: senders still poll
                log.warning("LISTEN connection lost (%s); senders fall back to polling",
                            type(e).__name__)
        self._listener = asyncio.create_task(listen(), name="veivis-listen")

    async def forget_history(self) -> bool:
        """After SLETT or the purge: rewrite the tables that held the person (`PERSONAL`), so
        the deleted rows leave the table and index files. Never waits long: a transaction
        that began before the erasure (it may still read the rows, so a rewrite now would
        copy them) or a lock held on one of the tables for longer than
        REWRITE_LOCK_TIMEOUT postpones it (False, `history_pending`; the pipeline and the
        scheduler's tick try again). The WAL is PostgreSQL's: see deploy/README.md."""
        async with self._tx_lock:  # never in the middle of this store's own transaction
            w = self._pg["write"]
            if self._erased_at is None:
                row = await (await w.execute("SELECT now()")).fetchone()
                self._erased_at = row[0] if row else datetime.now().astimezone()
            cur = await w.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_xmin IS NOT NULL AND "
                "COALESCE(xact_start, backend_start) <= %s", (self._erased_at,))
            row = await cur.fetchone()
            done = not (row and row[0])
            if done:
                try:
                    await w.execute(cast(Any, f"SET lock_timeout = '{REWRITE_LOCK_TIMEOUT}'"))
                    await w.execute(cast(Any, f"VACUUM (FULL) {', '.join(PERSONAL)}"))
                except psycopg.errors.LockNotAvailable:
                    done = False
                finally:
                    await w.execute("RESET lock_timeout")
        if done:
            if self.history_pending:
                log.info("erased rows rewritten out of the table files")
            self._erased_at = None
        else:
            log.info("rewrite after erasure postponed: an older transaction or a lock")
        self.history_pending = not done
        return done

    async def claim_outbox(self, row_id: int, now: datetime) -> bool:
        """As on SQLite, and the row names this instance; a row another instance is
        claiming at this moment is skipped, not waited for."""
        async with self.outbox_transaction() as c:
            cur = await c.execute(
                "UPDATE outbox SET status = 'sending', tries = tries + 1, attempt_at = ?, "
                "claimed_by = ? WHERE id = (SELECT id FROM outbox WHERE id = ? "
                "AND status = 'pending' FOR UPDATE SKIP LOCKED)",
                (iso(now), self.instance, row_id))
            return bool(cur.rowcount)

    async def rate_slot(self, channel: str, interval: float) -> float:
        """Take the next send slot of this channel, `interval` seconds after the one before
        (or now, if that is past), for every instance together; returns the seconds to wait
        for it. The server's clock, so the instances' clocks need not agree."""
        o = self._pg["outbox"]
        async with self._o_lock:
            cur = await o.execute(
                "INSERT INTO rate_slots AS r (channel, next_at) VALUES "
                "(%s, extract(epoch FROM clock_timestamp()) + %s) ON CONFLICT (channel) DO "
                "UPDATE SET next_at = GREATEST(r.next_at, extract(epoch FROM clock_timestamp()))"
                " + %s RETURNING next_at - %s - extract(epoch FROM clock_timestamp())",
                (channel, interval, interval, interval))
            row = await cur.fetchone()
        return max(0.0, float(row[0])) if row else 0.0

    async def rate_late(self, channel: str, seconds: float) -> None:
        """A start came `seconds` after its slot: the slots not yet taken move by as much."""
        async with self._o_lock:
            await self._pg["outbox"].execute(
                "UPDATE rate_slots SET next_at = next_at + %s WHERE channel = %s",
                (seconds, channel))

    async def recover_outbox(self, channel: str, now: datetime, *, ask_after: float | None,
                             lease: timedelta, at_start: bool) -> int:
        """Rows left 'sending' by an instance that is gone: at once when it has no session
        on the server any more (a killed process's connections close with it), else when the
        claim is older than `lease` (a machine that vanished without closing them). At this
        store's sender start, its own earlier claims on the channel count as gone too."""
        gone = ("(claimed_by IS NULL OR claimed_by NOT IN (SELECT substr(application_name, 8) "
                "FROM pg_stat_activity WHERE application_name LIKE 'veivis-%')"
                + (" OR claimed_by = ?" if at_start else "") + ")")
        return await self.take_over(channel, now, ask_after=ask_after, before=now - lease,
                                    skip_locked=True, gone=gone,
                                    gone_args=(self.instance,) if at_start else ())

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._conn.execute(sql, params) as cur:
            return [tuple(r) for r in await cur.fetchall()]


async def open_store(target: str | Any, sealer: Sealer | None = None) -> Store:
    """The store a setting names: a postgresql:// URL, else an SQLite file (or :memory:)."""
    t = str(target)
    if is_url(t):
        return await PgStore.open(t, sealer)
    if t.startswith("sqlite:"):
        t = t.removeprefix("sqlite:").removeprefix("//")
    return await Store.open(t, sealer)


async def copy_sqlite(source: str, url: str) -> dict[str, int]:
    """Copy an SQLite database into an empty PostgreSQL database (`veivis migrate-to`): every
    table, row for row (sealed pool rows and keyed hashes byte for byte, times as the same
    text), parents before children, then each identity sequence set past the largest id
    (for users, past the largest id ever given, so an erased person's id is never reused).
    One transaction: on any error nothing is left half-copied. Returns rows per table.

    The seal key stays the same file: the PostgreSQL instances must use it
    (VEIVIS_SEAL_KEY_FILE), or the pool and the dedupe hashes become unreadable."""
    key_file = key_file_for(source)
    if key_file is None:
        raise ValueError("an in-memory database cannot be copied")
    sealer = Sealer.from_file(key_file)
    src = await Store.open(source, sealer)
    try:
        dst = await PgStore.open(url, sealer)
    except BaseException:
        await src.close()
        raise
    try:
        for table in ("users", "outbox", "anonymous_pool", "anonymous_answers"):
            if (await dst.fetchall(f"SELECT COUNT(*) FROM {table}"))[0][0]:
                raise ValueError(f"{url.split('@')[-1]}: databasen er ikke tom ({table} har "
                                 f"rader); kopier bare til en ny, tom database")
        tables = [str(r[0]) for r in await src.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        parents = {t: {str(r[2]) for r in await src.fetchall(
            f"SELECT * FROM pragma_foreign_key_list('{t}')")} - {t} for t in tables}
        order: list[str] = []
        while len(order) < len(tables):
            ready = [t for t in tables if t not in order and parents[t] <= set(order)]
            if not ready:
                raise ValueError(f"circular references among {sorted(set(tables) - set(order))}")
            order.extend(ready)
        seq = dict(await src.fetchall("SELECT name, seq FROM sqlite_sequence")) \
            if "sqlite_sequence" in [str(r[0]) for r in await src.fetchall(
                "SELECT name FROM sqlite_master")] else {}
        counts: dict[str, int] = {}
        async with dst.transaction() as c:
            # opening it recorded the key's check (the same key as the source's): the source's
            # own row is copied in its place
            await c.execute("DELETE FROM seal_check")
            for t in order:
                cols = [str(r[1]) for r in await src.fetchall(
                    f"SELECT * FROM pragma_table_info('{t}')")]
                rows = await src.fetchall(f"SELECT {', '.join(cols)} FROM {t}")
                if rows:
                    await c.executemany(
                        f"INSERT INTO {t} ({', '.join(cols)}) "
                        f"VALUES ({', '.join('?' * len(cols))})", rows)
                counts[t] = len(rows)
                if t in _ID_TABLES:
                    top = max([int(r[0]) for r in await src.fetchall(
                        f"SELECT COALESCE(MAX(id), 0) FROM {t}")] + [int(seq.get(t, 0))])
                    if top > 0:
                        await c.execute(f"SELECT setval(pg_get_serial_sequence('{t}', 'id'), ?)",
                                        (top,))
        return counts
    finally:
        await dst.close()
        await src.close()
