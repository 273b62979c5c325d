"""The inbound pipeline: the one way in for every channel and the scheduler.

It owns ordering and persistence around the pure engine: messages are queued, taken in
batches by a single worker (so one user's messages are handled in order, and a batch of
different users shares one transaction: group commit), deduplicated by provider message id,
stepped through the engine, and their state, log and outbox rows written together.
A caller's `submit()` returns only after its message is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from . import desk
from .engine import answers
from .engine.model import FlowSet
from .engine.runtime import (
    ON_DUTY,
    AnonymousAnswer,
    Crisis,
    CrisisNotice,
    EraseUser,
    Expire,
    Forward,
    Nudge,
    Reply,
    SaveAnswer,
    SetConsent,
    SetHearBack,
    SetLanguage,
    SetStopped,
    StartFlow,
    State,
    Summary,
    UserText,
    system_text,
)
from .engine.runtime import step as engine_step
from .hours import duty
from .phone import pretty_phone
from .privacy import mask_address
from .schedule import DEFAULT_RULES, Rules
from .store import AnonymousRow, Changes, OutRow, Store, UserContext
from .store.db import PHONE_CHANNELS
from .timefmt import day_date, meeting_time

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from a user, as a channel adapter hands it over."""

    channel: str
    address: str
    text: str
    provider_id: str
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class FlowRequest:
    """Start a flow for a user (scheduler, CLI, preview); or, with `action`, nudge the user to
    finish it or let it expire. A scheduled row given as `scheduled_id` is marked done in the
    same transaction as the messages it leads to."""

    channel: str
    address: str
    flow_id: str
    meeting_id: int | None = None
    scheduled_id: int | None = None
    action: str = "start"  # start | nudge | expire


@dataclass(frozen=True, slots=True)
class Handled:
    """What happened to one submitted item, after commit."""

    replies: tuple[Reply, ...] = ()
    duplicate: bool = False
    user_id: int | None = None


Item = Inbound | FlowRequest


@dataclass
class _Pending:
    item: Item
    future: asyncio.Future[Handled] = field(repr=False)


def context_values(ctx: UserContext | None, lang: str, now: datetime | None = None,
                   closed: Collection[date] = ()) -> dict[str, str]:
    if ctx is None:
        return {}
    out: dict[str, str] = {}
    if now is not None and duty(now, ctx, closed).on_duty:
        out[ON_DUTY] = "ja"
    if ctx.first_name:
        out["fornavn"] = ctx.first_name
    if ctx.veileder:
        out["veileder"] = ctx.veileder
    if ctx.work_phone:
        out["jobbtelefon"] = pretty_phone(ctx.work_phone)
    if ctx.office:
        out["kontor"] = ctx.office
    if ctx.meeting_at is not None:
        out["møtetid"] = meeting_time(ctx.meeting_at, lang, now)
    if ctx.meeting_place:
        out["møtested"] = ctx.meeting_place
    return out


