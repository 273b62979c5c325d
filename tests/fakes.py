"""Fake provider servers on 127.0.0.1: the Telegram Bot API and Twilio's REST API.

They speak the real wire formats, so python-telegram-bot and twilio run unchanged against
them (PTB through `base_url`, twilio through our HTTP client hook). Each can be told to fail
a share of sends (seeded, so a failing run can be replayed), or listed outcomes in order:

- "500", "503": an error, nothing accepted;
- "429": too many requests, with Retry-After (Twilio) or retry_after (Telegram);
- "timeout": no answer for `hang_seconds`, then an error; nothing accepted;
- "hang": the message IS accepted (recorded, logged, Twilio's status callback goes out), but
  the answer comes only after `hang_seconds`, when the client has given up: a send in doubt
  (with `hold` set, not before the test calls `let_go()`: a crash mid-request);
- "403" (Telegram: blocked), "21610" (Twilio: the person replied STOP).

FakeTwilio also answers Twilio's message list (GET Messages.json, by To and From, newest
first), can send signed status callbacks to the app, and can append every message it accepts
to a log file, fsync'd before it answers, so duplicates can be counted from outside even when
the test process itself is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

Failure = str | None  # None | "500" | "503" | "429" | "timeout" | "hang" | "403" | "21610"
ALL_FAULTS = ("500", "503", "429", "timeout", "hang")


class FailurePlan:
    """Decides per send whether it fails: a share at random (seeded), or listed outcomes."""

    def __init__(self, seed: int = 7) -> None:
        self.rate = 0.0
        self.kinds: tuple[str, ...] = ("500", "timeout")
        self.queue: list[Failure] = []
        self.rng = random.Random(seed)
        self.for_address: dict[str, str] = {}
        self.counts: Counter[str] = Counter()  # outcomes so far, by kind

    def next(self, address: str) -> Failure:
        got = self._next(address)
        self.counts[got or "ok"] += 1
        return got

    def _next(self, address: str) -> Failure:
        if address in self.for_address:
            return self.for_address[address]
        if self.queue:
            return self.queue.pop(0)
        if self.rate and self.rng.random() < self.rate:
            return self.rng.choice(self.kinds)
        return None


@dataclass
class Sent:
    to: str
    text: str
    extra: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0  # monotonic, when it arrived
    created: datetime = field(default_factory=lambda: datetime.now(UTC))  # as Twilio says


class _Server:
    def __init__(self) -> None:
        self.app = web.Application()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.fail = FailurePlan()
        self.hang_seconds = 2.0  # longer than the client's timeout in tests
        # a "hang" answers only at let_go() (or close): the test decides when, not a timer
        self.hold = False
        self._let_go = asyncio.Event()
        self.requests = 0
        self.closing = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def later(self, coro: Any) -> None:
        """Run something after the answer (a status callback), kept until it is done."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def wake(self) -> None:
        """Let long polls return (at close)."""

    def let_go(self) -> None:
        """Answer the held "hang" requests."""
        self._let_go.set()

    async def hang(self) -> None:
        """A "hang": no answer for `hang_seconds`, or with `hold`, until let_go()."""
        if self.hold:
            await self._let_go.wait()
        else:
            await asyncio.sleep(self.hang_seconds)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        self.closing = True
        self.wake()
        self.let_go()
        for t in list(self._tasks):
            t.cancel()
        if self.runner is not None:
            await self.runner.cleanup()

    async def __aenter__(self) -> _Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# -- Telegram ------------------------------------------------------------------------------------

