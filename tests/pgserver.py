"""A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` in a temporary folder,
`pg_ctl` on a free port, listening on 127.0.0.1 only, trust authentication (nothing but this
machine's loopback can reach it), stopped and deleted afterwards.

It needs Debian's `postgresql` package (or any PostgreSQL whose `initdb` is on PATH or under
/usr/lib/postgresql/*/bin). Run as root, the server runs as the `postgres` user (PostgreSQL
refuses to run as root). `.ci/run` installs the package; without it the PostgreSQL tests skip
with a message, unless VEIVIS_REQUIRE_POSTGRES=1 (CI), where they fail instead.
`VEIVIS_TEST_POSTGRES=postgresql://user@host:port` uses a server you already run instead
(each test makes a database of its own on it). VEIVIS_SKIP_POSTGRES=1 skips them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from itertools import count
from pathlib import Path

REQUIRE = os.environ.get("VEIVIS_REQUIRE_POSTGRES") == "1"
# the coordinators' guide test runs the suite again in a clone: once is enough for these
SKIP = os.environ.get("VEIVIS_SKIP_POSTGRES") == "1" and not REQUIRE
_names = count(1)


def bin_dir() -> Path | None:
    """Where initdb and pg_ctl are, or None if PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                  key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0)
    return Path(dirs[-1]) if dirs and (Path(dirs[-1]) / "initdb").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@contextlib.contextmanager
