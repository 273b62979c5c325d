"""The flow model: immutable values a loaded flow file becomes, each with its file and line."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """What a question accepts as an answer."""

    TEXT = "text"
    YESNO = "yesno"
    CHOICE = "choice"
    SCALE = "scale"
    NUMBER = "number"


@dataclass(frozen=True, slots=True)
class Pos:
    """Where something was written: a file and a 1-based line."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, slots=True)
class Option:
    """One numbered option of a choice question."""

    text: str
    value: str
    also: tuple[str, ...] = ()
    pos: Pos | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a flow.

    A step says `text` (if any). With a `kind` it is a question and waits for the answer;
    without, it moves straight on. `routes` maps an answer value to the next step id;
    `next` is where to go otherwise (None: the following step, or the end of the flow).
    """

    id: str
    pos: Pos
    text: str | None = None
    kind: Kind | None = None
    save: str | None = None
    options: tuple[Option, ...] = ()
    hint: str | None = None
    optional: bool = False
    min: int | None = None
    max: int | None = None
    next: str | None = None
    routes: tuple[tuple[str, str], ...] = ()
    start_flow: str | None = None
    end: bool = False
    explains: tuple[str, ...] = ()  # words this step explains (allowed in the flow then)
    checklist: tuple[str, ...] = ()  # checklist items this step serves
    label: str | None = None  # the answer's name in the summary for the veileder
    text_pos: Pos | None = None
    hint_pos: Pos | None = None
    number: int | None = None  # {nr}: its place among the flow's questions that save an answer

    @property
    def is_question(self) -> bool:
        return self.kind is not None


@dataclass(frozen=True, slots=True)
class Flow:
    """A whole flow: ordered steps, looked up by id."""

    id: str
    title: str
    pos: Pos
    steps: tuple[Step, ...]
    version: str
    anonymous: bool = False
    description: str = ""
    summary: bool = False  # when finished, the saved answers go to the veileder as one SMS
    questions: int = 0  # {antall}: how many questions save an answer (those with a number)
    index: dict[str, int] = field(default_factory=dict, compare=False, hash=False)

    def step(self, step_id: str) -> Step | None:
        i = self.index.get(step_id)
        return None if i is None else self.steps[i]

    def following(self, step_id: str) -> Step | None:
        """The step written after `step_id`, or None at the end."""
        i = self.index[step_id] + 1
        return self.steps[i] if i < len(self.steps) else None

    @property
    def first(self) -> Step:
        return self.steps[0]


@dataclass(frozen=True, slots=True)
class Texts:
    """The system texts (help, stop, erase, re-asks) from flows/system.yaml."""

    pos: Pos
    texts: dict[str, str]
    positions: dict[str, Pos]

    def __getitem__(self, key: str) -> str:
        return self.texts[key]


@dataclass(frozen=True, slots=True)
class Checklist:
    """The veileder checklist: item id -> what it says (flows/sjekkliste.yaml)."""

    items: dict[str, str]
    positions: dict[str, Pos]


@dataclass(frozen=True, slots=True)
class FlowSet:
    """Every loaded flow plus the system texts: what the engine runs on."""

    flows: dict[str, Flow]
    texts: Texts
    checklist: Checklist | None = None
    # lang -> (context, bokmål text) -> translation; filled from messages/*.po
    catalogs: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    crisis: Any = None  # CrisisWords from flows/krise.yaml (bot.engine.crisis)
    wordlist: Any = None  # Wordlist from flows/ordliste.yaml (bot.engine.language)
    version: str = ""  # a digest of every file read: which flows (and translations) are live
    # what the engine works out from these once and reuses (a question's options and texts in
    # a language): filled as they are first needed, never part of what the flow set is
    derived: dict[tuple[str, ...], Any] = field(default_factory=dict, init=False, repr=False,
                                                compare=False)

    def get(self, flow_id: str) -> Flow | None:
        return self.flows.get(flow_id)
