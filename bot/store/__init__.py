"""Storage: the only package that writes SQL (aiosqlite, WAL, versioned migrations)."""

from .anonymous import AnonymousRow, iso_week, write_anonymous
from .db import Batch, Changes, OutboxItem, OutRow, Store, UserContext, UserRow

__all__ = [
    "AnonymousRow", "Batch", "Changes", "OutRow", "OutboxItem", "Store", "UserContext",
    "UserRow", "iso_week", "write_anonymous",
]
