"""The pure conversation step: (flows, state, event, now, context) -> new state, replies, effects.

No I/O, no clock reads, no randomness: the same inputs give the same outputs, so a
conversation can be replayed from its inputs. Global words are handled here, before any flow.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from operator import attrgetter
from typing import Any

from bot.timing.display import day_date, meeting_time
from bot.timing.hours import Duty

from . import answers as A
from .crisis import CLEAR, CRISIS_FLOW, FORWARD_MARK, MAYBE, POSSIBLE, says_yes_to_check_in
from .model import Flow, FlowSet, Kind, Option, Step
from .templates import COUNT, NUMBER, render

# -- values in and out ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class State:
    """One user's conversation: where they are and what the bot waits for."""

    flow: str | None = None
    version: str | None = None
    step: str | None = None
    answers: Mapping[str, str] = field(default_factory=dict)
    tries: int = 0
    pending: str | None = None  # "erase": a yes/no to SLETT; "crisis": may we tell NAV;
    # "checkin": a yes/no to «are you thinking of hurting yourself?»
    stopped: bool = False
    consent: bool | None = None  # None: not asked yet (the welcome flow asks)
    lang: str = "nb"
    started_at: str | None = None
    meeting: int | None = None  # the meeting the running flow is about (reminder, survey)
    # where to go when the running flow ends: a flow the service started while the welcome
    # had not been answered (step None: start it), or the question the user was at when they
    # wrote SPRÅK (step set: ask it again)
    then: State | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in zip(_STATE_FIELDS, _STATE_VALUES(self), strict=True):
            if (k == "consent" and v is not None) or v not in (None, False, 0, {}, "nb"):
                d[k] = dict(v) if k == "answers" else v.to_json() if k == "then" else v
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> State:
        if type(d) is dict and d.keys() <= _STATE_KEYS:  # only fields (as to_json writes)
            known = dict(d)
        else:
            known = {k: d[k] for k in cls.__slots__ if k in d}
        if "answers" in known:
            known["answers"] = {str(k): str(v) for k, v in dict(known["answers"]).items()}
        if "then" in known:
            known["then"] = cls.from_json(known["then"])
        return cls(**known)


def _evolve(s: State, **changes: Any) -> State:
    """A copy of the state with some fields changed (leaner than dataclasses.replace, which
    was a third of the engine's time, and than State(...): a quarter less, measured). Every
    field is set, as State.__init__ would (test_engine checks the list is whole)."""
    assert changes.keys() <= _STATE_KEYS, changes
    new = _new(State)
    get = changes.get
    _set(new, "flow", get("flow", s.flow))
    _set(new, "version", get("version", s.version))
    _set(new, "step", get("step", s.step))
    _set(new, "answers", get("answers", s.answers))
    _set(new, "tries", get("tries", s.tries))
    _set(new, "pending", get("pending", s.pending))
    _set(new, "stopped", get("stopped", s.stopped))
    _set(new, "consent", get("consent", s.consent))
    _set(new, "lang", get("lang", s.lang))
    _set(new, "started_at", get("started_at", s.started_at))
    _set(new, "meeting", get("meeting", s.meeting))
    _set(new, "then", get("then", s.then))
    return new


_new = object.__new__
_set = object.__setattr__  # State is frozen: its own __init__ sets fields this way too
_EVOLVED = ("flow", "version", "step", "answers", "tries", "pending", "stopped", "consent",
            "lang", "started_at", "meeting", "then")  # what _evolve sets, in order


_STATE_FIELDS = State.__slots__
_STATE_VALUES = attrgetter(*_STATE_FIELDS)  # every field, in order
_STATE_KEYS = frozenset(_STATE_FIELDS)


@dataclass(frozen=True, slots=True)
class UserText:
    text: str


@dataclass(frozen=True, slots=True)
class StartFlow:
    """The service starts a flow (a reminder, the preparation, the survey). A person who has
    not said yes to the welcome gets the welcome first, and the flow after their yes; a
    `preview` (a coordinator's) starts the flow as it is."""

    flow_id: str
    meeting: int | None = None
    preview: bool = False


@dataclass(frozen=True, slots=True)
class Nudge:
    """A gentle reminder to finish a flow the user left unanswered (once)."""

    flow_id: str


@dataclass(frozen=True, slots=True)
class Expire:
    """End an unanswered flow quietly."""

    flow_id: str


Event = UserText | StartFlow | Nudge | Expire


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    choices: tuple[str, ...] = ()
    numbered: bool = False  # show the choices as a numbered list where there are no buttons


@dataclass(frozen=True, slots=True)
class SaveAnswer:
    """An answer that belongs to the user (not anonymous), e.g. where to meet."""

    flow: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class AnonymousAnswer:
    """An answer to an anonymous flow: stored with no link to the user."""

    flow: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class SetStopped:
    stopped: bool


@dataclass(frozen=True, slots=True)
class EraseUser:
    pass


@dataclass(frozen=True, slots=True)
class SetLanguage:
    lang: str


@dataclass(frozen=True, slots=True)
class SetConsent:
    consent: bool


@dataclass(frozen=True, slots=True)
class SetHearBack:
    """The user's yes or no to hearing what changed because of feedback («Du sa – vi gjorde»).
    A setting of the user, even when asked inside an anonymous flow: never what they wrote."""

    hear_back: bool


