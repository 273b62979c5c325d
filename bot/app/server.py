"""`veivis run`: one process with the web server, the channels, the senders and the scheduler.

The web server is aiohttp: it is already installed as the HTTP client of twilio's async API,
so the webhooks need no second web stack (Starlette + uvicorn would add two packages).

Routes: POST /twilio/sms (inbound SMS), POST /twilio/status (delivery reports), POST /telegram
(Telegram webhook), GET /healthz (the process is alive), GET /readyz (database and channels
ready). Shutdown on SIGTERM: stop taking webhooks (in-flight requests finish), stop polling,
let the pipeline finish what it has, let sends in flight be recorded, close the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.app.config import apply_config, configured
from bot.app.settings import FlowsError, Settings, default_flows_dir, digest_trigger, load_flows
from bot.channels import sms as S
from bot.channels import telegram as T
from bot.channels.base import reply_once
from bot.delivery.sender import Sender
from bot.engine.model import FlowSet
from bot.phone import mask_address, normalise_phone
from bot.reports.digest import DigestJob
from bot.service.clock import Clock, system_clock
from bot.service.pipeline import Inbound, Pipeline
from bot.service.scheduler import Ticker, start_scheduler
from bot.store import Store
from bot.store import outbox as O
from bot.timing.planner import DEFAULT_RULES

log = logging.getLogger(__name__)


class StartError(Exception):
    """Something an operator must fix before the bot can start; said in plain words."""


@dataclass
class Service:
    settings: Settings
    store: Store
    flows: FlowSet
    pipeline: Pipeline
    clock: Clock
    ticker: Ticker
    telegram: T.TelegramChannel | None = None
    sms_hooks: S.Webhooks | None = None
    senders: dict[str, Sender] = field(default_factory=dict)
    transports: list[object] = field(default_factory=list)
    accepting: bool = True
    scheduler: AsyncIOScheduler | None = None
    digest: DigestJob | None = None

    def wake_senders(self) -> None:
        for s in self.senders.values():
            s.wake()


def flows_for(settings: Settings) -> FlowSet:
    """The flows the settings name (VEIVIS_FLOWS, else the default folder)."""
    try:
        return load_flows(Path(settings.get("VEIVIS_FLOWS") or default_flows_dir()))
    except FlowsError as e:
        raise StartError("the flows have errors (veivis flows check shows them):\n"
                         + "\n".join(e.lines)) from e


async def build(settings: Settings, clock: Clock = system_clock, *,
                sender_poll: float = 1.0, backoff: float = 2.0) -> Service:
    """Open everything the settings ask for; raises StartError with a plain message."""
    problems = settings.problems()
    if problems:
        raise StartError("the settings are not complete:\n" + "\n".join(f"- {p}"
                                                                       for p in problems))
    flows = flows_for(settings)
    conf, errors = configured(settings.get("VEIVIS_CONFIG") or None)
    if errors:
        raise StartError("the configuration file has errors:\n" + "\n".join(errors))
    rules = conf.rules if conf else DEFAULT_RULES
    store = await Store.open(settings.db)
    try:
        if conf is not None:
            await apply_config(store, conf)
        pipeline = Pipeline(store, flows, clock, rules=rules)
        svc = Service(settings, store, flows, pipeline, clock, Ticker(store, pipeline, clock,
                                                                      rules))
        pipeline.listeners.append(svc.wake_senders)
        timeout = settings.number("SEND_TIMEOUT")
        tries = int(settings.number("OUTBOX_MAX_TRIES"))
        if settings.telegram:
            bot = T.make_bot(settings.get("TELEGRAM_BOT_TOKEN"),
                             settings.get("TELEGRAM_API_URL"), timeout)
            svc.telegram = T.TelegramChannel(
                bot, store, pipeline, flows, clock,
                webhook_secret=settings.get("TELEGRAM_WEBHOOK_SECRET"),
                on_queued=svc.wake_senders)
            tg = T.TelegramTransport(bot)
            svc.senders[T.CHANNEL] = Sender(store, tg, clock,
                                            rate=settings.number("TELEGRAM_RATE"),
                                            max_tries=tries, timeout=timeout,
                                            poll=sender_poll, backoff=backoff)
        if settings.sms:
            public = settings.public_url
            svc.sms_hooks = S.Webhooks(settings.get("TWILIO_AUTH_TOKEN"), public)
            tw = S.TwilioTransport(settings.get("TWILIO_ACCOUNT_SID"),
                                   settings.get("TWILIO_AUTH_TOKEN"), settings.get("TWILIO_FROM"),
                                   status_callback=public + S.STATUS_PATH,
                                   api_url=settings.get("TWILIO_API_URL"), timeout=timeout)
            svc.transports.append(tw)
            svc.senders[S.CHANNEL] = Sender(store, tw, clock, rate=settings.number("SMS_RATE"),
                                            max_tries=tries, timeout=timeout,
                                            poll=sender_poll, backoff=backoff)
        if settings.digest_on:
            folder = settings.get("DIGEST_FOLDER")
            svc.digest = DigestJob(
                store, flows, digest_trigger(settings.get("DIGEST_SCHEDULE")),
                folder=Path(folder) if folder else None,
                bot=svc.telegram.bot if svc.telegram is not None else None,
                chat_id=settings.get("DIGEST_TELEGRAM_CHAT") or None,
                phones=tuple(normalise_phone(p) for p in settings.digest_phones_raw()))
    except BaseException:
        await store.close()
        raise
    return svc


async def start(svc: Service, *, scheduler: bool = True) -> None:
    """Connect the channels and start the pipeline, senders and (optionally) the scheduler."""
    await svc.pipeline.start()
    if svc.telegram is not None:
        try:
            await svc.telegram.initialize()
        except Exception as e:
            raise StartError(f"Telegram did not accept the bot token or could not be reached "
                             f"({type(e).__name__}); check TELEGRAM_BOT_TOKEN") from None
        if svc.settings.telegram_webhook:
            await svc.telegram.set_webhook(svc.settings.public_url)
        else:
            await svc.telegram.start_polling()
    for s in svc.senders.values():
        await s.start()
    if scheduler:
        svc.scheduler = start_scheduler(svc.ticker)
        if svc.digest is not None:
            svc.digest.schedule(svc.scheduler, svc.clock)
            # a digest missed while the service was down is made once now
            svc.scheduler.add_job(svc.digest.catch_up, "date", args=[svc.clock()],
                                  id="digest-catch-up", misfire_grace_time=None)


async def stop(svc: Service, grace: float = 20.0) -> None:
    """Everything in order; what is queued or in flight is finished or left safely pending."""
    svc.accepting = False
    if svc.telegram is not None:
        await svc.telegram.stop_polling()
    if svc.scheduler is not None:
        svc.scheduler.shutdown(wait=False)
    await svc.pipeline.stop()
    for s in svc.senders.values():
        await s.stop(grace)
    if svc.telegram is not None and svc.telegram.ready:
        with contextlib.suppress(Exception):
            await svc.telegram.bot.shutdown()
    for t in svc.transports:
        close = getattr(t, "close", None)
        if close is not None:
            await close()
    await svc.store.close()


# -- the web server -----------------------------------------------------------------------------

def twiml() -> web.Response:
    """Empty TwiML: the replies go out through the outbox, not in the webhook's answer."""
    return web.Response(text=S.EMPTY_TWIML, content_type="text/xml")


