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
import hashlib
import hmac
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
            raise SealError(f"the seal key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)
        self._mac = hashlib.sha256(b"veivis-mac" + key).digest()

    @classmethod
    def ephemeral(cls) -> Sealer:
        """A key that lives only in memory (an in-memory database, a preview)."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_file(cls, path: Path) -> Sealer:
        """The key in `path`; a new one is made (0600) if the file does not exist."""
        if not path.exists():  # made whole or not at all: a crash never leaves half a key
            try:
                write_atomic(path, secrets.token_bytes(KEY_BYTES).hex().encode() + b"\n",
                             mode=0o600, exclusive=True)
            except FileExistsError:
                pass  # another process made it first: use theirs
            except OSError as e:
                raise SealError(f"{path}: cannot create the seal key file: {e.strerror}") from e
        with contextlib.suppress(PermissionError):  # a key readable by others is not a secret
            os.chmod(path, 0o600)
        try:
            text = path.read_text(encoding="ascii").strip()
            return cls(bytes.fromhex(text))
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise SealError(f"{path}: not a seal key (64 hex characters expected)") from e

    def seal(self, data: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, None)

    def open(self, sealed: bytes) -> bytes:
        return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], None)

    def mac(self, *parts: str) -> bytes:
        """A keyed hash: equal for equal inputs, meaningless without the key."""
        return hmac.new(self._mac, "\x1f".join(parts).encode(), hashlib.sha256).digest()[:16]


def key_file_for(db_path: str) -> Path | None:
    """Where the key lives by default: VEIVIS_SEAL_KEY_FILE, else beside the database file
    (`veivis.db.seal-key`); None for an in-memory database."""
    env = os.environ.get("VEIVIS_SEAL_KEY_FILE")
    if env:
        return Path(env)
    if db_path == ":memory:" or db_path.startswith("file::memory:"):
        return None
    return Path(db_path + ".seal-key")