@dataclass(frozen=True, slots=True)
class Crisis:
    """A message signalled crisis: the numbers were sent (`possible`: a possible signal, and
    the user was asked whether they think of hurting themselves). Recorded without the text."""

    in_anonymous_flow: bool
    possible: bool = False


@dataclass(frozen=True, slots=True)
class Forward:
    """The user wrote a message for their veileder: the shell sends it where `duty` says (the
    work phone, or the backup while the veileder is away), not before `duty.read_from`."""

    text: str
    duty: Duty


@dataclass(frozen=True, slots=True)
class CrisisNotice:
    """Tell whoever is on duty at NAV (`duty`) to call the user (name and phone, never the
    text)."""

    duty: Duty


@dataclass(frozen=True, slots=True)
class Summary:
    """A finished flow's answers, for the veileder: (label, answer as the user chose it),
    sent where `duty` says."""

    flow: str
    title: str
    items: tuple[tuple[str, str], ...]
    duty: Duty


@dataclass(frozen=True, slots=True)
class FlowEnded:
    flow: str
    completed: bool


Effect = (SaveAnswer | AnonymousAnswer | SetStopped | EraseUser | FlowEnded | SetLanguage
          | SetConsent | SetHearBack | Crisis | CrisisNotice | Forward | Summary)


@dataclass(frozen=True, slots=True)
class Desk:
    """What a step knows about the user's veileder, read by the shell before the step: where
    a message for the veileder goes now and whether anyone reads it (`duty`; None: the user
    has no veileder), how many messages the user sent the veileder in the last hour, and
    whether NAV was told of a crisis of theirs in the last half hour."""

    duty: Duty | None = None
    forwards_last_hour: int = 0
    crisis_told_lately: bool = False  # one urgent SMS per young person per half hour
    # the shell's count of what went out, against the operator's limits: the user had as
    # many messages as they may this minute or today, or the channel's budget for today is
    # used up. Their message then gets no answer but a crisis one (see `step`).
    limited: bool = False


NO_DESK = Desk()
FORWARDS_PER_HOUR = 5  # protects the veileder's phone from one user
UNCLEAR_ANSWERED = 3  # unclear answers in a row that get a reply; after that, silence


@dataclass(frozen=True, slots=True)
class Result:
    state: State
    replies: tuple[Reply, ...] = ()
    effects: tuple[Effect, ...] = ()
    sensitive: bool = False  # the inbound text is an anonymous answer: never log or keep it


# -- global words -----------------------------------------------------------------------------

KEYWORDS: dict[str, str] = {
    "hjelp": "help", "help": "help", "hjelpe": "help",
    "stopp": "stop", "stop": "stop", "stans": "stop", "unsubscribe": "stop",
    "start": "start", "unstop": "start", "begynn": "start",
    "slett": "erase", "slett meg": "erase", "slett alt": "erase", "delete": "erase",
    "meny": "menu", "menu": "menu", "hovedmeny": "menu",
    "språk": "language", "sprak": "language", "language": "language", "målform": "language",
    "veileder": "veileder", "veilederen": "veileder", "melding til veileder": "veileder",
    "melding til veilederen": "veileder", "skriv til veileder": "veileder",
    "adviser": "veileder",
}

MENU_FLOW = "menu"
VEILEDER_FLOW = "message_veileder"
WELCOME_FLOW = "welcome"
LANGUAGE_FLOW = "language"
LANGUAGES = ("nb", "nn", "en")
SAVE_LANGUAGE = "språk"  # reserved save names: the answer changes the user's settings
SAVE_CONSENT = "samtykke"
SAVE_FORWARD = "til_veileder"  # the answer is sent to the veileder's work phone, not stored
SAVE_HEAR_BACK = "hør_tilbake"  # yes/no: the user wants «Du sa – vi gjorde» updates
# a text that says when the meeting is: said only when there is one (else system.no_meeting)
MEETING_TIME = "{møtetid}"


def tr(flows: FlowSet, lang: str, context: str, text: str) -> str:
    """The text in the user's language (bokmål is the source; a missing one falls back)."""
    if lang == "nb":
        return text
    cat = flows.catalogs.get(lang)
    return cat.get((context, text), text) if cat else text
MAX_CHAIN = 64  # steps run in a row without waiting; the checker forbids silent loops

# -- the crisis reader's verdict, remembered for short messages -------------------------------
# Every message is read for crisis (`check`), and real traffic repeats short answers («ja»,
# «1», «nei») all day. `check(text)` is a pure function of the text for a given reader, so its
# tier is remembered per reader for texts up to TIER_CACHE_TEXT characters (at most
# TIER_CACHE_SIZE of them, least recently used dropped): the same verdict, without reading
# «ja» again. Longer texts are always read afresh.
TIER_CACHE_TEXT = 64
TIER_CACHE_SIZE = 8192
_tier_caches: weakref.WeakKeyDictionary[Any, Callable[[str], str | None]] = (
    weakref.WeakKeyDictionary())


def crisis_tier(reader: Any, text: str) -> str | None:
    """`reader.check(text).tier`: CLEAR, POSSIBLE or None (remembered for short texts)."""
    if len(text) > TIER_CACHE_TEXT:
        return reader.check(text).tier  # type: ignore[no-any-return]
    try:
        cached = _tier_caches.get(reader)
        if cached is None:
            cached = _tier_caches[reader] = _tier_cache(weakref.ref(reader))
    except TypeError:  # a reader that cannot be weakly referenced: read every time
        return reader.check(text).tier  # type: ignore[no-any-return]
    return cached(text)


