"""Storage: the only package that writes SQL (SQLite by default; PostgreSQL for several
instances on one database), with versioned migrations."""

from .anonymous import AnonymousRow, iso_week, write_anonymous
from .db import Batch, Changes, OutRow, Store, UserContext, UserRow
from .outbox import OutboxItem
from .pg import PgStore, open_store

__all__ = [
    "AnonymousRow", "Batch", "Changes", "OutRow", "OutboxItem", "PgStore", "Store",
    "UserContext", "UserRow", "iso_week", "open_store", "write_anonymous",
]
