"""What every channel shares: the service a channel's webhooks talk to (`Hub`), what a
channel offers the server (`Channel`: its web routes, its transport and rate, start and
stop), how a message with choices looks where there are no buttons, and a one-off system
answer to a message that does not reach a conversation."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from ..delivery.sender import Transport
from ..engine.model import FlowSet
from ..engine.runtime import system_text
from ..service.clock import Clock
from ..service.pipeline import Pipeline
from ..store import Store
from ..timing.planner import OSLO

if TYPE_CHECKING:  # the web server's library, loaded by the server, not by every command
    from aiohttp import web

INVITE_DAYS = 7  # how long a Telegram invite link works, unless the command says otherwise


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
                     provider_id: str, key: str, now: datetime,
                     once: Sequence[str] | None = None, first: Sequence[str] = ()) -> bool:
    """Answer a message with a system text (in bokmål: the sender may be no user), once per
    provider message id, and with `once` only the first time those parts come (an unknown
    chat gets one answer, not one per message); the message itself is logged without text
    or user. `first` (a crisis answer) goes out for every new message id, before the system
    text and whatever `once` says. True if an answer was queued."""
    async with store.tx(now) as tx:
        if not await tx.log_inbound_once(channel, provider_id, now):
            return False
        for text in first:
            await tx.queue_message(channel, address, text, now)
        if once is not None and not await tx.answer_once(once, now):
            return bool(first)
        await tx.queue_message(channel, address, system_text(flows, "nb", key, {}), now)
        return True


def oslo_day(now: datetime) -> str:
    return now.astimezone(OSLO).date().isoformat()


# -- reading what a webhook sent, before any work is done ----------------------------------------

FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 200  # Twilio sends about 20


async def read_form(request: web.Request) -> dict[str, str] | None:
    """The fields of a form as Twilio posts it, or None for anything else: another content
    type or charset, bytes that are not UTF-8 (raw or %-escaped), too many fields, a broken
    body, a field named twice (Twilio never repeats one; a second value could hide behind the
    signature of the first). Checked strictly, before any signature or work: a bad request is
    the sender's mistake (400), never ours (500)."""
    if request.content_type != FORM or (request.charset or "utf-8").lower() != "utf-8":
        return None
    body = await _body(request)
    if body is None:
        return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8",
                          errors="strict", max_num_fields=MAX_FIELDS)
    except ValueError:  # UnicodeDecodeError is one
        return None
    form = dict(pairs)
    return form if len(form) == len(pairs) else None


async def read_json(request: web.Request) -> dict[str, Any] | None:
    """A JSON object in UTF-8, or None for anything else (another content type, bytes that
    are not UTF-8, not JSON, nested too deep, not an object)."""
    if request.content_type != "application/json":
        return None
    body = await _body(request)
    if body is None:
        return None
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


async def _body(request: web.Request) -> bytes | None:
    """The whole body (at most the app's client_max_size: more is a 413), or None when the
    bytes on the wire are not a valid HTTP body (a broken chunked encoding)."""
    from aiohttp.http_exceptions import HttpProcessingError  # loaded by the server already

    try:
        return await request.read()
    except HttpProcessingError:
        return None
