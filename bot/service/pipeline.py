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
import gc
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from json.encoder import encode_basestring as _quote  # json.dumps's own (C)
from operator import attrgetter
from typing import NamedTuple

from bot.engine import answers
from bot.engine.model import FlowSet
from bot.engine.runtime import (
    NO_DESK,
    Crisis,
    Desk,
    Expire,
    Nudge,
    Reply,
    StartFlow,
    State,
    UserText,
)
from bot.engine.runtime import step as engine_step
from bot.phone import mask_address, pretty_phone
from bot.service import desk
from bot.service.clock import Clock, system_clock
from bot.service.effects import Scope, apply
from bot.store import Changes, OutRow, UserContext, UserRow
from bot.store.protocol import BatchTransaction as Batch
from bot.store.protocol import Database
from bot.store.sql import PHONE_CHANNELS, together
from bot.timing.display import meeting_time
from bot.timing.hours import duty
from bot.timing.planner import DEFAULT_RULES, OSLO, Rules

log = logging.getLogger(__name__)

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
    preview: bool = False  # a coordinator's preview: the flow as it is, without the welcome


class Handled(NamedTuple):
    """What happened to one submitted item, after commit (a named tuple: one is made for
    every message, and a frozen dataclass costs twice as much to make)."""

    replies: tuple[Reply, ...] = ()
    duplicate: bool = False
    user_id: int | None = None
    crisis: bool = False  # the step sent crisis numbers (a count for /metrics, nothing more)


Item = Inbound | FlowRequest


@dataclass(frozen=True)
class Limits:
    """What a message from outside may cost, from the operator's settings (0: no limit).
    The pipeline counts what went out before each step and tells the engine only whether
    the user is over a limit (`Desk.limited`); the engine decides what that means (no
    answer, except to a crisis). Reminders and other flows the service starts itself, and
    the desk's answers to veiledere, are not limited, but count."""

    per_minute: int = 0  # messages to one person in the last minute
    per_day: int = 0  # ... in the last 24 hours
    new_per_hour: int = 0  # people never answered, with no veileder, answered in an hour
    budgets: Mapping[str, int] = field(default_factory=dict)  # channel -> a day (Oslo)


def oslo_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(OSLO).date(), datetime.min.time(), OSLO)


class _Pending(NamedTuple):  # one made for every message: a tuple costs the least
    item: Item
    future: asyncio.Future[Handled]
    queued: float  # time.monotonic() when submitted


