"""Fake provider servers on 127.0.0.1: the Telegram Bot API and Twilio's REST API.

They speak the real wire formats, so python-telegram-bot and twilio run unchanged against
them (PTB through `base_url`, twilio through our HTTP client hook). Each can be told to fail
a share of sends with 500s and timeouts; a failed send is never recorded as delivered (a
timeout is modelled as a request the provider never accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

Failure = str | None  # None | "500" | "timeout" | "429" | "403" | "21610"


class FailurePlan:
    """Decides per send whether it fails: a share at random (seeded), or listed outcomes."""

    def __init__(self) -> None:
        self.rate = 0.0
        self.kinds: tuple[str, ...] = ("500", "timeout")
        self.queue: list[Failure] = []
        self.rng = random.Random(7)
        self.for_address: dict[str, str] = {}

    def next(self, address: str) -> Failure:
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
    at: float = 0.0


class _Server:
    def __init__(self) -> None:
        self.app = web.Application()
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.fail = FailurePlan()
        self.hang_seconds = 2.0  # longer than the client's timeout in tests
        self.requests = 0
        self.closing = False

    def wake(self) -> None:
        """Let long polls return (at close)."""

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
        if failure == "500":
            return web.json_response({"ok": False, "error_code": 500,
                                      "description": "Internal Server Error"}, status=500)
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
    """POST /2010-04-01/Accounts/{sid}/Messages.json, with basic auth; and what Twilio does
    towards the app: signed inbound SMS webhooks and status callbacks."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.validator = RequestValidator(auth_token)
        self.sent: list[Sent] = []
        self.app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)

    async def _create(self, request: web.Request) -> web.Response:
        auth = aiohttp.BasicAuth.decode(request.headers.get("Authorization", ""))
        if (auth.login, auth.password) != (self.account_sid, self.auth_token) or \
                request.match_info["sid"] != self.account_sid:
            return web.json_response({"code": 20003, "message": "Authenticate",
                                      "status": 401}, status=401)
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests += 1
        failure = self.fail.next(form.get("To", ""))
        if failure == "timeout":
            await asyncio.sleep(self.hang_seconds)
            return web.json_response({"code": 20500, "message": "late", "status": 500},
                                     status=500)
        if failure == "500":
            return web.json_response({"code": 20500, "message": "Internal Server Error",
                                      "status": 500}, status=500)
        if failure == "429":
            return web.json_response({"code": 20429, "message": "Too Many Requests",
                                      "status": 429}, status=429, headers={"Retry-After": "1"})
        if failure == "21610":
            return web.json_response({"code": 21610, "message": "Attempt to send to "
                                      "unsubscribed recipient", "status": 400}, status=400)
        if not form.get("To") or not form.get("Body") or not form.get("From"):
            return web.json_response({"code": 21604, "message": "A 'To' phone number is "
                                      "required.", "status": 400}, status=400)
        sid = "SM" + secrets.token_hex(16)
        self.sent.append(Sent(form["To"], form["Body"], {"sid": sid, **form}, time.monotonic()))
        return web.json_response({
            "sid": sid, "account_sid": self.account_sid, "to": form["To"],
            "from": form["From"], "body": form["Body"], "status": "queued",
            "num_segments": "1", "direction": "outbound-api", "api_version": "2010-04-01",
            "date_created": "Mon, 23 Nov 2026 11:00:00 +0000", "price": None,
            "error_code": None, "error_message": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }, status=201)

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