def cluster(*, fsync: bool = False) -> Iterator[str]:
    """Start a cluster; yields its URL without a database name (postgresql://postgres@...).
    `fsync=False` (tests): commits are not flushed to disk, as nothing must outlive the run.
    Full-page writes stay on, as in production: the WAL an attacker reads in
    tests/test_relink.py holds whole pages, as a real one does."""
    given = os.environ.get("VEIVIS_TEST_POSTGRES")
    if given:
        yield given.rstrip("/")
        return
    bins = bin_dir()
    if bins is None:
        raise FileNotFoundError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="veivis-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    subprocess.run(_as_owner([str(bins / "initdb"), "-D", str(data), "-U", "postgres",
                              "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    opts = (f"-h 127.0.0.1 -p {port} -k {root} -c max_connections=200 "
            f"-c fsync={'on' if fsync else 'off'} -c synchronous_commit=off "
            "-c full_page_writes=on -c wal_keep_size=64MB")
    subprocess.run(_as_owner([str(bins / "pg_ctl"), "-D", str(data), "-l", str(root / "log"),
                              "-o", opts, "-w", "start"]),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(_as_owner([str(bins / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                  "stop"]), check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)


def new_database(base: str) -> str:
    """A new, empty database on the cluster; returns its URL."""
    import psycopg

    name = f"veivis_{os.getpid()}_{next(_names)}"
    with psycopg.connect(base + "/postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


# -- what an attacker holding the cluster's data directory reads --------------------------
# The test cluster is the attacker's copy: its table files and WAL segments, read byte for
# byte through the server (pg_read_binary_file, as the superuser the tests connect as), so
# the same code reads a cluster given by VEIVIS_TEST_POSTGRES.

def database_files(url: str) -> bytes:
    """Every file of this database under the data directory's base/ (tables, indexes, TOAST,
    the catalog with pg_statistic), after a CHECKPOINT has written every page to disk."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CHECKPOINT")
        folder = c.execute("SELECT 'base/' || oid FROM pg_database "
                           "WHERE datname = current_database()").fetchone()
        assert folder is not None
        out = []
        for (name,) in c.execute("SELECT pg_ls_dir(%s)", (folder[0],)).fetchall():
            if name[:1].isdigit():
                row = c.execute("SELECT pg_read_binary_file(%s)",
                                (f"{folder[0]}/{name}",)).fetchone()
                out.append(bytes(row[0]) if row else b"")
        return b"".join(out)


def relation_file(url: str, table: str) -> bytes:
    """One table's main file (pg_relation_filepath), after a CHECKPOINT."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CHECKPOINT")
        row = c.execute("SELECT pg_read_binary_file(pg_relation_filepath(%s))",
                        (table,)).fetchone()
        return bytes(row[0]) if row else b""


def wal_position(url: str) -> int:
    """Where the next WAL record goes (a record boundary)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT pg_current_wal_insert_lsn() - '0/0'").fetchone()
        return int(row[0]) if row else 0


_PAGE = 8192


def wal_since(url: str, start: int) -> list[tuple[int, bytes]]:
    """The WAL records written since `start` (wal_position), each as (transaction id, the
    record's bytes), read from the segment files in pg_wal/ as an attacker holding them
    would; the records are split at page boundaries, so the page headers are taken out."""
    import psycopg

    # a synchronous commit that wrote something writes out every WAL record before it (in
    # the cluster's own database, so the tested one's files stay as the test left them)
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
        c.execute("SET synchronous_commit = on")
        c.execute("CREATE TABLE IF NOT EXISTS wal_written (at timestamptz)")
        c.execute("INSERT INTO wal_written VALUES (now())")
    with psycopg.connect(url, autocommit=True) as c:
        row = c.execute("SELECT setting::bigint, pg_current_wal_flush_lsn() - '0/0' "
                        "FROM pg_settings WHERE name = 'wal_segment_size'").fetchone()
        assert row is not None
        seg, end = int(row[0]), int(row[1])  # bytes (PostgreSQL 11 and later)
        first = start - start % _PAGE  # the page the first record begins on
        raw = b""
        while first + len(raw) < end:  # each segment file from where it is needed
            at = first + len(raw)
            upto = min(at - at % seg + seg, end - end % _PAGE + _PAGE)
            name = c.execute("SELECT pg_walfile_name(%s::pg_lsn)",  # (a boundary names the
                             (f"{(at + 1) >> 32:X}/{(at + 1) & 0xFFFFFFFF:X}",)  # one before)
                             ).fetchone()
            assert name is not None
            row = c.execute("SELECT pg_read_binary_file(%s, %s, %s)",
                            (f"pg_wal/{name[0]}", at % seg, upto - at)).fetchone()
            raw += bytes(row[0]) if row else b""
    # the record stream without page headers (long at a segment's start, short elsewhere)
    stream, here, stop = bytearray(), 0, 0
    for off in range(0, len(raw), _PAGE):
        header = 40 if (first + off) % seg == 0 else 24
        for lsn in (start, end):
            if first + off <= lsn < first + off + _PAGE:
                at = len(stream) + max(0, lsn - first - off - header)
                here, stop = (at, stop) if lsn == start else (here, at)
        stream += raw[off + header:off + _PAGE]
    stop = stop or len(stream)  # the end fell on a segment's end
    records: list[tuple[int, bytes]] = []
    while here + 24 <= stop:
        total = int.from_bytes(stream[here:here + 4], "little")
        if total < 24:
            break
        xid = int.from_bytes(stream[here + 4:here + 8], "little")
        records.append((xid, bytes(stream[here:here + total])))
        here += (total + 7) // 8 * 8
    return records


def pg_dump(url: str, target: Path) -> str:
    """`pg_dump` of the database, as an operator's backup; returns its text."""
    bins = bin_dir()
    exe = str(bins / "pg_dump") if bins else shutil.which("pg_dump")
    if exe is None:
        raise FileNotFoundError("pg_dump is not installed")
    subprocess.run([exe, "--no-owner", "-f", str(target), url], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return target.read_text(encoding="utf-8")


def dumped_rows(dump: str) -> dict[str, set[str]]:
    """The rows of every table in a plain pg_dump, as its COPY lines."""
    out: dict[str, set[str]] = {}
    table: str | None = None
    for line in dump.splitlines():
        if table is None and line.startswith("COPY "):
            table = line.split()[1].removeprefix("public.")
            out[table] = set()
        elif table is not None:
            if line == "\\.":
                table = None
            else:
                out[table].add(line)
    return out
