"""`veivis run`: one process with the web server, the channels, the senders and the scheduler.

The web server is aiohttp: it is already installed as the HTTP client of twilio's async API,
so the webhooks need no second web stack (Starlette + uvicorn would add two packages).

Routes: GET /healthz (the process is alive), GET /readyz (database and channels ready),
GET /metrics (Prometheus, only with METRICS_TOKEN; bot/app/metrics.py), and
each configured channel's own webhooks (`bot/channels/`: SMS has POST /twilio/sms and POST
/twilio/status, Telegram POST /telegram). Shutdown on SIGTERM: stop taking webhooks
(in-flight requests finish), stop polling, let the pipeline finish what it has, let sends in
flight be recorded, close the database.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psycopg
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.app import metrics
from bot.app.config import apply_config, configured
from bot.app.metrics import Metrics
from bot.app.settings import FlowsError, Settings, digest_trigger, load_flows, open_store
from bot.channels import sms, telegram
from bot.channels.base import Channel, Hub, StartError
from bot.delivery.sender import Sender
from bot.engine.model import FlowSet
from bot.phone import normalise_phone
from bot.reports.digest import DigestJob
from bot.service.clock import Clock, system_clock
from bot.service.pipeline import Pipeline
from bot.service.scheduler import Scheduler, Ticker, start_scheduler
from bot.store import Store
from bot.store.seal import SealError
from bot.timing.planner import DEFAULT_RULES

__all__ = ["Service", "StartError", "build", "listen", "serve", "start", "stop", "web_app"]

log = logging.getLogger(__name__)



class _MalformedHttp(logging.Filter):
    """aiohttp logs a request it cannot even parse (bytes that are not HTTP, an invalid byte
    in the URL) at ERROR with a traceback, so anyone could fill the log with them. Such a
    record becomes one INFO line without the traceback; aiohttp answers it with a 400."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "refused a malformed request from %s (%s)", (
                remote, type(exc).__name__)
            record.exc_info = record.exc_text = None
        return True


logging.getLogger("aiohttp.server").addFilter(_MalformedHttp())

# every channel Veivis can run; each returns None when it is not configured
CHANNELS: tuple[Callable[[Settings, Hub], Channel | None], ...] = (
    sms.from_settings, telegram.from_settings)


@dataclass
class Service:
    settings: Settings
    store: Store
    flows: FlowSet
    pipeline: Pipeline
    clock: Clock
    ticker: Ticker
    channels: dict[str, Channel] = field(default_factory=dict)
    senders: dict[str, Sender] = field(default_factory=dict)
    accepting: bool = True
    scheduler: Scheduler | None = None
    digest: DigestJob | None = None
    reloading: asyncio.Lock = field(default_factory=asyncio.Lock)
    hub: Hub | None = None  # what the channels read the flows from
    metrics: Metrics | None = None

    def wake_senders(self) -> None:
        for s in self.senders.values():
            s.wake()

    def use_flows(self, flows: FlowSet) -> None:
        """Put new flows live: a few assignments with no await between them, so every
        message that starts after this runs on the new set (one being handled at this very
        moment may finish with texts from it). A user in the middle of a flow goes on by the
        flow-version rule in the engine: at the same question if it still exists, else a
        plain note and out of the flow."""
        self.flows = flows
        self.pipeline.flows = flows
        if self.hub is not None:
            self.hub.flows = flows
        if self.digest is not None:
            self.digest.flows = flows


def flows_dir_of(settings: Settings) -> Path:
    return settings.flows_dir


async def _reload_on_signal(svc: Service, wanted: asyncio.Event) -> None:
    while True:
        await wanted.wait()
        wanted.clear()  # signals that come while a reload runs make one more reload
        await reload_flows(svc)


def flows_for(settings: Settings) -> FlowSet:
    """The flows the settings name (VEIVIS_FLOWS, else the default folder)."""
    try:
        return load_flows(flows_dir_of(settings))
    except FlowsError as e:
        raise StartError("flytene har feil (veivis flows check viser dem):\n"
                         + "\n".join(e.lines)) from e