def _tier_cache(ref: weakref.ref[Any]) -> Callable[[str], str | None]:
    # the cache holds the reader weakly: a reloaded flow set's old reader can go away
    @lru_cache(maxsize=TIER_CACHE_SIZE)
    def tier(text: str) -> str | None:
        reader = ref()
        assert reader is not None  # the cache lives only as long as its reader
        return reader.check(text).tier  # type: ignore[no-any-return]
    return tier


def keyword(text: str) -> str | None:
    """The global word a message is, if the whole message is one (any case, any punctuation)."""
    if len(text) > 40:
        return None
    return KEYWORDS.get(A.normalise(text))


# -- the step ---------------------------------------------------------------------------------


class _Out:
    """Collects replies and effects while a step runs; holds what the step knows of the desk.
    `instead`: one reply that replaces the step's replies after the first `keep` (an honest
    answer about a message to the veileder, in place of the flow's «sent»; the crisis
    numbers said before it always stay)."""

    __slots__ = ("desk", "effects", "instead", "keep", "replies")

    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self.replies: list[Reply] = []
        self.effects: list[Effect] = []
        self.instead: Reply | None = None
        self.keep = 0

    def result(self, state: State, sensitive: bool = False) -> Result:
        replies = (tuple(self.replies) if self.instead is None
                   else (*self.replies[:self.keep], self.instead))
        return Result(state, replies, tuple(self.effects), sensitive)


def step(flows: FlowSet, state: State, event: Event, now: datetime,
         ctx: Mapping[str, str], desk: Desk = NO_DESK) -> Result:
    """Run one event against a user's state. Pure and deterministic: everything it needs to
    know (template values, the veileder's duty) comes in `ctx` and `desk`."""
    out = _Out(desk)
    if not isinstance(event, UserText):
        if isinstance(event, StartFlow):
            return out.result(_start_flow(flows, state, event, now, ctx, out))
        return out.result(_nudge_or_expire(flows, state, event, ctx, out))

    text = event.text
    current = flows.get(state.flow) if state.flow else None
    sensitive = bool(current and current.anonymous)
    # safety first: read every message, in every state, at any length
    crisis_flow = flows.get(CRISIS_FLOW)
    tier = crisis_tier(flows.crisis, text) if flows.crisis is not None and crisis_flow else None
    if tier == CLEAR and crisis_flow is not None:
        st = current.step(state.step or "") if current else None
        return out.result(_crisis_then_forward(flows, crisis_flow, current, st, state,
                                               sensitive, text, now, ctx, out), sensitive)
    if state.pending == "checkin":  # asked «are you thinking of hurting yourself?»
        state = _evolve(state, pending=None)
        answer = A.parse_yesno(text) if keyword(text) is None else None
        unsure = (answer is None and keyword(text) is None
                  and says_yes_to_check_in(text, MAYBE))
        if crisis_flow is not None and (answer == A.YES_VALUE or unsure):
            return out.result(_crisis(flows, crisis_flow, state, sensitive, ctx, out),
                              sensitive)
        if answer == A.NO_VALUE:
            out.replies.append(Reply(_sys(flows, state, "crisis_check_no", ctx)))
            _reshow(flows, current, state, ctx, out)
            return out.result(state, sensitive)
        # neither: read as it would have been
    if tier == POSSIBLE and crisis_flow is not None:
        st = current.step(state.step or "") if current else None
        return out.result(_check_in(flows, current, st, state, sensitive, text, now, ctx, out),
                          sensitive)
    if state.pending == "crisis":  # asked inside an anonymous flow: may we tell NAV?
        state = _evolve(state, pending=None)
        yes_no = A.parse_yesno(text) if keyword(text) is None else None
        if yes_no is not None:
            told = yes_no == A.YES_VALUE and out.desk.duty is not None and out.desk.duty.on_duty
            if told and out.desk.duty is not None and not out.desk.crisis_told_lately:
                out.effects.append(CrisisNotice(out.desk.duty))
            key = ("crisis_told" if told else "crisis_nobody" if yes_no == A.YES_VALUE
                   else "crisis_not_told")
            out.replies.append(Reply(_sys(flows, state, key, ctx)))
            _reshow(flows, current, state, ctx, out)
            return out.result(state, sensitive)
        # not a yes or no: taken as no, and the message is read as it would have been
    kw = keyword(text)
    if out.desk.limited:
        return out.result(_quietly(flows, state, kw, now, ctx, out), sensitive)
    if kw is not None:
        return out.result(_go_on(flows, _global(flows, state, kw, now, ctx, out), now, ctx, out),
                          sensitive)
    if state.stopped:
        return out.result(state, sensitive)  # a stopped user gets nothing until START
    if state.pending == "erase":
        return out.result(_confirm_erase(flows, state, text, out), sensitive)
    if state.flow is None:
        return out.result(_when_idle(flows, state, text, now, ctx, out))
    st = current.step(state.step or "") if current else None
    if current is None or st is None or not st.is_question:
        # the flow or the step was removed while the user was in it: move them on safely
        out.replies.append(Reply(_sys(flows, state, "flow_changed", ctx)))
        out.effects.append(FlowEnded(state.flow, False))
        return out.result(_idle(state), sensitive)
    if current.version != state.version:
        state = _evolve(state, version=current.version)
    after = _answer(flows, current, st, state, text, now, ctx, out)
    return out.result(_go_on(flows, after, now, ctx, out), sensitive)