def web_app(svc: Service) -> web.Application:
    app = web.Application(client_max_size=256 * 1024)
    routes = web.RouteTableDef()

    @routes.get("/healthz")
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    @routes.get("/readyz")
    async def readyz(request: web.Request) -> web.Response:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(svc.store.ping(), 2.0)
            checks["database"] = "ok"
        except Exception as e:
            checks["database"] = f"error: {type(e).__name__}"
        if svc.telegram is not None:
            checks["telegram"] = "ok" if svc.telegram.ready else "not connected"
        for ch, sender in svc.senders.items():
            checks[f"{ch} sender"] = "ok" if sender.running else "stopped"
        if not svc.accepting:
            checks["server"] = "shutting down"
        ok = all(v == "ok" for v in checks.values())
        return web.json_response(checks, status=200 if ok else 503)

    @routes.post(S.SMS_PATH)
    async def twilio_sms(request: web.Request) -> web.Response:
        if not svc.accepting or svc.sms_hooks is None:
            return web.Response(status=503 if svc.sms_hooks else 404)
        form = await _signed_form(request, svc.sms_hooks)
        if form is None:
            return web.Response(status=403, text="invalid signature")
        sid, sender, body = form.get("MessageSid"), form.get("From"), form.get("Body", "")
        if not sid or not sender:
            return web.Response(status=400, text="MessageSid and From are required")
        if S.media_count(form) and not body.strip():
            await reply_once(svc.store, svc.flows, S.CHANNEL, sender, sid, "media", svc.clock())
            svc.wake_senders()
        else:
            await svc.pipeline.submit(Inbound(S.CHANNEL, sender, body, sid))
        return twiml()

    @routes.post(S.STATUS_PATH)
    async def twilio_status(request: web.Request) -> web.Response:
        if svc.sms_hooks is None:
            return web.Response(status=404)
        form = await _signed_form(request, svc.sms_hooks)
        if form is None:
            return web.Response(status=403, text="invalid signature")
        got = S.status_of(form)
        if got is None:
            return web.Response(status=400, text="MessageSid and MessageStatus are required")
        sid, status, code = got
        row = await O.record_delivery(svc.store, S.CHANNEL, sid, status, code)
        if row is not None and code is not None and code.isdigit() \
                and int(code) in S.CARRIER_STOPPED:
            await O.stop_address(svc.store, S.CHANNEL, row[1], f"Twilio error {code}")
            log.info("%s replied STOP to the carrier: stopped", mask_address(row[1]))
        return web.Response(status=204)

    @routes.post(T.WEBHOOK_PATH)
    async def telegram_webhook(request: web.Request) -> web.Response:
        if svc.telegram is None:
            return web.Response(status=404)
        if not svc.telegram.secret_ok(request.headers.get(T.SECRET_HEADER)):
            log.warning("refused a Telegram webhook without the secret token (from %s)",
                        request.remote)
            return web.Response(status=403, text="forbidden")
        if not svc.accepting:
            return web.Response(status=503)  # Telegram tries again later
        try:
            data = await request.json()
        except ValueError:
            return web.Response(status=400, text="not JSON")
        if not isinstance(data, dict) or "update_id" not in data:
            return web.Response(status=400, text="not an update")
        await svc.telegram.handle(data)
        return web.Response(status=200)

    app.add_routes(routes)
    return app


