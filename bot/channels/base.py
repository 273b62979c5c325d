"""What every channel shares: the service a channel's webhooks talk to (`Hub`), what a
channel offers the server (`Channel`: its web routes, its transport and rate, start and
stop), how a message with choices looks where there are no buttons, and a one-off system
answer to a message that does not reach a conversation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from aiohttp import web

from ..delivery.sender import Transport
from ..engine.model import FlowSet
from ..engine.runtime import system_text
from ..service.clock import Clock
from ..service.pipeline import Pipeline
from ..store import Store


class StartError(Exception):
    """Something an operator must fix before the bot can start; said in plain words."""


@dataclass
class Hub:
    """What a channel's webhooks need from the running service."""

    store: Store
    pipeline: Pipeline
    flows: FlowSet
    clock: Clock
    wake: Callable[[], None]  # something was queued: the senders look at once
    accepting: Callable[[], bool]  # False while the service is stopping


class Channel(Protocol):
    """One transport as the server sees it. The server adds `routes()` to its web app, runs a
    sender over `transport` at `rate`, and calls start/stop/close around the service's life."""

    @property
    def name(self) -> str: ...

    @property
    def transport(self) -> Transport: ...

    @property
    def rate(self) -> float: ...

    def routes(self) -> list[web.RouteDef]:
        """The channel's webhooks (each checks the provider's signature itself)."""
        ...

    def checks(self) -> dict[str, str]:
        """For /readyz: name -> "ok" or what is wrong."""
        ...

    async def start(self) -> None:
        """Connect to the provider; raise StartError with a plain sentence if it refuses."""
        ...

    async def stop(self) -> None:
        """Take no more updates (polling stops); webhooks are stopped by the server."""
        ...

    async def close(self) -> None:
        """Close connections, after the sender has stopped."""
        ...


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