def _start_flow(flows: FlowSet, state: State, event: StartFlow, now: datetime,
                ctx: Mapping[str, str], out: _Out) -> State:
    if state.stopped:
        return state
    if _must_introduce(flows, state, event):
        return _introduce(flows, state, event, now, ctx, out)
    if event.preview and event.flow_id != WELCOME_FLOW and state.consent is not True:
        # a coordinator's preview plays a person who has said yes (MENY in it is the menu,
        # as that person would get it); previews run on a throwaway database
        state = _evolve(state, consent=True)
        out.effects.append(SetConsent(True))
    started = _start(flows, _evolve(state, then=None), event.flow_id, now, ctx, out)
    return _evolve(started, meeting=event.meeting) if started.flow else started


def _quietly(flows: FlowSet, state: State, kw: str | None, now: datetime,
             ctx: Mapping[str, str], out: _Out) -> State:
    """Over a limit (too many messages to this person, or the channel's budget for today is
    used up): no answer, and nothing changes (the crisis answers before it are never
    limited); STOPP still stops, silently."""
    if kw != "stop":
        return state
    state = _global(flows, state, kw, now, ctx, out)
    out.replies.clear()
    return state


def _when_idle(flows: FlowSet, state: State, text: str, now: datetime, ctx: Mapping[str, str],
               out: _Out) -> State:
    """A message while no flow runs: the welcome until there is a yes, then the menu."""
    if not A.normalise(text) and not text.strip():
        return state  # empty message while idle: nothing to answer
    first = (WELCOME_FLOW if state.consent is not True and flows.get(WELCOME_FLOW)
             else MENU_FLOW)
    if flows.get(first) is None:
        out.replies.append(Reply(_sys(flows, state, "nothing_running", ctx)))
        return state
    return _start(flows, state, first, now, ctx, out)


def _nudge_or_expire(flows: FlowSet, state: State, event: Nudge | Expire,
                     ctx: Mapping[str, str], out: _Out) -> State:
    """A flow left unanswered: one gentle nudge with its question again, or a quiet end."""
    if state.then is not None and state.then.flow == event.flow_id and not state.then.step:
        # the flow waits for the welcome's yes: past its time it is not started at all
        return _evolve(state, then=None) if isinstance(event, Expire) else state
    flow = flows.get(event.flow_id)
    st = flow.step(state.step or "") if flow and state.flow == flow.id else None
    if flow is None or st is None or state.stopped:
        return state  # answered, left or stopped: nothing to do
    if isinstance(event, Expire):
        out.effects.append(FlowEnded(flow.id, False))
        return _idle(state)
    out.replies.append(Reply(_sys(flows, state, "nudge", ctx)))
    out.replies.append(_said(flows, flow, st, state, ctx))
    return state


def _must_introduce(flows: FlowSet, state: State, event: StartFlow) -> bool:
    """Whatever the service starts, a person hears who Veivis is and what is stored, and says
    yes, before any answer of theirs is kept."""
    return (not event.preview and state.consent is not True and event.flow_id != WELCOME_FLOW
            and flows.get(WELCOME_FLOW) is not None)


def _introduce(flows: FlowSet, state: State, event: StartFlow, now: datetime,
               ctx: Mapping[str, str], out: _Out) -> State:
    """The welcome first; the flow the service asked for waits for the yes (the latest one,
    if it asks again before the person answers)."""
    later = State(flow=event.flow_id, meeting=event.meeting)
    if state.flow == WELCOME_FLOW:
        return _evolve(state, then=later, meeting=event.meeting)
    started = _start(flows, state, WELCOME_FLOW, now, ctx, out)
    if started.flow is None:  # a welcome without a question: nothing to wait for
        started = _start(flows, started, event.flow_id, now, ctx, out)
        return _evolve(started, meeting=event.meeting) if started.flow else started
    return _evolve(started, then=later, meeting=event.meeting)


def _go_on(flows: FlowSet, state: State, now: datetime, ctx: Mapping[str, str],
           out: _Out) -> State:
    """When a flow has ended and something waits (`then`): start the flow that waited for the
    welcome's yes, or ask again the question the user left for SPRÅK."""
    later = state.then
    if later is None or state.flow is not None or state.pending is not None:
        return state
    state = _evolve(state, then=None)
    if state.stopped or later.flow is None:
        return state
    if later.step is None:  # waited for the welcome
        if state.consent is not True:
            return state
        started = _start(flows, state, later.flow, now, ctx, out)
        return _evolve(started, meeting=later.meeting) if started.flow else started
    flow = flows.get(later.flow)
    st = flow.step(later.step) if flow else None
    if flow is None or st is None or not st.is_question:
        out.replies.append(Reply(_sys(flows, state, "flow_changed", ctx)))
        return state
    back = _evolve(later, version=flow.version, tries=0, lang=state.lang, consent=state.consent,
                   stopped=state.stopped, pending=None)
    out.replies.append(_said(flows, flow, st, back, ctx))
    return back


