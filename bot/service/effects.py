"""The effect handlers: one per effect the engine can return, in one table (`apply`).

The engine decided everything (what the user is told, where a message for the veileder goes,
whether anyone is told of a crisis); a handler only carries it out inside the batch's
transaction. It never changes or replaces a reply. The `match` below is checked exhaustively
by mypy (`assert_never`): a new effect without a handler fails type checking.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import assert_never

from bot.engine.runtime import (
    AnonymousAnswer,
    Crisis,
    CrisisNotice,
    Effect,
    EraseUser,
    FlowEnded,
    Forward,
    SaveAnswer,
    SetConsent,
    SetHearBack,
    SetLanguage,
    SetStopped,
    Summary,
)
from bot.phone import mask_address
from bot.service import desk
from bot.store import AnonymousRow, Changes, UserRow
from bot.store.protocol import BatchTransaction as Batch

log = logging.getLogger(__name__)


@dataclass
class Scope:
    """What a handler may use: the open batch, what the batch will write, and about whom."""

    tx: Batch
    changes: Changes
    user: UserRow
    now: datetime
    office: str | None = None  # the user's office (anonymous rows keep only this, or less)
    meeting: int | None = None  # the meeting the flow is about
    meeting_at: datetime | None = None
    erased: set[int] = field(default_factory=set)


async def apply(effect: Effect, s: Scope) -> None:
    """Carry out one effect."""
    match effect:
        case SaveAnswer():
            s.changes.answers.append((s.user.id, effect.flow, effect.key, effect.value,
                                      s.meeting))
        case AnonymousAnswer():
            s.changes.anonymous.append(AnonymousRow(effect.flow, effect.key, effect.value,
                                                    s.office, s.tx.respondent(s.user.id)))
        case SetStopped():
            s.changes.stopped[s.user.id] = effect.stopped
        case SetLanguage():
            s.changes.language[s.user.id] = effect.lang
        case SetConsent():
            s.changes.consent[s.user.id] = effect.consent
        case SetHearBack():
            s.changes.hear_back[s.user.id] = effect.hear_back
        case EraseUser():
            s.erased.add(s.user.id)
        case FlowEnded():
            pass  # the state already says it; nothing to store
        case Crisis():
            _crisis_signal(effect, s)
        case CrisisNotice():
            await _crisis_notice(effect, s)
        case Forward():
            await desk.forward(s.tx, s.user.id, effect.text, effect.duty, s.now)
        case Summary():
            await desk.summary(s.tx, s.user.id, effect.title, effect.items, s.meeting_at,
                               effect.duty, s.now)
        case _:
            assert_never(effect)


def _crisis_signal(effect: Crisis, s: Scope) -> None:
    # metadata only, never the text
    log.warning("%s crisis signal from %s on %s (anonymous flow: %s); %s",
                "possible" if effect.possible else "clear", mask_address(s.user.address),
                s.user.channel, effect.in_anonymous_flow,
                "check-in with the numbers sent" if effect.possible else "crisis numbers sent")


async def _crisis_notice(effect: CrisisNotice, s: Scope) -> None:
    if await desk.crisis_notice(s.tx, s.user.id, effect.duty, s.now):
        log.warning("crisis notice for %s to the one on duty", mask_address(s.user.address))
