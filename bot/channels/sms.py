"""SMS through Twilio: verified inbound webhooks, delivery reports, and sends via the REST API.

Routes: POST /twilio/sms (an inbound SMS) and POST /twilio/status (a delivery report). Both
check Twilio's signature before doing anything. Replies never go in the webhook response: the
webhook only commits the message (the pipeline answers after commit) and returns empty TwiML;
the sender sends the replies from the outbox, so a slow send never makes Twilio's webhook
time out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from twilio.base.exceptions import TwilioRestException
from twilio.http import AsyncHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from ..delivery.sender import SendError
from ..phone import mask_address
from ..service.pipeline import Inbound
from ..store import OutboxItem
from .base import Hub, oslo_day, plain_text, read_form, reply_once

if TYPE_CHECKING:
    from ..app.settings import Settings

log = logging.getLogger(__name__)
# twilio's HTTP client logs URLs (with the account) at INFO; our logs carry no such details
logging.getLogger("twilio").setLevel(logging.WARNING)

CHANNEL = "sms"
TWILIO_API = "https://api.twilio.com"
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
# the person replied STOP to the carrier; sending to them is refused until they send START
CARRIER_STOPPED = {21610}
LOOKUP = 50  # messages read from Twilio's list when a send is in doubt
SMS_PATH = "/twilio/sms"
STATUS_PATH = "/twilio/status"


def retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class HttpClient(AsyncHttpClient):  # type: ignore[misc]
    """twilio's hook for HTTP: aiohttp with a real timeout, a configurable API address (a
    fake one in tests), and 429/5xx turned into retryable errors that keep Retry-After."""

    def __init__(self, api_url: str = TWILIO_API, timeout: float = 15.0) -> None:
        super().__init__(logging.getLogger("twilio.http"), True, timeout)
        self.api_url = api_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def request(self, method: str, uri: str, params: Any = None, data: Any = None,
                      headers: Any = None, auth: Any = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> TwilioResponse:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        if uri.startswith(TWILIO_API):
            uri = self.api_url + uri[len(TWILIO_API):]
        headers = dict(headers or {})
        if auth:
            headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        try:
            async with self._session.request(
                method.upper(), uri, params=params, data=data, headers=headers,
                allow_redirects=allow_redirects,
                timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
            ) as resp:
                text = await resp.text()
        except aiohttp.ClientConnectorError as e:  # no connection: the request never left
            raise SendError(f"could not reach Twilio ({type(e).__name__})",
                            temporary=True) from None
        except (aiohttp.ClientError, TimeoutError) as e:  # it may have arrived
            raise SendError(f"no answer from Twilio ({type(e).__name__})", temporary=True,
                            doubt=True) from None
        if resp.status == 429 or resp.status >= 500:
            # 429: refused, certainly not sent; a 5xx may come after the message was created
            raise SendError(f"Twilio answered {resp.status}", temporary=True,
                            retry_after=retry_after(resp.headers), code=str(resp.status),
                            doubt=resp.status != 429)
        return TwilioResponse(resp.status, text, dict(resp.headers))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class TwilioTransport:
    """Sends outbox rows as SMS with `messages.create_async` and returns the message SID;
    finds a message in doubt in Twilio's message list (`find`).

    Each send names its row in the status callback address (`/twilio/status?row=42`), so a
    delivery report settles a row whose send was in doubt, even after a crash."""

    channel = CHANNEL

    def __init__(self, account_sid: str, auth_token: str, sender: str, *,
                 status_callback: str | None, api_url: str = TWILIO_API,
                 timeout: float = 15.0, ask_after: float = 15.0,
                 clock_offset: timedelta = timedelta(0)) -> None:
        self.http = HttpClient(api_url, timeout)
        # how far the bot's clock is ahead of the real one (a drill's VEIVIS_CLOCK_OFFSET):
        # Twilio stamps its messages with the real time
        self.clock_offset = clock_offset
        self.client = Client(account_sid, auth_token, http_client=self.http)
        self.sender = sender
        self.status_callback = status_callback
        self.ask_after: float | None = ask_after
        # twilio builds its API objects (and imports their modules) on first use: do it now,
        # so the first send is not late against the rate limiter's schedule
        self.messages = self.client.api.v2010.account.messages

    async def send(self, item: OutboxItem) -> str:
        body = plain_text(item.text, item.choices, item.numbered)
        extra: dict[str, Any] = {}
        if self.status_callback:
            extra["status_callback"] = f"{self.status_callback}?row={item.id}"
        try:
            msg = await self.messages.create_async(
                to=item.address, from_=self.sender, body=body, **extra)
        except TwilioRestException as e:
            code = int(e.code) if isinstance(e.code, int) else None
            if code in CARRIER_STOPPED:
                raise SendError(f"Twilio error {code}: the person replied STOP",
                                temporary=False, stop_user=True, code=str(code)) from None
            raise SendError(f"Twilio answered {e.status} (error {e.code})",
                            temporary=e.status == 429 or e.status >= 500,
                            code=str(e.code)) from None
        if not msg.sid:
            raise SendError("Twilio gave no message id", temporary=True)
        return str(msg.sid)

    async def find(self, item: OutboxItem, since: datetime, known: Collection[str]) -> str | None:
        """The SID of a message Twilio has for this row: to its number, from our sender,
        created at or after `since`, with the same text, not one of `known` (earlier rows').

        Twilio lists by recipient (and sender), newest first; the time is compared here on
        `date_created`, because Twilio's own date filter is by `date_sent`, which is empty
        while a message is still queued: exactly the message a lookup must not miss. The
        newest LOOKUP messages are read; a row's later messages wait behind it, so the one
        sought is among them."""
        body = plain_text(item.text, item.choices, item.numbered).strip()
        since -= self.clock_offset  # in Twilio's time
        found = await self.messages.list_async(to=item.address, from_=self.sender,
                                               limit=LOOKUP, page_size=LOOKUP)
        for m in found:
            created = m.date_created
            if m.sid in known or not isinstance(created, datetime) or created < since:
                continue
            if str(m.direction or "").startswith("outbound") and (m.body or "").strip() == body:
                return str(m.sid)
        return None

    async def close(self) -> None:
        await self.http.close()


class Webhooks:
    """Checks Twilio's signature on a webhook: HMAC of the URL Twilio called and the form
    fields, keyed with the auth token. Behind a proxy the URL is the public one."""

    def __init__(self, auth_token: str, public_url: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.public_url = public_url.rstrip("/")

    def url_for(self, path_qs: str) -> str:
        return self.public_url + path_qs

    def valid(self, path_qs: str, params: Mapping[str, str], signature: str | None) -> bool:
        if not signature:
            return False
        return bool(self.validator.validate(self.url_for(path_qs), params, signature))


# What Twilio sends, from its documentation («Twilio's request to your incoming message
# Webhook URL», twilio.com/docs/messaging/guides/webhook-request, and the status callback
# parameters of the Message resource, twilio.com/docs/messaging/guides/track-outbound-message-
# status): SMS and MMS only (this sender has no WhatsApp or RCS). Any other field is refused:
# Twilio's signature joins names and values without a separator, so an unknown field, or a
# known one missing, is how a captured request is reshaped under the same signature.
# Twilio warns it may add parameters without notice: a refused field is logged by name, and
# TWILIO_EXTRA_FIELDS lets an operator accept it at once.
INBOUND_FIELDS = frozenset({
    "MessageSid", "SmsSid", "SmsMessageSid", "AccountSid", "MessagingServiceSid", "From",
    "To", "Body", "NumMedia", "NumSegments", "SmsStatus", "ApiVersion", "FromCity",
    "FromState", "FromZip", "FromCountry", "ToCity", "ToState", "ToZip", "ToCountry",
    "OptOutType",  # Advanced Opt-Out: STOP, START or HELP
})
STATUS_FIELDS = frozenset({
    "MessageSid", "SmsSid", "MessageStatus", "SmsStatus", "AccountSid", "MessagingServiceSid",
    "From", "To", "ApiVersion", "ErrorCode", "ErrorMessage", "RawDlrDoneDate",
    "ChannelToAddress", "ChannelPrefix", "ChannelInstallSid", "ChannelStatusMessage",
    "StructuredMessage",
})
_MEDIA_FIELD = re.compile(r"Media(?:Url|ContentType)(?:[0-9]|[1-9][0-9])")  # MMS: up to 10
MESSAGE_SID = re.compile(r"(?:SM|MM)[0-9a-f]{32}")
E164 = re.compile(r"\+[1-9][0-9]{5,14}")
SENDER_ID = re.compile(r"[A-Za-z0-9 ]{1,11}")  # an alphanumeric sender, in status callbacks
# fields with a fixed form: one that swallowed the next field's name and value no longer has it
_FORMS = {"To": E164, "NumMedia": re.compile(r"[0-9]{1,2}"),
          "NumSegments": re.compile(r"[0-9]{1,3}"), "FromCountry": re.compile(r"[A-Z]{2}"),
          "ToCountry": re.compile(r"[A-Z]{2}"), "ErrorCode": re.compile(r"[0-9]{0,6}"),
          "MessagingServiceSid": re.compile(r"MG[0-9a-f]{32}")}
_SID_FIELDS = ("MessageSid", "SmsSid", "SmsMessageSid")


def shape_problem(form: Mapping[str, str], allowed: Collection[str], account_sid: str,
                  *, media: bool) -> str | None:
    """Why a signed form is not one Twilio sends (for the log: names only, never values);
    None if it is. Message ids have Twilio's form (SM or MM and 32 hex digits) and agree with
    each other; the account is ours; no field Twilio never sends; numbers, counts, countries
    and the service id have their fixed forms (so none can have swallowed the next field)."""
    for name in form:
        if name not in allowed and not (media and _MEDIA_FIELD.fullmatch(name)):
            return f"a field Twilio never sends ({name[:40]!r})"
    sids = {form[n] for n in _SID_FIELDS if n in form}
    if not sids or len(sids) > 1 or not all(MESSAGE_SID.fullmatch(v) for v in sids):
        return "message ids that are not Twilio's"
    if form.get("AccountSid") != account_sid:
        return "another account"
    for name, pattern in _FORMS.items():
        if name in form and not pattern.fullmatch(form[name]):
            return f"a {name} not in Twilio's form"
    sender = form.get("From")
    # a young person's number, always E.164 on an inbound SMS; our own sender on a status
    if sender is not None and not (E164.fullmatch(sender) or (
            not media and SENDER_ID.fullmatch(sender))):
        return "a From not in Twilio's form"
    return None


def media_count(params: Mapping[str, str]) -> int:
    try:
        return int(params.get("NumMedia", "0") or 0)
    except ValueError:
        return 0


def status_of(params: Mapping[str, str]) -> tuple[str, str, str | None] | None:
    """(message SID, status, error code) from a status callback."""
    sid = params.get("MessageSid") or params.get("SmsSid")
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid or not status:
        return None
    return sid, status.lower(), params.get("ErrorCode") or None



def twiml() -> web.Response:
    """Empty TwiML: the replies go out through the outbox, not in the webhook's answer."""
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


class SmsChannel:
    """Twilio SMS as the server runs it: the two signed webhooks, and the transport the
    sender drains the SMS outbox through."""

    name = CHANNEL

    def __init__(self, hub: Hub, transport: TwilioTransport, hooks: Webhooks,
                 rate: float, account_sid: str, extra_fields: Collection[str] = ()) -> None:
        self.hub = hub
        self.transport = transport
        self.hooks = hooks
        self.rate = rate
        self.account_sid = account_sid
        self.inbound_fields = INBOUND_FIELDS | set(extra_fields)
        self.status_fields = STATUS_FIELDS | set(extra_fields)

    def routes(self) -> list[web.RouteDef]:
        return [web.post(SMS_PATH, self.inbound), web.post(STATUS_PATH, self.status)]

    def checks(self) -> dict[str, str]:
        return {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def close(self) -> None:
        await self.transport.close()

    async def inbound(self, request: web.Request) -> web.Response:
        """An SMS to our number: committed (and deduplicated) before the empty answer."""
        if not self.hub.accepting():
            return web.Response(status=503)
        form = await self._signed_form(request, self.inbound_fields, media=True)
        if isinstance(form, web.Response):
            return form
        sid, sender, body = form.get("MessageSid"), form.get("From"), form.get("Body", "")
        if not sid or not sender:
            return web.Response(status=400, text="MessageSid and From are required")
        hub = self.hub
        if media_count(form) and not body.strip():  # one answer a day to pictures
            now = hub.clock()
            if await reply_once(hub.store, hub.flows, CHANNEL, sender, sid, "media", now,
                                (CHANNEL, "media", sender, oslo_day(now))):
                hub.wake()
        else:
            await hub.pipeline.submit(Inbound(CHANNEL, sender, body, sid))
        return twiml()

    async def status(self, request: web.Request) -> web.Response:
        """A delivery report, naming its row (`?row=`); settles a send in doubt. A carrier
        STOP (error 21610) stops the person."""
        form = await self._signed_form(request, self.status_fields, media=False)
        if isinstance(form, web.Response):
            return form
        got = status_of(form)
        rows = request.query.getall("row", [])
        row = rows[0] if len(rows) == 1 else None
        if got is None or len(rows) > 1 or (row is not None and not (
                row.isascii() and row.isdigit() and len(row) < 19)):
            return web.Response(status=400, text="MessageSid, MessageStatus and at most one "
                                "row number are required")
        sid, status, code = got
        store = self.hub.store
        d = await store.record_delivery(CHANNEL, sid, status, code,
                                    row_id=int(row) if row else None, now=self.hub.clock())
        if d is not None and d.found:
            log.info("sms message %d: Twilio's report says it was accepted; recorded",
                     d.row_id)
        if d is not None and d.second:
            log.error("sms message %d went out twice (a report for a second copy)", d.row_id)
        if d is not None and code is not None and code.isdigit() \
                and int(code) in CARRIER_STOPPED:
            await store.stop_address(CHANNEL, d.address, f"Twilio error {code}")
            log.info("%s replied STOP to the carrier: stopped", mask_address(d.address))
        return web.Response(status=204)

    async def _signed_form(self, request: web.Request, allowed: Collection[str], *,
                           media: bool) -> dict[str, str] | web.Response:
        """The form fields of a webhook that Twilio signed, in the shape Twilio sends; else
        the answer: 400 for bytes that are no UTF-8 form (checked first), 403 (and a log line
        without any content) for a forged or unsigned one, or one reshaped under a valid
        signature (`shape_problem`)."""
        form = await read_form(request)
        if form is None:
            return web.Response(status=400, text="not a UTF-8 form")
        if not self.hooks.valid(request.path_qs, form,
                                request.headers.get("X-Twilio-Signature")):
            log.warning("refused a request to %s without a valid Twilio signature (from %s)",
                        request.path, request.remote)
            return web.Response(status=403, text="invalid signature")
        problem = shape_problem(form, allowed, self.account_sid, media=media)
        if problem is not None:
            log.warning("refused a signed request to %s with %s (from %s)", request.path,
                        problem, request.remote)
            return web.Response(status=403, text="not a request Twilio sends")
        return form


def from_settings(settings: Settings, hub: Hub) -> SmsChannel | None:
    """The SMS channel, if Twilio is configured."""
    if not settings.sms:
        return None
    public = settings.public_url
    token = settings.get("TWILIO_AUTH_TOKEN")
    transport = TwilioTransport(settings.get("TWILIO_ACCOUNT_SID"), token,
                                settings.get("TWILIO_FROM"),
                                status_callback=public + STATUS_PATH,
                                api_url=settings.get("TWILIO_API_URL"),
                                timeout=settings.number("SEND_TIMEOUT"),
                                ask_after=settings.number("SMS_CHECK_SECONDS"),
                                clock_offset=timedelta(
                                    seconds=settings.number("VEIVIS_CLOCK_OFFSET")))
    extra = [f.strip() for f in settings.get("TWILIO_EXTRA_FIELDS").split(",") if f.strip()]
    return SmsChannel(hub, transport, Webhooks(token, public), settings.number("SMS_RATE"),
                      settings.get("TWILIO_ACCOUNT_SID"), extra)