class Pipeline:
    def __init__(self, store: Store, flows: FlowSet, clock: Clock = system_clock,
                 max_batch: int = 256, rules: Rules = DEFAULT_RULES) -> None:
        self.rules = rules
        self.store = store
        self.flows = flows
        self.clock = clock
        self.max_batch = max_batch
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.processed = 0
        # called after each batch is committed (the senders wake up to send its replies)
        self.listeners: list[Callable[[], None]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="veivis-pipeline")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._worker is None:
            return
        await self._queue.join()
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None

    async def __aenter__(self) -> Pipeline:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the way in --------------------------------------------------------------------------
    async def submit(self, item: Item) -> Handled:
        fut: asyncio.Future[Handled] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(item, fut))
        if self._worker is None:
            await self.start()
        return await fut

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                rest = await self._veileder_commands(batch)
                await self._process_all(rest)
            finally:
                for _ in batch:
                    self._queue.task_done()
                for notify in self.listeners:
                    notify()

    async def _veileder_commands(self, batch: list[_Pending]) -> list[_Pending]:
        """Messages from registered veileder work phones are commands, handled by the desk;
        no other number is ever taken as a veileder. Returns the rest."""
        phones = {p.item.address for p in batch
                  if isinstance(p.item, Inbound) and p.item.channel in PHONE_CHANNELS}
        if not phones:
            return batch
        rows = await self.store.veiledere_by_phone(sorted(phones))
        if not rows:
            return batch
        veiledere = {r[2]: desk.Veileder(r[0], r[1], r[2]) for r in rows}
        rest = []
        for p in batch:
            item = p.item
            v = veiledere.get(item.address) if isinstance(item, Inbound) else None
            if v is None or not isinstance(item, Inbound):
                rest.append(p)
                continue
            try:
                reply, dup = await desk.handle(self.store, v, item.channel, item.provider_id,
                                               item.text, self.clock(), self.rules)
            except Exception as e:
                log.exception("a veileder command failed")
                p.future.set_exception(RuntimeError(f"processing failed: {type(e).__name__}"))
                continue
            log.info("veileder command from %s", mask_address(item.address))
            p.future.set_result(Handled((Reply(reply),) if reply else (), dup, None))
        return rest

    async def _process_all(self, batch: list[_Pending]) -> None:
        todo = batch
        while todo:
            try:
                todo = await self._process(todo)
            except Exception:
                if len(todo) == 1:
                    log.exception("could not process an inbound item; it stays unhandled")
                    if not todo[0].future.done():
                        todo[0].future.set_exception(RuntimeError("processing failed"))
                    return
                # isolate the item that fails: one at a time
                log.warning("a batch of %d failed; retrying one by one", len(todo))
                for p in todo:
                    await self._process_all([p])
                return

    async def _process(self, batch: list[_Pending]) -> list[_Pending]:
        """Process a batch in one transaction; returns items left for the next one."""
        now = self.clock()
        results: list[tuple[_Pending, Handled]] = []
        leftover: list[_Pending] = []
        async with self.store.batch(now) as b:
            users = await b.users_for((p.item.channel, p.item.address) for p in batch)
            seen: set[tuple[str, str]] = set()
            by_channel: dict[str, list[str]] = {}
            for p in batch:
                if isinstance(p.item, Inbound):
                    by_channel.setdefault(p.item.channel, []).append(p.item.provider_id)
            for ch, pids in by_channel.items():
                seen.update((ch, pid) for pid in await b.seen(ch, pids))
            uids = list({u.id for u in users.values()})
            raw_states = await b.states(uids)
            ctxs = await b.contexts(uids)
            meeting_ids = {p.item.meeting_id for p in batch
                           if isinstance(p.item, FlowRequest) and p.item.meeting_id}
            meeting_ids |= {s["meeting"] for s in raw_states.values() if s.get("meeting")}
            meetings = await b.meetings(sorted(meeting_ids)) if meeting_ids else {}
            states: dict[int, State] = {}
            changes = Changes()
            erased: set[int] = set()
            vars_cache: dict[int, dict[str, str]] = {}
            for i, p in enumerate(batch):
                item = p.item
                user = users[item.channel, item.address]
                if user.id in erased:
                    leftover = batch[i:]  # the user is gone: their next message makes a new one
                    break
                if isinstance(item, Inbound):
                    key = (item.channel, item.provider_id)
                    if key in seen:
                        results.append((p, Handled(duplicate=True, user_id=user.id)))
                        continue
                    seen.add(key)
                    event: UserText | StartFlow | Nudge | Expire = UserText(item.text)
                elif item.action == "nudge":
                    event = Nudge(item.flow_id)
                elif item.action == "expire":
                    event = Expire(item.flow_id)
                else:
                    event = StartFlow(item.flow_id, item.meeting_id)
                state = states.get(user.id)
                if state is None:
                    state = State.from_json(raw_states.get(user.id, {}))
                    if user.stopped != state.stopped:  # stopped outside a chat (carrier STOP)
                        state = replace(state, stopped=user.stopped)
                values = vars_cache.get(user.id)
                if values is None:
                    values = vars_cache[user.id] = context_values(
                        ctxs.get(user.id), state.lang, now, self.rules.closed_days)
                about = (item.meeting_id if isinstance(item, FlowRequest) and item.meeting_id
                         else state.meeting)
                if about in meetings:  # a flow about one meeting shows that meeting
                    starts, place = meetings[about]
                    values = {**values, "møtetid": meeting_time(starts, state.lang, now)}
                    if place:
                        values["møtested"] = place
                res = engine_step(self.flows, state, event, now, values)
                replies = res.replies
                states[user.id] = res.state
                if isinstance(item, Inbound):
                    # kept only with consent, and never inside an anonymous flow
                    keep = res.state.consent is True and not res.sensitive
                    text = answers.clean(item.text) if keep else None
                    changes.inbound.append((user.id, item.channel, item.provider_id, text,
                                            (item.received_at or now).isoformat()))
                office = ctxs[user.id].office if user.id in ctxs else None
                for eff in res.effects:
                    if isinstance(eff, SaveAnswer):
                        changes.answers.append((user.id, eff.flow, eff.key, eff.value,
                                                state.meeting))
                    elif isinstance(eff, AnonymousAnswer):
                        changes.anonymous.append(AnonymousRow(eff.flow, eff.key, eff.value,
                                                              office))
                    elif isinstance(eff, SetStopped):
                        changes.stopped[user.id] = eff.stopped
                    elif isinstance(eff, SetLanguage):
                        changes.language[user.id] = eff.lang
                        vars_cache.pop(user.id, None)  # dates in the new language
                    elif isinstance(eff, SetConsent):
                        changes.consent[user.id] = eff.consent
                    elif isinstance(eff, SetHearBack):
                        changes.hear_back[user.id] = eff.hear_back
                    elif isinstance(eff, Crisis):  # metadata only, never the text
                        log.warning("%s crisis signal from %s on %s (anonymous flow: %s); %s",
                                    "possible" if eff.possible else "clear",
                                    mask_address(item.address), item.channel,
                                    eff.in_anonymous_flow, "check-in with the numbers sent"
                                    if eff.possible else "crisis numbers sent")
                    elif isinstance(eff, EraseUser):
                        erased.add(user.id)
                    elif isinstance(eff, Forward):
                        routed = await desk.forward(b.conn, user.id, eff.text, now,
                                                    self.rules.closed_days)
                        if routed.key is not None:  # said instead of «sent»
                            replies = (*replies[:eff.keep], Reply(system_text(
                                self.flows, res.state.lang, routed.key,
                                {**values, **_when_read(routed, res.state.lang, now)})))
                    elif isinstance(eff, Summary):
                        meeting_at = meetings[about][0] if about in meetings else None
                        await desk.summary(b.conn, user.id, eff.title, eff.items, meeting_at, now,
                                           self.rules.closed_days)
                    elif isinstance(eff, CrisisNotice):
                        if await desk.crisis_notice(b.conn, user.id, now,
                                                    self.rules.closed_days):
                            log.warning("crisis notice for %s to the one on duty",
                                        mask_address(item.address))
                        else:  # nobody on duty after all: say so, never «told»
                            told = system_text(self.flows, res.state.lang, "crisis_told", values)
                            nobody = system_text(self.flows, res.state.lang, "crisis_nobody",
                                                 values)
                            replies = tuple(Reply(nobody) if r.text == told else r
                                            for r in replies)
                for r in replies:
                    changes.outbox.append(OutRow(user.id, user.channel, user.address, r.text,
                                                 r.choices, r.numbered, now))
                if isinstance(item, FlowRequest) and item.scheduled_id is not None:
                    changes.scheduled_done.append(item.scheduled_id)
                results.append((p, Handled(replies, False, user.id)))
                log.info("handled %s from %s on %s: %d replies",
                         "message" if isinstance(item, Inbound) else f"start {item.flow_id}",
                         mask_address(item.address), item.channel, len(res.replies))
            if erased:
                _forget(changes, erased)
            changes.erased = sorted(erased)
            changes.states = {uid: json.dumps(s.to_json(), ensure_ascii=False)
                              for uid, s in states.items() if uid not in erased}
            await b.write(changes)
        if changes.anonymous or changes.erased:
            await self.store.forget_history()
        self.batches += 1
        self.processed += len(results)
        for p, h in results:
            if not p.future.done():
                p.future.set_result(h)
        return leftover


