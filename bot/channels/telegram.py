"""Telegram through python-telegram-bot's `Bot`: updates by polling or webhook (POST
/telegram, with the secret token checked first), sends with buttons, invites that link a chat
to a registered user.

Only chats linked to a user reach the pipeline. A chat is linked by a single-use, expiring
deep link (`veivis invite PHONE` -> https://t.me/<bot>?start=<code>); the database keeps only
a hash of the code. An unknown chat gets one friendly explanation and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from telegram import (
    Bot,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from ..delivery.sender import SendError
from ..engine.model import FlowSet
from ..engine.runtime import stranger_crisis, system_text
from ..phone import mask_address
from ..service.pipeline import FlowRequest, Inbound
from ..store import OutboxItem, Store
from .base import INVITE_DAYS, Hub, StartError, oslo_day, read_json, reply_once

if TYPE_CHECKING:
    from ..app.settings import Settings

log = logging.getLogger(__name__)
# httpx logs every request URL at INFO, and a Bot API URL holds the bot token; PTB logs
# request parameters (message texts) at DEBUG. Neither belongs in our logs.
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("telegram").setLevel(logging.INFO)

CHANNEL = "telegram"
WEBHOOK_PATH = "/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_TEXT = 4096  # Telegram's limit for one message
ALLOWED_UPDATES = ["message", "my_chat_member"]


def make_bot(token: str, api_url: str = "https://api.telegram.org",
             timeout: float = 15.0) -> Bot:
    base = api_url.rstrip("/") + "/bot"
    return Bot(token, base_url=base,
               request=HTTPXRequest(connection_pool_size=64, read_timeout=timeout,
                                    write_timeout=timeout, connect_timeout=timeout),
               get_updates_request=HTTPXRequest(read_timeout=timeout, connect_timeout=timeout))


# -- invites -------------------------------------------------------------------------------------

def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def new_code() -> str:
    """32 URL-safe characters (192 random bits): fits Telegram's 64-character start value."""
    return secrets.token_urlsafe(24)


async def invite(store: Store, user_id: int, bot_username: str, now: datetime,
                 days: int = INVITE_DAYS) -> str:
    code = new_code()
    await store.add_invite(user_id, code_hash(code), now, now + timedelta(days=days))
    return f"https://t.me/{bot_username}?start={code}"


_START = re.compile(r"^/start(?:@\w+)?(?:\s+(\S+))?\s*$")


# -- sending -------------------------------------------------------------------------------------