def _crisis(flows: FlowSet, crisis_flow: Flow, state: State, anonymous: bool,
            ctx: Mapping[str, str], out: _Out) -> State:
    """Safety first, in every state and before any flow: the numbers at once, and the
    conversation the user was in stays where it was. If someone at NAV is on duty they are
    told to call (inside an anonymous flow only if the user says yes); if not, the user is
    told plainly that no one at NAV reads this now."""
    for st in crisis_flow.steps:
        if st.text:
            out.replies.append(Reply(render(tr(flows, state.lang, f"{CRISIS_FLOW}.{st.id}",
                                               st.text), ctx)))
    out.effects.append(Crisis(anonymous))
    duty = out.desk.duty
    if duty is None or not duty.on_duty:
        out.replies.append(Reply(_sys(flows, state, "crisis_nobody", ctx)))
    elif anonymous:
        out.replies.append(Reply(_sys(flows, state, "crisis_ask", ctx),
                                 _yesno_labels(flows, state)))
        return _evolve(state, pending="crisis")
    else:
        if not out.desk.crisis_told_lately:
            out.effects.append(CrisisNotice(duty))
        out.replies.append(Reply(_sys(flows, state, "crisis_told", ctx)))
    return state


def _reshow(flows: FlowSet, current: Flow | None, state: State, ctx: Mapping[str, str],
            out: _Out) -> None:
    """After a crisis question is answered, the flow goes on: its question again."""
    st = current.step(state.step or "") if current else None
    if current is not None and st is not None and st.is_question:
        out.replies.append(_said(flows, current, st, state, ctx))


def _forwards(current: Flow | None, st: Step | None) -> bool:
    """The user is writing a message for their veileder (a step that forwards its answer)."""
    return (current is not None and st is not None and not current.anonymous
            and st.kind is Kind.TEXT and st.save == SAVE_FORWARD)


def _send_on(flows: FlowSet, current: Flow, st: Step, state: State, text: str, mark: str,
             now: datetime, ctx: Mapping[str, str], out: _Out) -> State:
    """A crisis message written to the veileder still goes to the veileder (marked, so it
    is seen even if shortened), after the replies said so far; the flow goes on."""
    out.keep, first = len(out.replies), len(out.effects)
    after = _answer(flows, current, st, state, text, now, ctx, out)
    out.effects[first:] = [Forward(mark + e.text, e.duty) if isinstance(e, Forward) else e
                           for e in out.effects[first:]]
    return after


def _crisis_then_forward(flows: FlowSet, crisis_flow: Flow, current: Flow | None,
                         st: Step | None, state: State, anonymous: bool, text: str,
                         now: datetime, ctx: Mapping[str, str], out: _Out) -> State:
    state = _crisis(flows, crisis_flow, state, anonymous, ctx, out)
    if _forwards(current, st):
        assert current is not None and st is not None
        return _send_on(flows, current, st, state, text, FORWARD_MARK, now, ctx, out)
    return state


def _check_in(flows: FlowSet, current: Flow | None, st: Step | None, state: State,
              anonymous: bool, text: str, now: datetime, ctx: Mapping[str, str],
              out: _Out) -> State:
    """A possible signal («orker ikke mer»): a short, warm question with the numbers; a yes
    (or a «not sure») gets the crisis flow. The flow the user was in stays where it was."""
    out.replies.append(Reply(_sys(flows, state, "crisis_check", ctx),
                             _yesno_labels(flows, state)))
    out.effects.append(Crisis(anonymous, possible=True))
    if _forwards(current, st):
        assert current is not None and st is not None
        state = _send_on(flows, current, st, state, text, "", now, ctx, out)
    return _evolve(state, pending="checkin")


def system_text(flows: FlowSet, lang: str, key: str, ctx: Mapping[str, str]) -> str:
    """A system text in a language, for channels that answer outside a conversation."""
    k = ("system", lang, key)
    text: str | None = flows.derived.get(k)
    if text is None:
        text = flows.derived[k] = tr(flows, lang, f"system.{key}", flows.texts[key])
    return render(text, ctx)


def stranger_crisis(flows: FlowSet, text: str) -> tuple[str, ...]:
    """The answer to a message from someone Veivis does not know (a chat linked to no one)
    if it signals crisis of either tier: the crisis flow's numbers, then that no one at NAV
    reads this (nobody can be told: no one is assigned). Empty if it signals nothing. In
    bokmål: a stranger has chosen no language. Never limited, like every crisis answer."""
    crisis_flow = flows.get(CRISIS_FLOW)
    if flows.crisis is None or crisis_flow is None or crisis_tier(flows.crisis, text) is None:
        return ()
    texts = [render(st.text, {}) for st in crisis_flow.steps if st.text]
    return (*texts, system_text(flows, "nb", "crisis_nobody", {}))


def _sys(flows: FlowSet, state: State, key: str, ctx: Mapping[str, str],
         extra: Mapping[str, str] | None = None) -> str:
    return system_text(flows, state.lang, key, {**ctx, **extra} if extra else ctx)


def _idle(state: State) -> State:
    return _evolve(state, flow=None, version=None, step=None, answers={}, tries=0,
                   started_at=None, meeting=None)