class FakeTelegram(_Server):
    """getMe, getUpdates (long polling), sendMessage, sendDocument, setWebhook, deleteWebhook."""

    def __init__(self, token: str, username: str = "veivis_test_bot") -> None:
        super().__init__()
        self.token = token
        self.username = username
        self.sent: list[Sent] = []
        self.documents: list[tuple[str, str, bytes, str]] = []  # chat, file name, bytes, caption
        self.updates: list[dict[str, Any]] = []
        self.webhook: dict[str, Any] = {}
        self.confirmed = 0  # the highest update id the bot has asked past (polling)
        self._update_ids = itertools.count(1000)
        self._message_ids = itertools.count(1)
        self._new_update = asyncio.Event()
        self.app.router.add_post("/bot{token}/{method}", self._call)

    async def _call(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401,
                                      "description": "Unauthorized"}, status=401)
        method = request.match_info["method"]
        if request.content_type == "application/json":
            params = await request.json()
        else:
            params = {k: (v if isinstance(v, web.FileField) else str(v))
                      for k, v in (await request.post()).items()}
        self.requests += 1
        handler: Callable[[dict[str, Any]], Any] | None = getattr(self, f"_m_{method}", None)
        if handler is None:
            return web.json_response({"ok": False, "error_code": 404,
                                      "description": "Not Found"}, status=404)
        result = await handler(params)
        if isinstance(result, web.Response):
            return result
        return web.json_response({"ok": True, "result": result})

    async def _m_getMe(self, p: dict[str, Any]) -> Any:
        return {"id": 4242, "is_bot": True, "first_name": "Veivis", "username": self.username}

    async def _m_deleteWebhook(self, p: dict[str, Any]) -> Any:
        self.webhook = {}
        return True

    async def _m_setWebhook(self, p: dict[str, Any]) -> Any:
        self.webhook = dict(p)
        return True

    async def _m_getUpdates(self, p: dict[str, Any]) -> Any:
        offset = int(p.get("offset") or 0)
        self.confirmed = max(self.confirmed, offset - 1)  # the bot handled all before it
        timeout = float(p.get("timeout") or 0)
        deadline = time.monotonic() + timeout
        while True:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
            if self.updates or time.monotonic() >= deadline or self.closing:
                return self.updates[:100]
            self._new_update.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), deadline - time.monotonic())

    async def _m_sendMessage(self, p: dict[str, Any]) -> Any:
        chat_id = str(p["chat_id"])
        failure = self.fail.next(chat_id)
        if failure == "timeout":
            await asyncio.sleep(self.hang_seconds)
            return web.json_response({"ok": False, "error_code": 504,
                                      "description": "Gateway Timeout"}, status=504)
        if failure in ("500", "503"):
            return web.json_response({"ok": False, "error_code": int(failure),
                                      "description": "Internal Server Error"},
                                     status=int(failure))
        if failure == "429":
            return web.json_response({"ok": False, "error_code": 429,
                                      "description": "Too Many Requests: retry after 1",
                                      "parameters": {"retry_after": 1}}, status=429)
        if failure == "403":
            return web.json_response({"ok": False, "error_code": 403, "description":
                                      "Forbidden: bot was blocked by the user"}, status=403)
        markup = p.get("reply_markup")
        if isinstance(markup, str):
            markup = json.loads(markup)
        self.sent.append(Sent(chat_id, str(p["text"]), {"reply_markup": markup},
                              time.monotonic()))
        if failure == "hang":  # delivered, but the answer never reaches the bot in time
            await self.hang()
        return {"message_id": next(self._message_ids), "date": int(time.time()),
                "chat": {"id": int(chat_id), "type": "private"}, "text": p["text"]}

    async def _m_sendDocument(self, p: dict[str, Any]) -> Any:
        doc = p["document"]
        assert isinstance(doc, web.FileField), "a document is uploaded as a file"
        self.documents.append((str(p["chat_id"]), doc.filename, doc.file.read(),
                               str(p.get("caption", ""))))
        return {"message_id": next(self._message_ids), "date": int(time.time()),
                "chat": {"id": int(p["chat_id"]), "type": "group"},
                "document": {"file_id": "d1", "file_unique_id": "u1", "file_name": doc.filename}}

    # -- what a person does in Telegram ------------------------------------------------------
    def update(self, chat_id: int, text: str | None = None, *,
               photo: bool = False) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "message_id": next(self._message_ids), "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Sara"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Sara"},
        }
        if text is not None:
            msg["text"] = text
        if photo:
            msg["photo"] = [{"file_id": "f1", "file_unique_id": "u1", "width": 10,
                             "height": 10}]
        return {"update_id": next(self._update_ids), "message": msg}

    def wake(self) -> None:
        self._new_update.set()

    def blocked(self, chat_id: int) -> dict[str, Any]:
        user = {"id": chat_id, "is_bot": False, "first_name": "Sara"}
        bot = {"id": 4242, "is_bot": True, "first_name": "Veivis"}
        return {"update_id": next(self._update_ids), "my_chat_member": {
            "chat": {"id": chat_id, "type": "private"}, "from": user, "date": int(time.time()),
            "old_chat_member": {"user": bot, "status": "member"},
            "new_chat_member": {"user": bot, "status": "kicked", "until_date": 0}}}

    def queue(self, update: dict[str, Any]) -> dict[str, Any]:
        """For polling: the update waits at getUpdates."""
        self.updates.append(update)
        self._new_update.set()
        return update

    def texts_to(self, chat_id: int | str) -> list[str]:
        return [s.text for s in self.sent if s.to == str(chat_id)]