def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Parts of at most `limit` characters, cut after a sentence where possible, else at a
    space, else anywhere."""
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit + 1]
        cut = max((m.end() for m in re.finditer(r"[.!?…]\s", window)), default=0)
        if cut == 0:
            cut = window.rfind("\n") + 1 or window.rfind(" ") + 1
        if cut <= 0:
            cut = limit
        parts.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        parts.append(rest)
    return parts


def keyboard(choices: Sequence[str]) -> ReplyKeyboardMarkup | ReplyKeyboardRemove:
    """Choices as buttons under the text; a tap sends the choice as the user's message, so
    typing still works the same way. Short choices share a row."""
    if not choices:
        return ReplyKeyboardRemove()
    short = all(len(c) <= 12 for c in choices) and len(choices) <= 3
    rows = [[KeyboardButton(c) for c in choices]] if short else [[KeyboardButton(c)]
                                                                  for c in choices]
    return ReplyKeyboardMarkup(rows, one_time_keyboard=True, resize_keyboard=True)


def _seconds(value: int | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class TelegramTransport:
    """Sends outbox rows with `sendMessage` (a long text in parts, buttons on the last).

    The Bot API cannot be asked whether a message arrived, so a send in doubt (a timeout, a
    crash mid-request) is sent again: the person may see it twice, but never misses it."""

    channel = CHANNEL
    ask_after: float | None = None

    def __init__(self, bot: Bot) -> None:
        self.bot = bot
        self._parts_sent: dict[int, int] = {}  # row id -> parts of a split text already sent

    async def find(self, item: OutboxItem, since: datetime, known: Collection[str]) -> str | None:
        raise NotImplementedError("the Telegram Bot API cannot list sent messages")

    async def send(self, item: OutboxItem) -> str:
        parts = split_text(item.text)
        done = self._parts_sent.get(item.id, 0)
        last_id = ""
        try:
            for i, part in enumerate(parts):
                if i < done:
                    continue
                markup = keyboard(item.choices) if i == len(parts) - 1 else None
                msg = await self.bot.send_message(int(item.address), part, reply_markup=markup)
                last_id = str(msg.message_id)
                self._parts_sent[item.id] = i + 1
        except RetryAfter as e:
            raise SendError("Telegram: too many messages", temporary=True,
                            retry_after=_seconds(e.retry_after), code="429") from None
        except Forbidden:
            raise SendError("Telegram: the user blocked the bot", temporary=False,
                            stop_user=True, code="403") from None
        except BadRequest as e:
            raise SendError(f"Telegram refused the message: {e.message}", temporary=False,
                            code="400") from None
        except NetworkError as e:  # timeouts and 5xx (TimedOut is one): it may have arrived
            raise SendError(f"Telegram: {type(e).__name__}", temporary=True,
                            doubt=True) from None
        except TelegramError as e:
            raise SendError(f"Telegram: {type(e).__name__}", temporary=False) from None
        self._parts_sent.pop(item.id, None)
        return last_id


# -- receiving -----------------------------------------------------------------------------------

class TelegramChannel:
    """Turns Telegram updates into pipeline messages (linked chats), links chats from invite
    codes, answers unknown chats, and marks users who block the bot as stopped."""

    name = CHANNEL

    @property
    def flows(self) -> FlowSet:
        """The flows live now (a reload swaps them in the hub)."""
        return self.hub.flows

    def __init__(self, hub: Hub, bot: Bot, *, rate: float, webhook_secret: str = "",
                 webhook_url: str | None = None) -> None:
        self.hub = hub
        self.bot = bot
        self.transport = TelegramTransport(bot)
        self.rate = rate
        self.store = hub.store
        self.pipeline = hub.pipeline
        self.clock = hub.clock
        self.on_queued = hub.wake
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url  # None: polling
        self.username: str | None = None
        self.ready = False
        self._polling: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    # -- as the server runs it -------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.post(WEBHOOK_PATH, self.webhook)]

    def checks(self) -> dict[str, str]:
        return {"telegram": "ok" if self.ready else "not connected"}

    async def start(self) -> None:
        try:
            await self.initialize()
        except Exception as e:
            raise StartError(f"Telegram godtok ikke nøkkelen, eller kunne ikke nås "
                             f"({type(e).__name__}); sjekk TELEGRAM_BOT_TOKEN") from None
        if self.webhook_url is not None:
            await self.set_webhook(self.webhook_url)
        else:
            await self.start_polling()

    async def stop(self) -> None:
        await self.stop_polling()

    async def close(self) -> None:
        if self.ready:
            with contextlib.suppress(Exception):
                await self.bot.shutdown()

    async def webhook(self, request: web.Request) -> web.Response:
        """One update from Telegram; answered only after it is committed."""
        if not self.secret_ok(request.headers.get(SECRET_HEADER)):
            log.warning("refused a Telegram webhook without the secret token (from %s)",
                        request.remote)
            return web.Response(status=403, text="forbidden")
        if not self.hub.accepting():
            return web.Response(status=503)  # Telegram tries again later
        data = await read_json(request)
        update = None if data is None else self.parse(data)
        if update is None:
            log.info("refused a Telegram webhook that is not an update (from %s)",
                     request.remote)
            return web.Response(status=400, text="not an update")
        await self.handle(update)
        return web.Response(status=200)

    def parse(self, data: Mapping[str, Any]) -> Update | None:
        """An update as python-telegram-bot reads it, or None if it is not one (a wrong
        shape is Telegram's or a forger's mistake, never a crash of ours)."""
        uid = data.get("update_id")
        if not isinstance(uid, int) or isinstance(uid, bool):
            return None
        try:
            update = Update.de_json(dict(data), self.bot)
        except Exception:
            return None
        msg = update.message
        if msg is not None:  # PTB does not check the types inside
            got: tuple[Any, ...] = (msg.chat.id, msg.chat.type, msg.text)
            if not (isinstance(got[0], int) and isinstance(got[1], str)
                    and isinstance(got[2], str | None)):
                return None
        return update

    async def initialize(self) -> None:
        await self.bot.initialize()  # getMe: checks the token
        self.username = self.bot.username
        self.ready = True

    def secret_ok(self, header: str | None) -> bool:
        """The webhook's secret token, compared in constant time."""
        if not self.webhook_secret or header is None:
            return False
        given = header.encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, self.webhook_secret.encode())

    def _text(self, key: str) -> str:
        return system_text(self.flows, "nb", key, {})

    async def _reply_once(self, chat_id: str, provider_id: str, key: str,
                          once: Sequence[str] | None = None, first: Sequence[str] = ()
                          ) -> None:
        if await reply_once(self.store, self.flows, CHANNEL, chat_id, provider_id, key,
                            self.clock(), once, first):
            self.on_queued()

    async def handle(self, update: Update) -> None:
        """One update (from getUpdates or the webhook). Returns after it is committed."""
        pid = str(update.update_id)
        member = update.my_chat_member
        if member is not None:
            chat = str(member.chat.id)
            async with self.store.tx(self.clock()) as tx:
                first_time = await tx.log_inbound_once(CHANNEL, pid, self.clock())
            if first_time and member.new_chat_member.status in ("kicked", "left"):
                dropped = await self.store.stop_address(CHANNEL, chat, "blocked the bot")
                log.info("telegram chat %s blocked the bot: stopped, %d queued dropped",
                         mask_address(chat), dropped)
            return
        msg = update.message
        if msg is None or msg.chat.type != "private":
            return
        chat_id = str(msg.chat.id)
        text = msg.text
        if text is not None:
            m = _START.match(text.strip())
            if m and m.group(1):
                await self._link(chat_id, pid, m.group(1))
                return
        if await self.store.telegram_user(chat_id) is None:
            # one answer per chat that is linked to no one, however often it writes; but a
            # crisis message gets the numbers every time (the engine decides what they are)
            crisis = stranger_crisis(self.flows, text) if text else ()
            if crisis:
                log.warning("crisis message from an unlinked telegram chat %s: numbers sent",
                            mask_address(chat_id))
            await self._reply_once(chat_id, pid, "unknown_chat", (CHANNEL, "unknown", chat_id),
                                   first=crisis)
            return
        if text is None or not text.strip():  # one answer a day to pictures and files
            await self._reply_once(chat_id, pid, "media",
                                   (CHANNEL, "media", chat_id, oslo_day(self.clock())))
            return
        if _START.match(text.strip()):  # plain /start from a linked chat: a hello
            text = "hei"
        await self.pipeline.submit(Inbound(CHANNEL, chat_id, text, pid))
        self.on_queued()

    async def _link(self, chat_id: str, pid: str, code: str) -> None:
        now = self.clock()
        async with self.store.tx(now) as tx:
            first_time = await tx.log_inbound_once(CHANNEL, pid, now)
        if not first_time:
            return
        linked = await self.store.use_invite(code_hash(code), chat_id, now)
        if linked is None:
            log.info("telegram chat %s used an unknown or spent invite",
                     mask_address(chat_id))
            async with self.store.tx(now) as tx:  # once per chat: guessing gets one answer
                if await tx.answer_once((CHANNEL, "bad start", chat_id), now):
                    await tx.queue_message(CHANNEL, chat_id, self._text("link_invalid"), now)
        else:
            uid, consented = linked
            log.info("telegram chat %s linked to user %d", mask_address(chat_id), uid)
            if consented:
                async with self.store.tx(now) as tx:
                    await tx.queue_message(CHANNEL, chat_id, self._text("linked"), now)
            else:
                await self.pipeline.submit(FlowRequest(CHANNEL, chat_id, "welcome"))
        self.on_queued()

    # -- polling ---------------------------------------------------------------------------
    async def start_polling(self, timeout: int = 30) -> None:
        await self.bot.delete_webhook()  # Telegram refuses getUpdates while a webhook is set
        self._polling = asyncio.create_task(self._poll(timeout), name="veivis-telegram-poll")

    async def _poll(self, timeout: int) -> None:
        offset: int | None = None
        pause = 1.0
        while not self._stop.is_set():
            try:
                updates = await self.bot.get_updates(offset=offset, timeout=timeout,
                                                     allowed_updates=ALLOWED_UPDATES)
                pause = 1.0
            except asyncio.CancelledError:
                raise
            except TelegramError as e:
                log.warning("telegram getUpdates failed (%s); again in %.0f s",
                            type(e).__name__, pause)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), pause)
                pause = min(pause * 2, 60.0)
                continue
            for u in updates:
                try:
                    await self.handle(u)
                except Exception:
                    log.exception("a telegram update could not be handled; it is skipped")
                offset = u.update_id + 1

    async def stop_polling(self) -> None:
        self._stop.set()
        if self._polling is not None:
            self._polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._polling
            self._polling = None

    async def set_webhook(self, public_url: str) -> None:
        await self.bot.set_webhook(public_url.rstrip("/") + WEBHOOK_PATH,
                                   secret_token=self.webhook_secret,
                                   allowed_updates=ALLOWED_UPDATES)



def from_settings(settings: Settings, hub: Hub) -> TelegramChannel | None:
    """The Telegram channel, if a bot token is configured."""
    if not settings.telegram:
        return None
    bot = make_bot(settings.get("TELEGRAM_BOT_TOKEN"), settings.get("TELEGRAM_API_URL"),
                   settings.number("SEND_TIMEOUT"))
    return TelegramChannel(hub, bot, rate=settings.number("TELEGRAM_RATE"),
                           webhook_secret=settings.get("TELEGRAM_WEBHOOK_SECRET"),
                           webhook_url=settings.public_url if settings.telegram_webhook
                           else None)