def _global(flows: FlowSet, state: State, kw: str, now: datetime, ctx: Mapping[str, str],
            out: _Out) -> State:
    if kw == "help":
        out.replies.append(Reply(_sys(flows, state, "help", ctx)))
        return state
    if kw == "stop":
        if state.stopped:
            return state
        out.replies.append(Reply(_sys(flows, state, "stopped", ctx)))
        out.effects.append(SetStopped(True))
        if state.flow:
            out.effects.append(FlowEnded(state.flow, False))
        return _evolve(_idle(state), stopped=True, pending=None, then=None)
    if kw == "start":
        if state.stopped:
            out.replies.append(Reply(_sys(flows, state, "started", ctx)))
            out.effects.append(SetStopped(False))
            return _evolve(state, stopped=False)
        kw = "menu"
    if kw == "erase":
        out.replies.append(Reply(_sys(flows, state, "erase_confirm", ctx),
                                 _yesno_labels(flows, state)))
        return _evolve(state, pending="erase")
    # menu, language or veileder: leave the flow the user is in and start that one; after a
    # change of language the user comes back to the question they were at
    if state.stopped:
        return state
    target = {"language": LANGUAGE_FLOW, "veileder": VEILEDER_FLOW}.get(kw, MENU_FLOW)
    if target != LANGUAGE_FLOW and state.consent is not True and flows.get(WELCOME_FLOW):
        return _after_the_welcome(flows, state, target, now, ctx, out)
    then = None
    if target == LANGUAGE_FLOW and state.flow == LANGUAGE_FLOW:
        then = state.then
    elif target == LANGUAGE_FLOW and state.flow and state.step and flows.get(state.flow):
        then = _evolve(state, pending=None, tries=0)  # the question, to ask again
    elif state.flow:
        out.effects.append(FlowEnded(state.flow, False))
    if flows.get(target) is None:
        out.replies.append(Reply(_sys(flows, state, "nothing_running", ctx)))
        return _evolve(_idle(state), then=None)
    started = _start(flows, _evolve(_idle(state), then=then), target, now, ctx, out)
    return _evolve(started, meeting=then.meeting) if then and started.flow else started


def _after_the_welcome(flows: FlowSet, state: State, target: str, now: datetime,
                       ctx: Mapping[str, str], out: _Out) -> State:
    """MENY or VEILEDER from someone who has not said yes: no flow of theirs starts before
    they have heard what is stored and said yes. The welcome goes on (its question again) or
    starts; what they asked for waits for the yes."""
    waiting = state.then if state.then is not None and state.then.step is None else None
    later = waiting or State(flow=target)  # a flow the service started waits first
    welcome = flows.get(WELCOME_FLOW)
    st = welcome.step(state.step) if welcome and state.flow == WELCOME_FLOW and state.step \
        else None
    if welcome is not None and st is not None and st.is_question and state.pending is None:
        out.replies.append(_said(flows, welcome, st, state, ctx))
        return _evolve(state, then=later, tries=0)
    if state.flow:
        out.effects.append(FlowEnded(state.flow, False))
    started = _start(flows, _evolve(_idle(state), then=None), WELCOME_FLOW, now, ctx, out)
    if started.flow is None:  # a welcome without a question: nothing to wait for
        return _start(flows, started, target, now, ctx, out)
    return _evolve(started, then=later)


def _confirm_erase(flows: FlowSet, state: State, text: str, out: _Out) -> State:
    if A.parse_yesno(text) == A.YES_VALUE:
        out.replies.append(Reply(_sys(flows, state, "erased", {})))
        out.effects.append(EraseUser())
        return State(lang=state.lang)
    out.replies.append(Reply(_sys(flows, state, "erase_kept", {})))
    return _evolve(state, pending=None)


def _start(flows: FlowSet, state: State, flow_id: str, now: datetime, ctx: Mapping[str, str],
           out: _Out) -> State:
    flow = flows.get(flow_id)
    if flow is None:
        return state
    if state.flow and state.flow != flow_id:
        out.effects.append(FlowEnded(state.flow, False))
    fresh = _evolve(state, flow=flow.id, version=flow.version, step=None, answers={}, tries=0,
                    pending=None, started_at=now.isoformat(timespec="seconds"), meeting=None)
    return _run_from(flows, flow, flow.first, fresh, now, ctx, out, depth=0)


def _yesno_labels(flows: FlowSet, state: State) -> tuple[str, str]:
    return (_sys(flows, state, "yes", {}), _sys(flows, state, "no", {}))


class _Local:
    """What was worked out once for one step in one language (filled in as first needed)."""

    __slots__ = ("choices", "options", "parsed", "st", "text")

    def __init__(self, st: Step) -> None:
        self.st = st
        self.text: str | None = None
        self.options: tuple[Option, ...] | None = None
        self.choices: tuple[str, ...] | None = None
        self.parsed: dict[str, Option | None] = {}  # text -> the option it picks


def _local(flows: FlowSet, flow: Flow, st: Step, lang: str) -> _Local:
    """The step's own record in this language. The flow set is immutable, so what it holds
    stays true; the step itself is kept in it and checked, so a different step under the
    same ids never gets another's."""
    key = ("step", flow.id, st.id, lang)
    got: _Local | None = flows.derived.get(key)
    if got is None or got.st is not st:
        got = flows.derived[key] = _Local(st)
    return got


def _options(flows: FlowSet, flow: Flow, st: Step, lang: str,
             local: _Local | None = None) -> tuple[Option, ...]:
    """The options in the user's language; the bokmål words are understood as well."""
    if lang == "nb":
        return st.options
    local = local or _local(flows, flow, st, lang)
    if local.options is None:
        local.options = tuple(Option(tr(flows, lang, f"{flow.id}.{st.id}.{o.value}", o.text),
                                     o.value, (o.text, *o.also), o.pos) for o in st.options)
    return local.options


