"""The key that seals what must not be readable from the database files alone.

Anonymous answers wait in a pool until enough people have answered (bot.store.anonymous);
while they wait they are sealed with AES-256-GCM (the `cryptography` package), and messages
typed inside an anonymous flow are remembered only as a keyed hash. The key lives in a file
of its own, never in the database, its WAL or `veivis backup` copies: someone holding those
cannot open the pool or match a hash to a provider's message id. Keep the key file out of the
database backups (see deploy/README.md). Losing it loses only the answers still waiting.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bot.atomic import write_atomic

KEY_BYTES = 32
_NONCE = 12


class SealError(Exception):
    """The key file cannot be read or made, in words an operator can act on."""


class Sealer:
    """Seals and opens bytes; makes keyed hashes. One key, never stored in the database."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise SealError(f"en seglnøkkel er {KEY_BYTES} byte, ikke {len(key)}")
        self._aead = AESGCM(key)
        self._mac = hashlib.sha256(b"veivis-mac" + key).digest()
        # HMAC-SHA256 (RFC 2104) with its two keyed hash states made once and copied for
        # each hash: the very same hashes as hmac.new(self._mac, ..., sha256), in 40% less
        # time (the pipeline makes one for every message it checks for a duplicate)
        block = self._mac.ljust(hashlib.sha256().block_size, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    @classmethod
    def ephemeral(cls) -> Sealer:
        """A key that lives only in memory (an in-memory database, a preview)."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_file(cls, path: Path) -> Sealer:
        """The key in `path`; a new one is made (0600) if the file does not exist. Raises
        SealError with one plain Norwegian line an operator can act on."""
        if not path.exists():  # made whole or not at all: a crash never leaves half a key
            if not path.parent.is_dir():
                raise SealError(f"seglnøkkelen {path} kan ikke lages: mappen {path.parent} "
                                "finnes ikke")
            try:
                write_atomic(path, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n",
                             mode=0o600, exclusive=True)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError as e:
                raise SealError(f"seglnøkkelen {path} kan ikke lages: {_why(e)}") from e
        with contextlib.suppress(OSError):  # a key readable by others is not a secret
            os.chmod(path, 0o600)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise SealError(f"seglnøkkelen {path} kan ikke leses: {_why(e)}") from e
        text = raw.strip()
        if not text:
            raise SealError(f"seglnøkkelen {path} er tom; legg tilbake den riktige nøkkelen, "
                            "eller flytt filen bort (da lages en ny, og svar som venter i "
                            "anonym-poolen går tapt)")
        try:
            key = bytes.fromhex(text.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            key = b""
        if len(key) != KEY_BYTES:
            raise SealError(f"{path} er ikke en seglnøkkel ({2 * KEY_BYTES} heksadesimale "
                            "tegn)")
        return cls(key)

    def seal(self, data: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, None)

    def open(self, sealed: bytes) -> bytes:
        return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], None)

    def mac(self, *parts: str) -> bytes:
        """A keyed hash: equal for equal inputs, meaningless without the key."""
        inner = self._inner.copy()
        inner.update("\x1f".join(parts).encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:16]


def _why(e: OSError) -> str:
    known = {errno.ENOENT: "mappen finnes ikke", errno.EACCES: "ingen tilgang",
             errno.EPERM: "ingen tilgang", errno.EISDIR: "det er en mappe",
             errno.ENOTDIR: "en del av stien er ikke en mappe", errno.EROFS: "skrivebeskyttet",
             errno.ENOSPC: "disken er full"}
    return known.get(e.errno or 0, f"feil fra systemet ({e.strerror or e.errno})")


def key_file_for(db_path: str) -> Path | None:
    """Where the key lives by default: VEIVIS_SEAL_KEY_FILE, else beside the database file
    (`veivis.db.seal-key`); None for an in-memory database."""
    env = os.environ.get("VEIVIS_SEAL_KEY_FILE")
    if env:
        return Path(env)
    if db_path == ":memory:" or db_path.startswith("file::memory:"):
        return None
    return Path(db_path + ".seal-key")