def context_values(ctx: UserContext | None, lang: str,
                   now: datetime | None = None) -> dict[str, str]:
    """The template values a flow may show about the user ({fornavn}, {veileder}, ...)."""
    if ctx is None:
        return {}
    out: dict[str, str] = {}
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
    def __init__(self, store: Database, flows: FlowSet, clock: Clock = system_clock,
                 max_batch: int = 256, rules: Rules = DEFAULT_RULES,
                 limits: Limits = Limits()) -> None:
        self.rules = rules
        self.limits = limits
        self.budget_used_up: dict[str, date] = {}  # channel -> the Oslo day it ran out
        self.store = store
        self.flows = flows
        self.clock = clock
        self.max_batch = max_batch
        # any limit set (else no message is ever limited, and counting is skipped)
        self._limits_on = bool(limits.per_minute or limits.per_day or limits.new_per_hour
                               or any(limits.budgets.values()))
        # what was submitted and not taken yet (a deque and two events: asyncio.Queue cost
        # more per message than the rest of the way in)
        self._queued: deque[_Pending] = deque()
        self._arrived = asyncio.Event()  # set when something is queued
        self._settled = asyncio.Event()  # set when nothing is queued or being processed
        self._settled.set()
        self._open = 0  # items queued or being processed
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.processed = 0
        # called after each batch is committed (the senders wake up to send its replies)
        self.listeners: list[Callable[[], None]] = []
        # told of each item after its batch committed: the item, what happened, seconds from
        # submit to commit (bot.app.metrics counts these; never the text)
        self.observers: list[Callable[[Item, Handled, float], None]] = []
        # the states read and written, parsed once (a user's next message finds the state
        # this pipeline wrote for them without reading the JSON again)
        self.state_texts = StateTexts()
        # when a list: every step's inputs, so a test can replay the pure step and compare
        self.trace: list[StepInputs] | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def _release(self, now: datetime) -> None:
        """Release what enough people answered. The batch is committed already: a failure
        here loses nothing (the answers wait, sealed) and is tried again with the next
        anonymous answer and at every start."""
        try:
            await self.store.release_anonymous(now)
        except Exception:
            log.exception("releasing anonymous answers failed; they wait in the pool")

    async def start(self) -> None:
        if self._worker is None:
            _settle_heap()
            # answers pooled before a crash that came between their batch and the release
            await self._release(self.clock())
            self._worker = asyncio.create_task(self._run(), name="veivis-pipeline")

    async def stop(self) -> None:
        """Finish what is queued, then stop."""
        if self._worker is None:
            return
        await self._settled.wait()
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
        self._queued.append(_Pending(item, fut, time.monotonic()))
        self._open += 1
        self._settled.clear()
        self._arrived.set()
        if self._worker is None:
            await self.start()
        return await fut

    async def _run(self) -> None:
        queued = self._queued
        while True:
            if not queued:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            batch = [queued.popleft() for _ in range(min(len(queued), self.max_batch))]
            try:
                rest = await self._veileder_commands(batch)
                await self._process_all(rest)
            finally:
                self._open -= len(batch)
                if self._open == 0:
                    self._settled.set()
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
            w = await self._load(b, batch, now)
            for i, p in enumerate(batch):
                user = w.users[p.item.channel, p.item.address]
                if user.id in w.erased:
                    leftover = batch[i:]  # the user is gone: their next message makes a new one
                    break
                results.append((p, await self._one(b, w, p.item, user, now)))
            if w.erased:
                _forget(w.changes, w.erased)
            w.changes.erased = sorted(w.erased)
            w.changes.states = {uid: self.state_texts.encode(st)
                                for uid, st in w.states.items() if uid not in w.erased}
            await b.write(w.changes)
        if w.changes.anonymous:
            await self._release(now)
        if w.changes.erased or self.store.history_pending:
            await self.store.forget_history()
        self.batches += 1
        self.processed += len(results)
        for p, h in results:
            if not p.future.done():
                p.future.set_result(h)
        for observe in self.observers:  # after the commit: what happened, counted once
            for p, h in results:
                observe(p.item, h, time.monotonic() - p.queued)
        return leftover

    async def _load(self, b: Batch, batch: list[_Pending], now: datetime) -> _Work:
        """Everything the batch's steps need, read with a few set-wise queries."""
        lim = self.limits
        top = await b.newest_user() if lim.new_per_hour else 0
        by_channel: dict[str, list[str]] = {}
        for p in batch:
            if isinstance(p.item, Inbound):
                by_channel.setdefault(p.item.channel, []).append(p.item.provider_id)
        # the reads go to the database together, in this order (one wait, not one each)
        users, *seen_ids = await together(
            b.users_for((p.item.channel, p.item.address) for p in batch),
            *(b.seen(ch, pids) for ch, pids in by_channel.items()))
        seen = {(ch, pid) for ch, got in zip(by_channel, seen_ids, strict=True) for pid in got}
        uids = list({u.id for u in users.values()})
        texts, ctxs = await together(b.states(uids), b.contexts(uids))
        states = {uid: self.state_texts.decode(t) for uid, t in texts.items()}
        meeting_ids = {p.item.meeting_id for p in batch
                       if isinstance(p.item, FlowRequest) and p.item.meeting_id}
        meeting_ids |= {s.meeting for s in states.values() if s.meeting}
        meetings = await b.meetings(sorted(meeting_ids)) if meeting_ids else {}
        with_veileder = [uid for uid, c in ctxs.items() if c.work_phone]
        forwards = await b.desk_events(with_veileder, now) if with_veileder else {}
        w = _Work(users, seen, states, ctxs, meetings, forwards, now_iso=now.isoformat())
        if lim.new_per_hour and any(_blank(texts.get(u.id)) for u in users.values()):
            w.newest = top  # someone Veivis never answered writes: count this hour's
            w.strangers = await b.strangers_since(now - timedelta(hours=1), top)
        writers = sorted({users[p.item.channel, p.item.address].id for p in batch
                          if isinstance(p.item, Inbound)})
        if writers and (lim.per_minute or lim.per_day):
            got = await b.sent_to(writers, now - timedelta(minutes=1), now - timedelta(days=1))
            w.sent = {uid: list(got.get(uid, (0, 0))) for uid in writers}
        budgeted = sorted({p.item.channel for p in batch if lim.budgets.get(p.item.channel)})
        if budgeted:
            w.spent = await b.sent_on(budgeted, oslo_midnight(now))
        return w

    async def _one(self, b: Batch, w: _Work, item: Item, user: UserRow,
                   now: datetime) -> Handled:
        """One item: the engine's step, then its effects carried out as decided."""
        inbound = isinstance(item, Inbound)
        uid = user.id
        if isinstance(item, Inbound):
            key = (item.channel, item.provider_id)
            if key in w.seen:
                return Handled(duplicate=True, user_id=uid)
            w.seen.add(key)
        state = w.state_of(user)
        ctx = w.ctxs.get(uid)
        about = (item.meeting_id if isinstance(item, FlowRequest) and item.meeting_id
                 else state.meeting)
        values = self._values(w, uid, state.lang, about, now)
        limited = inbound and self._limits_on and self._limited(
            w, uid, item.channel, now, state == _FRESH and not (ctx and ctx.veileder))
        event = UserText(item.text) if isinstance(item, Inbound) else _event(item)
        desk_now = self._desk(w, uid, ctx, now, limited)
        if self.trace is not None:
            self.trace.append(StepInputs(uid, state, event, now, values, desk_now))
        res = engine_step(self.flows, state, event, now, values, desk_now)
        new, replies, effects = res.state, res.replies, res.effects
        changes = w.changes
        if replies:
            w.count(uid, user.channel, len(replies))
        w.states[uid] = new
        if new.lang != state.lang:
            w.values.pop(uid, None)  # dates in the new language from now on
        if isinstance(item, Inbound):
            if res.sensitive:  # typed inside an anonymous flow: no trace tied to the person
                changes.seen_only.append((item.channel, item.provider_id))
            else:  # the text kept only with consent
                at = item.received_at
                changes.inbound.append((uid, item.channel, item.provider_id,
                                        answers.clean(item.text) if new.consent is True
                                        else None,
                                        w.now_iso if at is None else at.isoformat()))
        crisis = False
        if effects:
            scope = Scope(b, changes, user, now, ctx.office if ctx else None, state.meeting,
                          w.meetings[about][0] if about in w.meetings else None, w.erased)
            for eff in effects:
                crisis = crisis or isinstance(eff, Crisis)
                await apply(eff, scope)
        for r in replies:
            changes.outbox.append(OutRow(uid, user.channel, user.address, r.text,
                                         r.choices, r.numbered, now))
        if isinstance(item, FlowRequest) and item.scheduled_id is not None:
            changes.scheduled_done.append(item.scheduled_id)
        if log.isEnabledFor(logging.INFO):
            log.info("handled %s from %s on %s: %d replies",
                     "message" if isinstance(item, Inbound) else f"start {item.flow_id}",
                     mask_address(item.address), item.channel, len(replies))
        return Handled(replies, False, uid, crisis)

    def _values(self, w: _Work, uid: int, lang: str, about: int | None,
                now: datetime) -> dict[str, str]:
        values = w.values.get(uid)
        if values is None:
            values = w.values[uid] = context_values(w.ctxs.get(uid), lang, now)
        if about in w.meetings:  # a flow about one meeting shows that meeting
            starts, place = w.meetings[about]
            values = {**values, "møtetid": meeting_time(starts, lang, now)}
            if place:
                values["møtested"] = place
        return values

    def _desk(self, w: _Work, uid: int, ctx: UserContext | None, now: datetime,
              limited: bool = False) -> Desk:
        """Who reads a message for the veileder now, decided once, before the step; and
        whether the user is over a limit."""
        if ctx is None or not ctx.work_phone:
            return _LIMITED if limited else NO_DESK
        forwards, crisis = w.forwards.get(uid, (0, False))
        return Desk(duty(now, ctx, self.rules.closed_days), forwards, crisis, limited)

    def _limited(self, w: _Work, uid: int, channel: str, now: datetime,
                 stranger: bool) -> bool:
        """Has this person had as many messages as they may (this minute, today), or is
        the channel's budget for today used up? Counted before the step, with what this
        batch queued so far."""
        lim = self.limits
        if w.newest is not None and stranger:
            # someone Veivis never answered, with no veileder: only so many new people an
            # hour (counted as they are made) get an answer; the rest do when they write
            # again after the hour
            if uid > w.newest and uid not in w.counted:
                w.strangers += 1
                w.counted.add(uid)
            if w.strangers > lim.new_per_hour:
                return True
        minute, day = w.sent.get(uid, (0, 0))
        budget = lim.budgets.get(channel, 0)
        if budget and w.spent.get(channel, 0) >= budget:
            today = now.astimezone(OSLO).date()
            if self.budget_used_up.get(channel) != today:
                self.budget_used_up[channel] = today
                log.warning("the %s budget of %d messages for today is used up: until "
                            "midnight only crisis answers go out to messages on it",
                            channel, budget)
            return True
        return bool((lim.per_minute and minute >= lim.per_minute)
                    or (lim.per_day and day >= lim.per_day))

    def budget_status(self, now: datetime, channels: Collection[str]) -> dict[str, str]:
        """For /readyz: each of these channels with a budget, and whether its budget for
        today ran out."""
        today = now.astimezone(OSLO).date()
        return {f"{ch} budget": ("used up today (only crisis answers until midnight)"
                                 if self.budget_used_up.get(ch) == today else "ok")
                for ch, n in sorted(self.limits.budgets.items()) if n and ch in channels}