PARSED_PER_STEP = 512  # answers to one question (in one language) remembered, the first ones


def _parse_choice(flows: FlowSet, flow: Flow, st: Step, lang: str, text: str) -> Option | None:
    """`answers.parse_choice` on the question's options in the language: a pure function of
    the text for the question, so the answer to a text seen before (say «1») is remembered
    (for up to PARSED_PER_STEP texts of up to 64 characters per question and language)."""
    local = _local(flows, flow, st, lang)
    seen = local.parsed
    if text in seen:
        return seen[text]
    opt = A.parse_choice(text, _options(flows, flow, st, lang, local))
    if len(text) <= 64 and len(seen) < PARSED_PER_STEP:
        seen[text] = opt
    return opt


def _choices(flows: FlowSet, flow: Flow, st: Step, state: State,
             local: _Local | None = None) -> tuple[str, ...]:
    local = local or _local(flows, flow, st, state.lang)
    if local.choices is None:
        local.choices = _make_choices(flows, flow, st, state)
    return local.choices


def _make_choices(flows: FlowSet, flow: Flow, st: Step, state: State) -> tuple[str, ...]:
    if st.kind is Kind.CHOICE:
        return tuple(o.text for o in _options(flows, flow, st, state.lang))
    if st.kind is Kind.YESNO:
        return _yesno_labels(flows, state)
    if st.kind is Kind.SCALE:
        lo, hi = st.min or 1, st.max or 5
        return tuple(str(i) for i in range(lo, hi + 1))
    return ()


def _said(flows: FlowSet, flow: Flow, st: Step, state: State, ctx: Mapping[str, str]) -> Reply:
    """What a step says or asks, in the user's language, filled in, with its choices."""
    local = _local(flows, flow, st, state.lang)
    text = local.text
    if text is None:
        text = local.text = tr(flows, state.lang, f"{flow.id}.{st.id}", st.text or "")
    if "{" in text or "}" in text:  # (render leaves a text without either as it is)
        text = render(text, _values(flow, state, ctx, st))
    return Reply(text, _choices(flows, flow, st, state, local), st.kind is Kind.CHOICE)


def _values(flow: Flow, state: State, ctx: Mapping[str, str],
            st: Step | None = None) -> Mapping[str, str]:
    """What a step's text is filled in with: the context, the answers saved in this flow (never
    in an anonymous one), and the question's number and how many there are."""
    values = ctx if flow.anonymous or not state.answers else {**ctx, **state.answers}
    if flow.questions and st is not None:
        values = {**values, COUNT: str(flow.questions),
                  NUMBER: str(st.number) if st.number is not None else ""}
    return values


def _run_from(flows: FlowSet, flow: Flow, st: Step | None, state: State, now: datetime,
              ctx: Mapping[str, str], out: _Out, depth: int) -> State:
    """Say steps in order from `st` until a question waits or the flow ends."""
    for _ in range(MAX_CHAIN):
        if st is None:
            _finished(flows, flow, state, out)
            return _idle(state)
        if st.text is not None and st.kind is None and MEETING_TIME in st.text \
                and not ctx.get(MEETING_TIME[1:-1]):
            # never a made-up meeting: «Neste møte er tiden dere har avtalt» is no answer
            out.replies.append(Reply(_sys(flows, state, "no_meeting", ctx)))
        elif st.text is not None:
            out.replies.append(_said(flows, flow, st, state, ctx))
        if st.is_question:
            return _evolve(state, step=st.id, tries=0)
        if st.start_flow is not None:
            _finished(flows, flow, state, out)
            target = flows.get(st.start_flow)
            if target is None or depth > 4:
                return _idle(state)
            nxt = _evolve(state, flow=target.id, version=target.version, step=None, answers={},
                          tries=0, started_at=now.isoformat(timespec="seconds"))
            return _run_from(flows, target, target.first, nxt, now, ctx, out, depth + 1)
        if st.end:
            st = None
            continue
        st = flow.step(st.next) if st.next else flow.following(st.id)
    return _idle(state)  # unreachable for checked flows


def _finished(flows: FlowSet, flow: Flow, state: State, out: _Out) -> None:
    out.effects.append(FlowEnded(flow.id, True))
    if flow.summary:
        items = []
        for st in flow.steps:
            value = state.answers.get(st.save) if st.save else None
            if value is None or st.save is None:
                continue
            shown = value
            if st.kind is Kind.CHOICE:
                shown = next((o.text for o in st.options if o.value == value), value)
            elif st.kind is Kind.YESNO:
                shown = flows.texts["yes" if value == A.YES_VALUE else "no"]
            items.append((st.label or st.save.replace("_", " ").capitalize(), shown))
        duty = out.desk.duty
        if items and duty is not None:  # a user with no veileder: nobody to tell
            out.effects.append(Summary(flow.id, flow.title, tuple(items), duty))