async def post_update(app_url: str, update: dict[str, Any], secret: str | None) -> int:
    """What Telegram does in webhook mode: POST the update with the secret header."""
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    async with aiohttp.ClientSession() as s, s.post(app_url + "/telegram", json=update,
                                                    headers=headers) as r:
        return r.status


# -- Twilio --------------------------------------------------------------------------------------

class FakeTwilio(_Server):
    """POST and GET /2010-04-01/Accounts/{sid}/Messages.json (send; list), with basic auth;
    and what Twilio does towards the app: signed inbound SMS webhooks and status callbacks.

    `log`: a file that gets one JSON line per accepted message (sid, to, from, body, status
    callback), fsync'd before the answer. `callbacks_to`: the app's address; each accepted
    message then gets a signed «sent» status callback to the StatusCallback it named (its
    public address mapped to the app) after `callback_delay` seconds, once, failures ignored.
    `fail_lists`: the message list fails at the same rate as sends (500, 503, 429);
    `list_fail`: outcomes for the next lookups, in order.
    """

    def __init__(self, account_sid: str, auth_token: str, *, log: Path | None = None,
                 seed: int = 7) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.validator = RequestValidator(auth_token)
        self.fail = FailurePlan(seed)
        self.sent: list[Sent] = []
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.log = log
        self.callbacks_to: str | None = None
        self.public_url = ""
        self.callback_delay = 0.05
        self.fail_lists = False
        self.list_fail: list[str] = []  # outcomes of the next lookups, in order
        self.lists = 0
        base = "/2010-04-01/Accounts/{sid}/Messages.json"
        self.app.router.add_post(base, self._create)
        self.app.router.add_get(base, self._list)

    def _authorised(self, request: web.Request) -> bool:
        try:
            auth = aiohttp.BasicAuth.decode(request.headers.get("Authorization", ""))
        except ValueError:
            return False
        return (auth.login, auth.password) == (self.account_sid, self.auth_token) and \
            request.match_info["sid"] == self.account_sid

    @staticmethod
    def _error(code: int, message: str, status: int, **headers: str) -> web.Response:
        return web.json_response({"code": code, "message": message, "status": status},
                                 status=status, headers=headers)

    async def _create(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(20003, "Authenticate", 401)
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests += 1
        failure = self.fail.next(form.get("To", ""))
        if failure == "timeout":
            await asyncio.sleep(self.hang_seconds)
            return self._error(20500, "late", 500)
        if failure in ("500", "503"):
            return self._error(20500, "Internal Server Error", int(failure))
        if failure == "429":
            return self._error(20429, "Too Many Requests", 429, **{"Retry-After": "1"})
        if failure == "21610":
            return self._error(21610, "Attempt to send to unsubscribed recipient", 400)
        if not form.get("To") or not form.get("Body") or not form.get("From"):
            return self._error(21604, "A 'To' phone number is required.", 400)
        msg = self._accept(form)
        if failure == "hang":  # accepted; the answer comes after the client has given up
            await self.hang()
        return web.json_response(msg, status=201)

    def _accept(self, form: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        created = self.clock()
        if self.log is not None:
            line = json.dumps({"sid": sid, "to": form["To"], "from": form["From"],
                               "body": form["Body"],
                               "status_callback": form.get("StatusCallback")})
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        self.sent.append(Sent(form["To"], form["Body"], {"sid": sid, **form}, time.monotonic(),
                              created))
        callback = form.get("StatusCallback")
        if callback and self.callbacks_to is not None and callback.startswith(self.public_url):
            self.later(self._callback(callback, sid))
        return self._resource(sid, form, created)

    def _resource(self, sid: str, form: dict[str, str], created: datetime) -> dict[str, Any]:
        return {
            "sid": sid, "account_sid": self.account_sid, "to": form["To"],
            "from": form["From"], "body": form["Body"], "status": "queued",
            "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
            "date_created": format_datetime(created.astimezone(UTC), usegmt=True),
            "date_sent": None, "price": None, "error_code": None, "error_message": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }

    async def _callback(self, url: str, sid: str) -> None:
        await asyncio.sleep(self.callback_delay)
        assert self.callbacks_to is not None
        params = {"MessageSid": sid, "MessageStatus": "sent", "AccountSid": self.account_sid}
        headers = {"X-Twilio-Signature": self.sign(url, params)}
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with aiohttp.ClientSession() as s, s.post(
                    self.callbacks_to + url[len(self.public_url):], data=params,
                    headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as r:
                await r.read()

    async def _list(self, request: web.Request) -> web.Response:
        """Twilio's message list: filtered by To and From, newest first, paged."""
        if not self._authorised(request):
            return self._error(20003, "Authenticate", 401)
        self.lists += 1
        q = request.query
        kind = self.list_fail.pop(0) if self.list_fail else None
        if kind is None and self.fail_lists and self.fail.rate \
                and self.fail.rng.random() < self.fail.rate:
            kind = self.fail.rng.choice(("500", "503", "429"))
        if kind is not None:
            if kind == "429":
                return self._error(20429, "Too Many Requests", 429, **{"Retry-After": "1"})
            return self._error(20500, "Internal Server Error", int(kind))
        found = [m for m in reversed(self.sent)
                 if ("To" not in q or m.to == q["To"])
                 and ("From" not in q or m.extra["From"] == q["From"])]
        size = int(q.get("PageSize", "50"))
        page = int(q.get("Page", "0"))
        chunk = found[page * size:(page + 1) * size]
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        more = len(found) > (page + 1) * size
        keep = "&".join(f"{k}={v}" for k, v in q.items() if k in ("To", "From"))
        return web.json_response({
            "messages": [self._resource(m.extra["sid"], m.extra, m.created) for m in chunk],
            "page": page, "page_size": size, "start": page * size,
            "end": page * size + len(chunk) - 1, "uri": request.path_qs,
            "first_page_uri": f"{base}?{keep}&PageSize={size}&Page=0",
            "next_page_uri": f"{base}?{keep}&PageSize={size}&Page={page + 1}" if more else None,
            "previous_page_uri": None,
        })

    def texts_to(self, phone: str) -> list[str]:
        return [s.text for s in self.sent if s.to == phone]

    def sign(self, url: str, params: dict[str, str]) -> str:
        return str(self.validator.compute_signature(url, params))

    async def webhook(self, app_url: str, public_url: str, path: str, params: dict[str, str],
                      *, signature: str | None = "sign") -> int:
        """POST a form to the app as Twilio does, signed over the public URL."""
        headers = {}
        if signature == "sign":
            headers["X-Twilio-Signature"] = self.sign(public_url + path, params)
        elif signature is not None:
            headers["X-Twilio-Signature"] = signature
        async with aiohttp.ClientSession() as s, s.post(app_url + path, data=params,
                                                        headers=headers) as r:
            await r.read()
            return r.status

    async def sms(self, app_url: str, public_url: str, from_: str, body: str,
                  sid: str | None = None, **kw: Any) -> tuple[int, str]:
        sid = sid or "SM" + secrets.token_hex(16)
        params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": self.account_sid,
                  "From": from_, "To": "+4759440000", "Body": body, "NumMedia": "0"}
        params.update({k: str(v) for k, v in kw.items()})
        return await self.webhook(app_url, public_url, "/twilio/sms", params), sid

    async def status(self, app_url: str, public_url: str, sid: str, status: str,
                     error_code: str | None = None) -> int:
        params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": self.account_sid}
        if error_code:
            params["ErrorCode"] = error_code
        return await self.webhook(app_url, public_url, "/twilio/status", params)
