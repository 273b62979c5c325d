"""GET /metrics in the Prometheus text format (`prometheus-client`), for the operators.

Counts and timings only: never a message text, a phone number, a chat id or a user id. On
only when METRICS_TOKEN is set; the scraper sends `Authorization: Bearer <token>` (without it
/metrics answers 401; with no token set it does not exist, 404). deploy/compose.yaml's proxy
does not pass /metrics on to the internet at all.

What is counted:
- veivis_messages_in_total{channel}: messages from young people handled (after the commit);
  veivis_messages_duplicate_total{channel}: provider retries recognised and not handled again;
  veivis_flow_starts_total{channel}: flows the service started itself (reminders, surveys);
- veivis_crisis_replies_total: how many times the crisis numbers were sent (a count only);
- veivis_pipeline_latency_seconds: from a message's arrival in the pipeline to its commit;
- veivis_messages_out_total, veivis_send_retries_total, veivis_send_failed_total,
  veivis_send_unsure_total{channel}: the senders' own counts since start;
- veivis_outbox_messages{status}: rows in the outbox now, by status (read at scrape time);
- veivis_webhook_rejected_total{route,status}: webhook requests answered 4xx (bad signature,
  bad bytes, wrong secret);
- veivis_scheduler_last_tick_timestamp_seconds and veivis_scheduler_lag_seconds (how late the
  most overdue reminder of the last tick was sent).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from bot.service.pipeline import FlowRequest, Handled, Inbound, Item

if TYPE_CHECKING:
    from bot.app.server import Service

STATUSES = ("pending", "sending", "unsure", "sent", "failed")


class Metrics:
    """The counters of one running service, in a registry of its own."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_in = Counter("veivis_messages_in", "Messages from young people handled",
                                   ["channel"], registry=r)
        self.duplicates = Counter("veivis_messages_duplicate", "Provider retries of a message "
                                  "already handled", ["channel"], registry=r)
        self.flow_starts = Counter("veivis_flow_starts", "Flows the service started itself "
                                   "(reminders, preparation, surveys)", ["channel"], registry=r)
        self.crisis = Counter("veivis_crisis_replies", "Times the crisis numbers were sent",
                              registry=r)
        self.latency = Histogram("veivis_pipeline_latency_seconds", "From arrival in the "
                                 "pipeline to the commit of its batch", registry=r,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.rejected = Counter("veivis_webhook_rejected", "Webhook requests answered 4xx",
                                ["route", "status"], registry=r)
        self._outbox: dict[str, int] = {}
        r.register(_Live(self))
        svc.pipeline.observers.append(self.observe)

    def observe(self, item: Item, handled: Handled, seconds: float) -> None:
        if isinstance(item, Inbound):
            (self.duplicates if handled.duplicate else self.messages_in).labels(
                item.channel).inc()
        elif isinstance(item, FlowRequest) and not item.preview:
            self.flow_starts.labels(item.channel).inc()
        if handled.crisis:
            self.crisis.inc()
        self.latency.observe(seconds)

    async def scrape(self) -> bytes:
        self._outbox = await self.svc.store.outbox_counts()
        return generate_latest(self.registry)


class _Live(Collector):
    """What is read when scraped: the senders' counts, the outbox, the scheduler."""

    def __init__(self, m: Metrics) -> None:
        self.m = m

    def collect(self) -> Iterator[Metric]:
        svc = self.m.svc
        for name, attr, doc in (
                ("veivis_messages_out", "sent", "Messages handed to the provider and accepted"),
                ("veivis_send_retries", "retried", "Sends tried again after an error"),
                ("veivis_send_failed", "failed", "Messages given up on (marked failed)"),
                ("veivis_send_unsure", "unsure", "Sends in doubt (no answer in time)")):
            c = CounterMetricFamily(name, doc, labels=["channel"])
            for ch, sender in sorted(svc.senders.items()):
                c.add_metric([ch], getattr(sender.stats, attr))
            yield c
        g = GaugeMetricFamily("veivis_outbox_messages", "Outbox rows by status",
                              labels=["status"])
        for status in sorted(set(STATUSES) | set(self.m._outbox)):
            g.add_metric([status], self.m._outbox.get(status, 0))
        yield g
        last = svc.ticker.last_tick
        yield GaugeMetricFamily("veivis_scheduler_last_tick_timestamp_seconds",
                                "When the scheduler last finished a tick (0: not yet)",
                                value=last.timestamp() if last else 0.0)
        yield GaugeMetricFamily("veivis_scheduler_lag_seconds", "How late the most overdue "
                                "row of the last tick was sent", value=svc.ticker.last_lag)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def routes(m: Metrics, token: str) -> list[web.RouteDef]:
    async def metrics(request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.Response(status=401, text="401: Authorization: Bearer <METRICS_TOKEN>\n",
                                headers={"WWW-Authenticate": "Bearer"})
        body = await m.scrape()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/metrics", metrics)]


def middleware(m: Metrics) -> Middleware:
    """Counts webhook requests answered 4xx, by route (never the body or the sender)."""

    @web.middleware
    async def count(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            _count(m, request, e.status)
            raise
        _count(m, request, resp.status)
        return resp

    return count


def _count(m: Metrics, request: web.Request, status: int) -> None:
    if 400 <= status < 500 and request.method == "POST":
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unknown"
        m.rejected.labels(name, str(status)).inc()