async def _signed_form(request: web.Request, hooks: S.Webhooks) -> dict[str, str] | None:
    """The form fields of a webhook that Twilio signed; None (and a log line without any
    content) for a forged or unsigned one."""
    form = {k: str(v) for k, v in (await request.post()).items()}
    if hooks.valid(request.path_qs, form, request.headers.get("X-Twilio-Signature")):
        return form
    log.warning("refused a request to %s without a valid Twilio signature (from %s)",
                request.path, request.remote)
    return None


@dataclass
class Running:
    runner: web.AppRunner
    port: int


async def listen(svc: Service, host: str, port: int, shutdown_timeout: float = 20.0) -> Running:
    runner = web.AppRunner(web_app(svc), shutdown_timeout=shutdown_timeout, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    actual = sockets[0].getsockname()[1] if sockets else port
    return Running(runner, int(actual))


async def serve(settings: Settings) -> int:
    """The whole life of `veivis run`, until SIGTERM or SIGINT."""
    grace = settings.number("VEIVIS_SHUTDOWN_SECONDS")
    svc = await build(settings)
    try:
        await start(svc)
        running = await listen(svc, settings.host, settings.port, grace)
    except BaseException:
        await stop(svc, grace)
        raise
    stop_now = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_now.set)
    channels = ", ".join(svc.senders) or "none"
    log.warning("veivis is running on %s:%d (channels: %s)", settings.host, running.port,
                channels)
    await stop_now.wait()
    log.warning("stopping: finishing webhooks in flight, then messages and sends")
    svc.accepting = False
    await running.runner.cleanup()  # stops listening; waits for requests in flight
    await stop(svc, grace)
    log.warning("stopped cleanly")
    return 0
