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
    `fsync=False` (tests): commits are not flushed to disk, as nothing must outlive the run."""
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
            f"-c full_page_writes={'on' if fsync else 'off'}")
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
