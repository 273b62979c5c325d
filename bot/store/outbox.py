"""The outbox as the sender sees it, Telegram links and carrier stops.

A row's life: pending -> sending (claimed, just before the provider call) -> sent (the
provider's message id recorded) or back to pending with a later due time (a retry), or
failed (permanent error or too many tries). A user's rows go out in order: only the oldest
row of an address that is pending or sending (its head) may be claimed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from .db import OutboxItem, Store, outbox_item
from .sql import PHONE_CHANNELS, iso

INTERRUPTED = "interrupted while sending: it may or may not have arrived"


async def heads(store: Store, channel: str, now: datetime, limit: int = 2000) -> list[OutboxItem]:
    """The oldest unsent row of each address on this channel, where that row is due now."""
    rows = await store.fetchall(
        "SELECT o.id, o.user_id, o.channel, o.address, o.text, o.choices, o.numbered, o.tries "
        "FROM outbox o JOIN (SELECT MIN(id) AS id FROM outbox WHERE channel = ? "
        "AND status IN ('pending', 'sending') GROUP BY address) h ON h.id = o.id "
        "WHERE o.status = 'pending' AND o.due_at <= ? ORDER BY o.id LIMIT ?",
        (channel, iso(now), limit))
    return [outbox_item(r) for r in rows]


async def claim(store: Store, ids: Sequence[int]) -> list[int]:
    """Mark rows as being sent (one more try); returns the ids that were still pending."""
    got: list[int] = []
    async with store.transaction() as c:
        for i in ids:
            cur = await c.execute("UPDATE outbox SET status = 'sending', tries = tries + 1 "
                                  "WHERE id = ? AND status = 'pending'", (i,))
            if cur.rowcount:
                got.append(i)
    return got


async def record_sent(store: Store, row_id: int, provider_id: str, now: datetime) -> None:
    async with store.transaction() as c:
        await c.execute("UPDATE outbox SET status = 'sent', provider_id = ?, sent_at = ?, "
                        "last_error = NULL WHERE id = ?", (provider_id, iso(now), row_id))


async def record_retry(store: Store, row_id: int, error: str, due: datetime) -> None:
    async with store.transaction() as c:
        await c.execute("UPDATE outbox SET status = 'pending', last_error = ?, due_at = ? "
                        "WHERE id = ?", (error, iso(due), row_id))


async def record_failed(store: Store, row_id: int, error: str, code: str | None = None) -> None:
    async with store.transaction() as c:
        await c.execute("UPDATE outbox SET status = 'failed', last_error = ?, error_code = ? "
                        "WHERE id = ?", (error, code, row_id))


async def recover_channel(store: Store, channel: str) -> int:
    """At start: rows a crash left in 'sending' may have reached the provider. They are marked
    failed (visible in `veivis outbox list --failed`), never sent again: at most once."""
    async with store.transaction() as c:
        cur = await c.execute("UPDATE outbox SET status = 'failed', last_error = ? "
                              "WHERE status = 'sending' AND channel = ?", (INTERRUPTED, channel))
        return int(cur.rowcount)


# Twilio's statuses in the order a message moves through them; a late callback for an
# earlier status never overwrites a later one.
_DELIVERY_ORDER = {"accepted": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4,
                   "undelivered": 4, "failed": 4, "read": 5}


async def record_delivery(store: Store, channel: str, provider_id: str, status: str,
                          error_code: str | None) -> tuple[str, str] | None:
    """A provider's delivery report. Returns (channel, address) of the row, if known."""
    async with store.transaction() as c:
        async with c.execute("SELECT id, address, delivery FROM outbox WHERE provider_id = ? "
                             "AND channel = ?", (provider_id, channel)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        old = _DELIVERY_ORDER.get(str(row[2]), -1) if row[2] else -1
        if _DELIVERY_ORDER.get(status, 0) >= old:
            await c.execute("UPDATE outbox SET delivery = ?, error_code = COALESCE(?, "
                            "error_code) WHERE id = ?", (status, error_code, row[0]))
        return channel, str(row[1])


async def stop_address(store: Store, channel: str, address: str, reason: str) -> int:
    """The provider says this person does not want messages (carrier STOP, a blocked bot):
    the user is stopped and what is still queued for them is not sent. Returns rows dropped."""
    col = "phone" if channel in PHONE_CHANNELS else "telegram_chat_id"
    async with store.transaction() as c:
        await c.execute(f"UPDATE users SET stopped = 1 WHERE {col} = ?", (address,))
        cur = await c.execute("UPDATE outbox SET status = 'failed', last_error = ? "
                              "WHERE channel = ? AND address = ? AND status = 'pending'",
                              (reason, channel, address))
        return int(cur.rowcount)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    channel: str
    address: str
    status: str
    tries: int
    created_at: str
    last_error: str | None
    delivery: str | None


async def list_rows(store: Store, *, failed: bool = False, limit: int = 50) -> list[OutboxRow]:
    where = "WHERE status = 'failed'" if failed else ""
    rows = await store.fetchall(
        f"SELECT id, channel, address, status, tries, created_at, last_error, delivery "
        f"FROM outbox {where} ORDER BY id DESC LIMIT ?", (limit,))
    return [OutboxRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), str(r[5]),
                      r[6] if r[6] is None else str(r[6]), r[7] if r[7] is None else str(r[7]))
            for r in rows]


async def counts(store: Store) -> dict[str, int]:
    return {str(s): int(n) for s, n in await store.fetchall(
        "SELECT status, COUNT(*) FROM outbox GROUP BY status")}


# -- Telegram links ----------------------------------------------------------------------------

async def add_invite(store: Store, user_id: int, code_hash: str, now: datetime,
                     expires: datetime) -> None:
    async with store.transaction() as c:
        await c.execute("INSERT INTO invites (code_hash, user_id, created_at, expires_at) "
                        "VALUES (?, ?, ?, ?)", (code_hash, user_id, iso(now), iso(expires)))


async def use_invite(store: Store, code_hash: str, chat_id: str,
                     now: datetime) -> tuple[int, bool] | None:
    """Link the chat to the invited user if the code is unused and not expired; the code is
    spent either way it is used. Returns (user id, has consented) or None."""
    async with store.transaction() as c:
        async with c.execute("SELECT user_id FROM invites WHERE code_hash = ? AND used_at IS NULL "
                             "AND expires_at > ?", (code_hash, iso(now))) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        uid = int(row[0])
        await c.execute("UPDATE invites SET used_at = ? WHERE code_hash = ?",
                        (iso(now), code_hash))
        # a chat belongs to one user: a chat linked before moves to this one
        await c.execute("UPDATE users SET telegram_chat_id = NULL, channel = 'sms' "
                        "WHERE telegram_chat_id = ? AND id != ?", (chat_id, uid))
        await c.execute("UPDATE users SET telegram_chat_id = ?, channel = 'telegram' "
                        "WHERE id = ?", (chat_id, uid))
        async with c.execute("SELECT consent FROM users WHERE id = ?", (uid,)) as cur:
            consent = await cur.fetchone()
    return uid, bool(consent and consent[0])


async def telegram_user(store: Store, chat_id: str) -> int | None:
    rows = await store.fetchall("SELECT id FROM users WHERE telegram_chat_id = ?", (chat_id,))
    return int(rows[0][0]) if rows else None