@dataclass(frozen=True)
class StepInputs:
    """What one step was given (for replaying it)."""

    user_id: int
    state: State
    event: UserText | StartFlow | Nudge | Expire
    now: datetime
    values: dict[str, str]
    desk: Desk


@dataclass
class _Work:
    """A batch in progress: what was read for it and what it will write."""

    users: dict[tuple[str, str], UserRow]
    seen: set[tuple[str, str]]
    stored: dict[int, State]  # each user's state as the batch found it
    ctxs: dict[int, UserContext]
    meetings: dict[int, tuple[datetime, str | None]]
    forwards: dict[int, tuple[int, bool]]  # messages to the veileder this hour; crisis told
    states: dict[int, State] = field(default_factory=dict)
    values: dict[int, dict[str, str]] = field(default_factory=dict)
    changes: Changes = field(default_factory=Changes)
    erased: set[int] = field(default_factory=set)
    # for the limits: messages queued to each writer in the last minute and day, and on
    # each budgeted channel today (read before the batch, counted on as it runs)
    sent: dict[int, list[int]] = field(default_factory=dict)
    spent: dict[str, int] = field(default_factory=dict)
    newest: int | None = None  # users above this id are new in this batch
    now_iso: str = ""  # the batch's time, as an inbound row without its own is logged
    strangers: int = 0  # people made by a message, with no veileder, in the last hour
    counted: set[int] = field(default_factory=set)  # new in this batch, counted

    def count(self, uid: int, channel: str, n: int) -> None:
        if n:
            if uid in self.sent:
                self.sent[uid][0] += n
                self.sent[uid][1] += n
            if channel in self.spent:
                self.spent[channel] += n

    def state_of(self, user: UserRow) -> State:
        state = self.states.get(user.id)
        if state is None:
            state = self.stored.get(user.id, _FRESH)
            if user.stopped != state.stopped:  # stopped outside a chat (carrier STOP)
                state = replace(state, stopped=user.stopped)
        return state


