"""The outbox as the sender sees it, Telegram links and carrier stops.

A row's life:

    pending --claim--> sending --> sent            (the provider's message id recorded)
                          |------> pending         (certainly not accepted: retry later)
                          |------> failed          (a permanent error, or too many tries)
                          '------> unsure          (no answer: it may have been accepted)
    unsure --the provider has it--> sent;  --has none--> pending (sent again)

A row is claimed ('sending', `attempt_at` set, one more try) only when it is handed to the
provider, after its rate slot, so a crash can leave in doubt only the requests really in
flight. After a crash, rows left 'sending' are in doubt too. A user's rows go out in order:
only the oldest row of an address that is pending, sending or unsure (its head) may move.

These are methods of the store (`Outbox`, a mixin of both backends; on the interface in
bot.store.protocol): the sender and the channels never see SQL.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosqlite

from .sql import PHONE_CHANNELS, iso

PENDING, SENDING, UNSURE, SENT, FAILED = "pending", "sending", "unsure", "sent", "failed"
INTERRUPTED = "interrupted while sending"
RESENT = "interrupted while sending; sent again (it may arrive twice)"


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    user_id: int | None
    channel: str
    address: str
    text: str
    choices: tuple[str, ...]
    numbered: bool
    tries: int


def outbox_item(r: Sequence[Any]) -> OutboxItem:
    """An outbox row read as (id, user_id, channel, address, text, choices, numbered, tries)."""
    return OutboxItem(int(r[0]), None if r[1] is None else int(r[1]), str(r[2]), str(r[3]),
                      str(r[4]), tuple(json.loads(r[5])) if r[5] else (), bool(r[6]), int(r[7]))


@dataclass(frozen=True)
class Head:
    """The oldest unsent row of one address, due now: to send (pending) or to ask the
    provider about (unsure); `attempt_at` is when it was last handed over."""

    item: OutboxItem
    status: str
    attempt_at: datetime | None


@dataclass(frozen=True)
class Delivery:
    """What a delivery report was about: the row, its address; `found`: it settled a row
    that was not yet recorded as sent; `second`: it was about another copy of a row that
    already had its id (a message that went out twice)."""

    row_id: int
    address: str
    found: bool
    second: bool


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


# Twilio's statuses in the order a message moves through them; a late callback for an
# earlier status never overwrites a later one.
_DELIVERY_ORDER = {"accepted": 0, "queued": 1, "sending": 2, "sent": 3, "delivered": 4,
                   "undelivered": 4, "failed": 4, "read": 5}


class Outbox:
    """The outbox, Telegram links and carrier stops: a mixin of the store."""

    def transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        raise NotImplementedError  # the store provides it

    def outbox_transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """The sender's small writes (one row each). SQLite: the write transaction."""
        return self.transaction()

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # the store provides it

    async def outbox_heads(self, channel: str, now: datetime, limit: int = 2000) -> list[Head]:
        """The oldest unsent row of each address on this channel, where that row is due now. A
        row held for later and never tried (an SMS to a work phone after hours) does not hold
        back a later row that is due now (the veileder's own confirmation); a row being sent,
        in doubt, or waiting to be tried again does, so a person's messages keep their order."""
        rows = await self.fetchall(
            "SELECT o.id, o.user_id, o.channel, o.address, o.text, o.choices, o.numbered, "
            "o.tries, o.status, o.attempt_at "
            "FROM outbox o JOIN (SELECT MIN(id) AS id FROM outbox WHERE channel = ? "
            # the first condition is implied by the second; it lets SQLite use the partial
            # index outbox_heads (unsent rows only), so the cost follows the backlog, not the
            # sent history
            "AND status IN ('pending', 'sending', 'unsure') "
            "AND (status IN ('sending', 'unsure') OR (status = 'pending' AND (due_at <= ? "
            "OR tries > 0))) "
            "GROUP BY address) h ON h.id = o.id "
            "WHERE o.status IN ('pending', 'unsure') AND o.due_at <= ? ORDER BY o.id LIMIT ?",
            (channel, iso(now), iso(now), limit))
        return [Head(outbox_item(r), str(r[8]), datetime.fromisoformat(r[9]) if r[9] else None)
                for r in rows]

    async def claim_outbox(self, row_id: int, now: datetime) -> bool:
        """The row is being handed to the provider now (one more try); False if it is no
        longer pending (sent, erased, stopped meanwhile, or claimed by another instance)."""
        async with self.outbox_transaction() as c:
            cur = await c.execute("UPDATE outbox SET status = 'sending', tries = tries + 1, "
                                  "attempt_at = ? WHERE id = ? AND status = 'pending'",
                                  (iso(now), row_id))
            return bool(cur.rowcount)

    async def claim_check(self, row_id: int, now: datetime, until: datetime) -> bool:
        """The row in doubt is being looked up now; no one else looks it up before `until`.
        False if it is no longer unsure and due (settled meanwhile, or taken by another)."""
        async with self.outbox_transaction() as c:
            cur = await c.execute("UPDATE outbox SET due_at = ? WHERE id = ? "
                                  "AND status = 'unsure' AND due_at <= ?",
                                  (iso(until), row_id, iso(now)))
            return bool(cur.rowcount)

    async def record_sent(self, row_id: int, provider_id: str, now: datetime) -> bool:
        """The provider accepted the row as `provider_id`. False if the row already has
        another provider id (a status callback or a lookup found an earlier copy: this one is
        a second)."""
        async with self.outbox_transaction() as c:
            cur = await c.execute("UPDATE outbox SET status = 'sent', provider_id = ?, "
                                  "sent_at = ?, last_error = NULL WHERE id = ? AND "
                                  "(provider_id IS NULL OR provider_id = ?)",
                                  (provider_id, iso(now), row_id, provider_id))
            if cur.rowcount:
                return True
            async with c.execute("SELECT 1 FROM outbox WHERE id = ?", (row_id,)) as cur2:
                return await cur2.fetchone() is None  # erased meanwhile: nothing to say

    async def record_retry(self, row_id: int, error: str, due: datetime) -> None:
        """Certainly not accepted: send again at `due`."""
        async with self.outbox_transaction() as c:
            await c.execute("UPDATE outbox SET status = 'pending', last_error = ?, due_at = ? "
                            "WHERE id = ? AND status = 'sending'", (error, iso(due), row_id))

    async def record_unsure(self, row_id: int, error: str, due: datetime) -> None:
        """It may have been accepted: ask the provider at `due` before anything is sent
        again."""
        async with self.outbox_transaction() as c:
            await c.execute("UPDATE outbox SET status = 'unsure', last_error = ?, due_at = ? "
                            "WHERE id = ? AND status IN ('sending', 'unsure')",
                            (error, iso(due), row_id))

    async def record_resend(self, row_id: int, now: datetime) -> None:
        """The provider has no such message: the row is pending again, due now."""
        async with self.outbox_transaction() as c:
            await c.execute("UPDATE outbox SET status = 'pending', due_at = ? "
                            "WHERE id = ? AND status = 'unsure'", (iso(now), row_id))

    async def record_failed(self, row_id: int, error: str, code: str | None = None) -> None:
        async with self.outbox_transaction() as c:
            await c.execute("UPDATE outbox SET status = 'failed', last_error = ?, "
                            "error_code = ? WHERE id = ? AND status != 'sent'",
                            (error, code, row_id))

    async def known_ids(self, channel: str, address: str, since: datetime) -> set[str]:
        """Provider ids already recorded for this address since then: a lookup must not take
        an earlier row's message for this one."""
        rows = await self.fetchall(
            "SELECT provider_id FROM outbox WHERE channel = ? AND address = ? "
            "AND provider_id IS NOT NULL AND sent_at >= ?", (channel, address, iso(since)))
        return {str(r[0]) for r in rows}

    async def rate_slot(self, channel: str, interval: float) -> float:
        """Seconds to wait for this channel's next send slot, for every process using the
        database. One process on SQLite: the sender spaces its own sends (RateLimiter), so
        there is nothing shared to wait for."""
        return 0.0

    async def rate_late(self, channel: str, seconds: float) -> None:
        """A start came late (SQLite: nothing shared to move)."""

    async def recover_outbox(self, channel: str, now: datetime, *, ask_after: float | None,
                             lease: timedelta, at_start: bool) -> int:
        """Rows left 'sending' by a sender that is gone. One process on SQLite: at its start
        every such row is left over from a crash, and later none can be (`lease` is for
        stores that several instances share). Returns how many were taken over."""
        if not at_start:
            return 0
        return await self.take_over(channel, now, ask_after=ask_after)

    async def take_over(self, channel: str, now: datetime, *, ask_after: float | None,
                        before: datetime | None = None, skip_locked: bool = False,
                        gone: str | None = None, gone_args: Sequence[Any] = ()) -> int:
        """Rows left in 'sending' (claimed before `before`, if given) were handed to the
        provider and may have reached it. With a provider that can be asked (`ask_after`
        seconds after the attempt), they become 'unsure' and are looked up before anything is
        sent again; else they are sent again (the one case where a message may arrive
        twice). Returns how many."""
        q = "SELECT id, attempt_at, due_at FROM outbox WHERE status = 'sending' AND channel = ?"
        args: list[Any] = [channel]
        if before is not None:  # claimed before then, or (`gone`) by a sender that is gone
            q += " AND (COALESCE(attempt_at, due_at) < ?" + (f" OR {gone})" if gone else ")")
            args += [iso(before), *gone_args]
        if skip_locked:
            q += " FOR UPDATE SKIP LOCKED"
        async with self.outbox_transaction() as c:
            async with c.execute(q, args) as cur:
                rows = list(await cur.fetchall())
            for row_id, attempt, due in rows:
                if ask_after is None:
                    await c.execute("UPDATE outbox SET status = 'pending', last_error = ?, "
                                    "due_at = ? WHERE id = ? AND status = 'sending'",
                                    (RESENT, iso(now), row_id))
                    continue
                at = datetime.fromisoformat(attempt or due) + timedelta(seconds=ask_after)
                await c.execute("UPDATE outbox SET status = 'unsure', last_error = ?, "
                                "due_at = ? WHERE id = ? AND status = 'sending'",
                                (INTERRUPTED, iso(max(at, now)), row_id))
            return len(rows)

    async def record_delivery(self, channel: str, provider_id: str, status: str,
                              error_code: str | None, *, row_id: int | None = None,
                              now: datetime | None = None) -> Delivery | None:
        """A provider's delivery report, for the row it names (Twilio: `row` in the callback
        address) or else the row with that provider id. A report for a row not yet recorded
        as sent proves the provider accepted it: it is recorded as sent with that id, so it
        is never sent again. Returns None if no such row (erased, or not ours)."""
        async with self.outbox_transaction() as c:
            row = None
            if row_id is not None:
                async with c.execute("SELECT id, address, delivery, status, provider_id "
                                     "FROM outbox WHERE id = ? AND channel = ?",
                                     (row_id, channel)) as cur:
                    row = await cur.fetchone()
            if row is None:
                async with c.execute("SELECT id, address, delivery, status, provider_id "
                                     "FROM outbox WHERE provider_id = ? AND channel = ?",
                                     (provider_id, channel)) as cur:
                    row = await cur.fetchone()
            if row is None:
                return None
            rid, address, delivery, was, known = (int(row[0]), str(row[1]), row[2], row[3],
                                                  row[4])
            if known is None and was in (PENDING, SENDING, UNSURE):
                cur = await c.execute(
                    "UPDATE outbox SET status = 'sent', provider_id = ?, sent_at = ?, "
                    "last_error = NULL WHERE id = ? AND provider_id IS NULL",
                    (provider_id, iso(now) if now else None, rid))
                if cur.rowcount:
                    known = provider_id
                else:  # settled meanwhile (another instance, the sender): read it again
                    async with c.execute("SELECT provider_id FROM outbox WHERE id = ?",
                                         (rid,)) as cur2:
                        again = await cur2.fetchone()
                    known = again[0] if again else None
            if known != provider_id:  # a second copy of a row that has its id
                return Delivery(rid, address, found=False, second=True)
            old = _DELIVERY_ORDER.get(str(delivery), -1) if delivery else -1
            if _DELIVERY_ORDER.get(status, 0) >= old:
                await c.execute("UPDATE outbox SET delivery = ?, error_code = COALESCE(?, "
                                "error_code) WHERE id = ?", (status, error_code, rid))
            return Delivery(rid, address, found=was in (PENDING, SENDING, UNSURE), second=False)

    async def stop_address(self, channel: str, address: str, reason: str) -> int:
        """The provider says this person does not want messages (carrier STOP, a blocked
        bot): the user is stopped and what is still queued for them is not sent. Returns rows
        dropped."""
        col = "phone" if channel in PHONE_CHANNELS else "telegram_chat_id"
        async with self.transaction() as c:
            await c.execute(f"UPDATE users SET stopped = 1 WHERE {col} = ?", (address,))
            cur = await c.execute("UPDATE outbox SET status = 'failed', last_error = ? "
                                  "WHERE channel = ? AND address = ? AND status = 'pending'",
                                  (reason, channel, address))
            return int(cur.rowcount)

    async def list_outbox(self, *, failed: bool = False, limit: int = 50) -> list[OutboxRow]:
        where = "WHERE status = 'failed'" if failed else ""
        rows = await self.fetchall(
            f"SELECT id, channel, address, status, tries, created_at, last_error, delivery "
            f"FROM outbox {where} ORDER BY id DESC LIMIT ?", (limit,))
        return [OutboxRow(int(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), str(r[5]),
                          r[6] if r[6] is None else str(r[6]),
                          r[7] if r[7] is None else str(r[7])) for r in rows]

    async def unsent_outbox(self, channel: str) -> list[OutboxItem]:
        """Rows on this channel not yet sent (waiting, being sent, in doubt): for the
        operator's count of SMS parts; the texts are never shown."""
        return [outbox_item(r) for r in await self.fetchall(
            "SELECT id, user_id, channel, address, text, choices, numbered, tries FROM outbox "
            "WHERE channel = ? AND status IN ('pending', 'sending', 'unsure')", (channel,))]

    async def outbox_counts(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in await self.fetchall(
            "SELECT status, COUNT(*) FROM outbox GROUP BY status")}

    # -- Telegram links ------------------------------------------------------------------------
    async def add_invite(self, user_id: int, code_hash: str, now: datetime,
                         expires: datetime) -> None:
        async with self.transaction() as c:
            await c.execute("INSERT INTO invites (code_hash, user_id, created_at, expires_at) "
                            "VALUES (?, ?, ?, ?)",
                            (code_hash, user_id, iso(now), iso(expires)))

    async def use_invite(self, code_hash: str, chat_id: str,
                         now: datetime) -> tuple[int, bool] | None:
        """Link the chat to the invited user if the code is unused and not expired; the code
        is spent either way it is used. Returns (user id, has consented) or None."""
        async with self.transaction() as c:
            async with c.execute("SELECT user_id FROM invites WHERE code_hash = ? "
                                 "AND used_at IS NULL AND expires_at > ?",
                                 (code_hash, iso(now))) as cur:
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

    async def telegram_user(self, chat_id: str) -> int | None:
        rows = await self.fetchall("SELECT id FROM users WHERE telegram_chat_id = ?",
                                   (chat_id,))
        return int(rows[0][0]) if rows else None
