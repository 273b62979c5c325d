"""What every channel shares: how a message with choices looks where there are no buttons,
and a one-off system answer to a message that does not reach a conversation."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..engine.model import FlowSet
from ..engine.runtime import system_text
from ..store import Store


def plain_text(text: str, choices: Sequence[str], numbered: bool) -> str:
    """The message as SMS or a terminal shows it: numbered options under the text."""
    if not numbered or not choices:
        return text
    return text + "\n" + "\n".join(f"{i}) {c}" for i, c in enumerate(choices, start=1))


async def reply_once(store: Store, flows: FlowSet, channel: str, address: str,
                     provider_id: str, key: str, now: datetime) -> None:
    """Answer a message with a system text (in bokmål: the sender may be no user), once per
    provider message id; the message itself is logged without text or user."""
    async with store.tx(now) as tx:
        if await tx.log_inbound_once(channel, provider_id, now):
            await tx.queue_message(channel, address, system_text(flows, "nb", key, {}), now)