_FRESH = State()  # someone Veivis never answered
_LIMITED = Desk(limited=True)
_STATE_JSON = json.JSONEncoder(ensure_ascii=False)  # json.dumps(..., ensure_ascii=False)


_heap_settled = False


def _settle_heap() -> None:
    """Once per process, when the first pipeline starts: what was loaded before it (the
    flows, the crisis reader's word lists and indexes, the modules) lives as long as the
    process, so it is moved out of the garbage collector's sight (gc.freeze, after one
    collection of what loading left behind). Otherwise every full collection walks it all
    again while every message waits: measured, a tenth to a fifth of the pipeline's own CPU in
    bench/pipeline.py. Objects are still freed as before; only these are never walked."""
    global _heap_settled
    if not _heap_settled:
        _heap_settled = True
        gc.collect()
        gc.freeze()


def _blank(text: str | None) -> bool:
    """No state stored, or an empty one: Veivis never answered this person."""
    return text is None or not json.loads(text)


class StateTexts:
    """Conversation states to and from their stored JSON text, remembering the State each
    text is (at most SIZE texts, the oldest forgotten first). A text read is remembered as
    it reads (`State.from_json` is a pure function of it); a text written only when reading
    it back gives the very same state (see `_state_text`)."""

    SIZE = 8192

    def __init__(self) -> None:
        self._known: dict[str, State] = {}

    def decode(self, text: str) -> State:
        state = self._known.get(text)
        if state is None:
            state = State.from_json(json.loads(text))
            self._remember(text, state)
        return state

    def encode(self, state: State) -> str:
        got = _state_text(state)
        if got is None:
            return _STATE_JSON.encode(state.to_json())
        text, exact = got
        if exact:
            self._remember(text, state)
        return text

    def _remember(self, text: str, state: State) -> None:
        known = self._known
        known[text] = state
        if len(known) > self.SIZE:
            del known[next(iter(known))]