def _when_read(routed: desk.Routed, lang: str, now: datetime) -> dict[str, str]:
    """{svartid} and {borte_til} for the auto-reply, in the user's language."""
    out: dict[str, str] = {}
    d = routed.duty
    if d is not None and d.read_from is not None:
        out["svartid"] = meeting_time(d.read_from, lang, now)
    if d is not None and d.away_until is not None:
        out["borte_til"] = day_date(d.away_until, lang)
    return out


def _forget(ch: Changes, erased: set[int]) -> None:
    """Drop what a batch would have written about users who asked to be erased in it."""
    ch.inbound = [(None if u in erased else u, c, pid, None if u in erased else t, at)
                  for u, c, pid, t, at in ch.inbound]
    ch.answers = [a for a in ch.answers if a[0] not in erased]
    ch.stopped = {u: v for u, v in ch.stopped.items() if u not in erased}
    ch.language = {u: v for u, v in ch.language.items() if u not in erased}
    ch.consent = {u: v for u, v in ch.consent.items() if u not in erased}
    ch.hear_back = {u: v for u, v in ch.hear_back.items() if u not in erased}
    ch.outbox = [OutRow(None, o.channel, o.address, o.text, o.choices, o.numbered, o.due_at)
                 if o.user_id in erased else o for o in ch.outbox]
