"""Writing a file so that a crash leaves the old file or the new one, never half of one.

Used for every file Veivis writes that people or the service depend on: the coordinators'
`veivis.yaml` (written by `veivis veileder add|away`) and the seal key. A temporary file in the
same folder is written and fsynced, then renamed over the target (an atomic step on POSIX),
then the folder is fsynced so the rename survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path


def write_atomic(path: str | Path, data: bytes, *, mode: int | None = None,
                 exclusive: bool = False) -> None:
    """Replace `path` with `data` in one step. `mode`: the new file's permissions (default:
    those of the file it replaces without the bits for everyone else, or 0600 for a new
    file). `exclusive`: raise FileExistsError instead of replacing a file that exists."""
    p = Path(path)
    if mode is None:
        try:
            mode = stat.S_IMODE(p.stat().st_mode) & 0o770 or 0o600
        except FileNotFoundError:
            mode = 0o600
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            os.link(tmp, p)  # fails if the target exists, like O_EXCL
            os.unlink(tmp)
        else:
            os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _sync_folder(p.parent)


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