_FIELDS = State.__slots__
_VALUES = attrgetter(*_FIELDS)
_DEFAULTS = _VALUES(State())
_OMITTED: tuple[object, ...] = (None, False, 0, {}, "nb")  # what State.to_json leaves out


_PREFIXES = tuple(f'"{k}": ' for k in _FIELDS)


def _state_text(state: State) -> tuple[str, bool] | None:
    """`json.dumps(state.to_json(), ensure_ascii=False)` written in one pass, and whether
    reading it back gives this very state: it does unless a field holds a value to_json
    leaves out that is not the field's default (a flow called «nb», a meeting 0). None for
    a value of a kind this does not write (then json.dumps does)."""
    parts = []
    exact = True
    for k, v, d, prefix in zip(_FIELDS, _VALUES(state), _DEFAULTS, _PREFIXES, strict=True):
        # the common kinds first, each left out exactly when to_json leaves it out
        if v is None:
            if d is not None:
                exact = False  # left out: it reads back as the default
            continue
        t = type(v)
        if t is str and k != "consent":
            if v == "nb":
                if d != "nb":
                    exact = False
                continue
            parts.append(prefix + _quote(v))
            continue
        if not ((k == "consent" and v is not None) or v not in _OMITTED):
            if v != d:
                exact = False
            continue
        if t is str:
            val = _quote(v)
        elif t is bool:
            val = "true" if v else "false"
        elif t is int:
            val = int.__repr__(v)
        elif k == "answers" and t is dict:
            items = []
            for a, x in v.items():
                if type(a) is not str or type(x) is not str:
                    return None
                items.append(f"{_quote(a)}: {_quote(x)}")
            val = "{" + ", ".join(items) + "}"
        elif k == "then" and t is State:
            inner = _state_text(v)
            if inner is None:
                return None
            val, exact = inner[0], exact and inner[1]
        else:
            return None
        parts.append(prefix + val)
    return "{" + ", ".join(parts) + "}", exact


def _event(item: Item) -> UserText | StartFlow | Nudge | Expire:
    if isinstance(item, Inbound):
        return UserText(item.text)
    if item.action == "nudge":
        return Nudge(item.flow_id)
    if item.action == "expire":
        return Expire(item.flow_id)
    return StartFlow(item.flow_id, item.meeting_id, item.preview)


def _forget(ch: Changes, erased: set[int]) -> None:
    """Drop what a batch would have written about users who asked to be erased in it."""
    ch.inbound = [(None if u in erased else u, c, pid, None if u in erased else t, at)
                  for u, c, pid, t, at in ch.inbound]
    ch.answers = [a for a in ch.answers if a[0] not in erased]
    ch.stopped = {u: v for u, v in ch.stopped.items() if u not in erased}
    ch.language = {u: v for u, v in ch.language.items() if u not in erased}
    ch.consent = {u: v for u, v in ch.consent.items() if u not in erased}
    ch.hear_back = {u: v for u, v in ch.hear_back.items() if u not in erased}
    ch.outbox = [OutRow(None, o.channel, o.address, o.text, o.choices, o.numbered, o.due_at,
                        forget=True)
                 if o.user_id in erased else o for o in ch.outbox]