async def reload_flows(svc: Service) -> bool:
    """Read and check the flows on disk; put them live only if they have no errors, in one
    swap. With errors the flows already running stay, and the log says why (in Norwegian:
    coordinators read it)."""
    async with svc.reloading:
        old = svc.flows.version
        flows_dir = flows_dir_of(svc.settings)
        try:  # reading and checking takes a moment: off the event loop
            flows = await asyncio.to_thread(load_flows, flows_dir)
        except FlowsError as e:
            for line in e.lines[:50]:
                log.error("%s", line)
            log.error("flytene ble ikke lastet på nytt: %d feil (./veivis flows check viser "
                      "dem); versjon %s er fortsatt i bruk", len(e.lines), old)
            return False
        except Exception as e:
            log.error("flytene ble ikke lastet på nytt (%s); versjon %s er fortsatt i bruk",
                      type(e).__name__, old)
            return False
        svc.use_flows(flows)
        log.info("flytene er lastet på nytt: versjon %s er i bruk (var %s)",
                    flows.version, old)
        return True


def _check(settings: Settings) -> None:
    problems = settings.problems()
    if problems:
        raise StartError("innstillingene er ikke komplette:\n" + "\n".join(f"- {p}"
                                                                       for p in problems))


async def build(settings: Settings, clock: Clock = system_clock, *,
                sender_poll: float = 1.0, backoff: float = 2.0) -> Service:
    """Open everything the settings ask for; raises StartError with a plain message."""
    _check(settings)
    flows = flows_for(settings)
    conf, errors = configured(settings.config_path)
    if errors:
        raise StartError("oppsettfilen har feil:\n" + "\n".join(errors))
    rules = conf.rules if conf else DEFAULT_RULES
    try:
        store = await open_store(settings.db, settings)
    except SealError as e:
        raise StartError(str(e)) from e
    except psycopg.Error as e:  # the address without user and password
        raise StartError(f"cannot open the database at {settings.db.rpartition('@')[2]}: "
                         f"{str(e).strip() or type(e).__name__}") from e
    try:
        if conf is not None:
            await apply_config(store, conf)
        pipeline = Pipeline(store, flows, clock, rules=rules, limits=settings.limits)
        svc = Service(settings, store, flows, pipeline, clock, Ticker(store, pipeline, clock,
                                                                      rules))
        pipeline.listeners.append(svc.wake_senders)
        svc.metrics = Metrics(svc)
        hub = svc.hub = Hub(store, pipeline, flows, clock, wake=svc.wake_senders,
                            accepting=lambda: svc.accepting)
        for make in CHANNELS:
            ch = make(settings, hub)
            if ch is None:
                continue
            svc.channels[ch.name] = ch
            svc.senders[ch.name] = Sender(
                store, ch.transport, clock, rate=ch.rate,
                max_tries=int(settings.number("OUTBOX_MAX_TRIES")),
                timeout=settings.number("SEND_TIMEOUT"), poll=sender_poll, backoff=backoff)
        svc.digest = _digest(settings, svc)
        # other instances on the same database (PostgreSQL) wake these senders too
        await store.watch_outbox(svc.wake_senders)
    except BaseException:
        await store.close()
        raise
    return svc


def _digest(settings: Settings, svc: Service) -> DigestJob | None:
    if not settings.digest_on:
        return None
    folder = settings.get("DIGEST_FOLDER")
    tg = svc.channels.get(telegram.CHANNEL)
    return DigestJob(
        svc.store, svc.flows, digest_trigger(settings.get("DIGEST_SCHEDULE")),
        folder=Path(folder) if folder else None,
        bot=tg.bot if isinstance(tg, telegram.TelegramChannel) else None,
        chat_id=settings.get("DIGEST_TELEGRAM_CHAT") or None,
        phones=tuple(normalise_phone(p) for p in settings.digest_phones_raw()))