def _answer(flows: FlowSet, flow: Flow, st: Step, state: State, text: str, now: datetime,
            ctx: Mapping[str, str], out: _Out) -> State:
    value: str | None
    kind = st.kind
    if kind is Kind.TEXT:
        cleaned = A.clean(text)
        value = cleaned if cleaned and not (st.optional and A.is_skip(text)) else None
    elif kind is Kind.YESNO:
        value = A.parse_yesno(text)
    elif kind is Kind.CHOICE:
        opt = _parse_choice(flows, flow, st, state.lang, text)
        value = opt.value if opt else None
    elif kind is Kind.SCALE:
        n = A.parse_scale(text, st.min if st.min is not None else 1,
                          st.max if st.max is not None else 5)
        value = None if n is None else str(n)
    else:  # NUMBER
        n = A.parse_number(text)
        if n is not None and ((st.min is not None and n < st.min)
                              or (st.max is not None and n > st.max)):
            n = None
        value = None if n is None else str(n)

    if value is None:
        if st.optional and A.is_skip(text):
            out.replies.append(Reply(_sys(flows, state, "skipped", ctx)))
            return _advance(flows, flow, st, state, None, now, ctx, out)
        tries = state.tries + 1
        if tries > UNCLEAR_ANSWERED:  # a few answers to unclear messages, then silence
            return _evolve(state, tries=tries)
        choices = _choices(flows, flow, st, state)
        if tries >= 2:
            key = "stuck_optional" if st.optional else "stuck"
            out.replies.append(Reply(_sys(flows, state, key, ctx), choices,
                                     st.kind is Kind.CHOICE))
        else:
            out.replies.append(Reply(_reask(flows, flow, st, state,
                                            _values(flow, state, ctx, st)),
                                     choices, st.kind is Kind.CHOICE))
        return _evolve(state, tries=tries)
    return _advance(flows, flow, st, state, value, now, ctx, out)


def _reask(flows: FlowSet, flow: Flow, st: Step, state: State,
           values: Mapping[str, str]) -> str:
    if st.hint:
        return render(tr(flows, state.lang, f"{flow.id}.{st.id}.hint", st.hint), values)
    if st.kind is Kind.YESNO:
        return _sys(flows, state, "reask_yesno", values)
    if st.kind is Kind.CHOICE:
        return _sys(flows, state, "reask_choice", values, {"antall": str(len(st.options))})
    if st.kind is Kind.SCALE:
        return _sys(flows, state, "reask_scale", values,
                    {"min": str(st.min or 1), "max": str(st.max or 5)})
    if st.kind is Kind.NUMBER:
        if st.min is not None and st.max is not None:
            return _sys(flows, state, "reask_number_range", values,
                        {"min": str(st.min), "max": str(st.max)})
        return _sys(flows, state, "reask_number", values)
    return _sys(flows, state, "reask_text", values)


def _advance(flows: FlowSet, flow: Flow, st: Step, state: State, value: str | None,
             now: datetime, ctx: Mapping[str, str], out: _Out) -> State:
    answers = state.answers
    if value is not None and st.save == SAVE_LANGUAGE and value in LANGUAGES:
        state = _evolve(state, lang=value)
        out.effects.append(SetLanguage(value))
    elif value is not None and st.save == SAVE_CONSENT:
        consent = value == A.YES_VALUE
        state = _evolve(state, consent=consent)
        out.effects.append(SetConsent(consent))
        if not consent:  # no means no messages, until the user writes START
            state = _evolve(state, stopped=True)
            out.effects.append(SetStopped(True))
    elif value is not None and st.save == SAVE_HEAR_BACK and st.kind is Kind.YESNO:
        out.effects.append(SetHearBack(value == A.YES_VALUE))
    elif value is not None and st.save == SAVE_FORWARD and not flow.anonymous:
        _forward(flows, state, value, now, ctx, out)
    elif value is not None and st.save:
        if flow.anonymous:
            out.effects.append(AnonymousAnswer(flow.id, st.save, value))
        else:
            out.effects.append(SaveAnswer(flow.id, st.save, value))
            answers = {**answers, st.save: value}
    state = _evolve(state, answers=answers, tries=0)
    target: str | None = None
    if value is not None:
        for v, t in st.routes:
            if v == value:
                target = t
                break
    if target is None:
        target = st.next
    nxt = flow.step(target) if target else flow.following(st.id)
    if st.end:
        nxt = None
    return _run_from(flows, flow, nxt, state, now, ctx, out, depth=0)


def _forward(flows: FlowSet, state: State, text: str, now: datetime, ctx: Mapping[str, str],
             out: _Out) -> None:
    """A message for the veileder: sent where the desk's duty says, and the young person is
    told honestly when to expect an answer (in place of the flow's «sent» when nobody reads
    it now, when they have no veileder, or after too many messages this hour)."""
    d = out.desk.duty
    if d is None:
        out.instead = Reply(_sys(flows, state, "forward_no_veileder", ctx))
        return
    if out.desk.forwards_last_hour >= FORWARDS_PER_HOUR:
        out.instead = Reply(_sys(flows, state, "forward_limit", ctx))
        return
    out.effects.append(Forward(text, d))
    if d.backup:
        key: str | None = "forward_away" if d.open_now else "forward_away_closed"
    elif d.away_until is not None:
        key = "forward_away_waits"
    else:
        key = None if d.open_now else "forward_closed"
    if key is not None:
        when: dict[str, str] = {}
        if d.read_from is not None:
            when["svartid"] = meeting_time(d.read_from, state.lang, now)
        if d.away_until is not None:
            when["borte_til"] = day_date(d.away_until, state.lang)
        out.instead = Reply(_sys(flows, state, key, ctx, when))