async def start(svc: Service, *, scheduler: bool = True) -> None:
    """Connect the channels and start the pipeline, senders and (optionally) the scheduler."""
    await svc.pipeline.start()
    for ch in svc.channels.values():
        await ch.start()
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
    for ch in svc.channels.values():
        await ch.stop()
    if svc.scheduler is not None:
        await svc.scheduler.stop(grace)
    await svc.pipeline.stop()
    for s in svc.senders.values():
        await s.stop(grace)
    for ch in svc.channels.values():
        await ch.close()
    await svc.store.close()


# -- the web server -----------------------------------------------------------------------------

def web_app(svc: Service) -> web.Application:
    """Health checks, and each configured channel's own webhooks."""
    middlewares = [metrics.middleware(svc.metrics)] if svc.metrics is not None else []
    app = web.Application(client_max_size=256 * 1024, middlewares=middlewares)

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "flows": svc.flows.version})

    async def readyz(request: web.Request) -> web.Response:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(svc.store.ping(), 2.0)
            checks["database"] = "ok"
        except Exception as e:
            checks["database"] = f"error: {type(e).__name__}"
        for ch in svc.channels.values():
            checks.update(ch.checks())
        for name, sender in svc.senders.items():
            checks[f"{name} sender"] = "ok" if sender.running else "stopped"
        if not svc.accepting:
            checks["server"] = "shutting down"
        ok = all(v == "ok" for v in checks.values())
        # a used-up daily budget is shown, but the service is ready: it takes webhooks and
        # answers a crisis
        checks.update(svc.pipeline.budget_status(svc.clock(), svc.channels))
        return web.json_response(checks, status=200 if ok else 503)

    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    token = svc.settings.get("METRICS_TOKEN")
    if token and svc.metrics is not None:  # off unless a token is set
        app.add_routes(metrics.routes(svc.metrics, token))
    for ch in svc.channels.values():
        app.add_routes(ch.routes())
    return app


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


def _listen_problem(e: OSError) -> str:
    if isinstance(e, socket.gaierror):
        return "finner ikke den adressen"
    known = {errno.EADDRINUSE: "porten er i bruk", errno.EACCES: "ingen tilgang til porten",
             errno.EADDRNOTAVAIL: "adressen finnes ikke på denne maskinen"}
    return known.get(e.errno or 0, f"feil fra systemet ({e.errno})")


async def serve(settings: Settings) -> int:
    """The whole life of `veivis run`, until SIGTERM or SIGINT."""
    _check(settings)  # before the numbers below are read
    grace = settings.number("VEIVIS_SHUTDOWN_SECONDS")
    offset = timedelta(seconds=settings.number("VEIVIS_CLOCK_OFFSET"))
    clock: Clock = system_clock
    if offset:
        log.warning("the clock is shifted by %.0f s (VEIVIS_CLOCK_OFFSET): drills only",
                    offset.total_seconds())
        clock = lambda: system_clock() + offset  # noqa: E731
    svc = await build(settings, clock)
    try:
        await start(svc)
        try:
            running = await listen(svc, settings.host, settings.port, grace)
        except OSError as e:  # a name that does not resolve, a port in use or not allowed
            raise StartError(f"webserveren kan ikke lytte på {settings.host}:{settings.port}"
                             f" ({_listen_problem(e)}); sjekk VEIVIS_HOST og VEIVIS_PORT"
                             ) from e
    except BaseException:
        await stop(svc, grace)
        raise
    stop_now = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_now.set)
    reload_wanted = asyncio.Event()  # SIGHUP (systemctl reload): check, then swap the flows
    loop.add_signal_handler(signal.SIGHUP, reload_wanted.set)
    reloader = asyncio.create_task(_reload_on_signal(svc, reload_wanted))
    channels = ", ".join(svc.channels) or "none"
    log.info("veivis is running on %s:%d (channels: %s); flytene: versjon %s",
                settings.host, running.port, channels, svc.flows.version)
    await stop_now.wait()
    reloader.cancel()
    log.info("stopping: finishing webhooks in flight, then messages and sends")
    svc.accepting = False
    await running.runner.cleanup()  # stops listening; waits for requests in flight
    await stop(svc, grace)
    log.info("stopped cleanly")
    return 0
