"""The report for the resource group: anonymous survey answers and feedback. Pure.

Input is the anonymous rows (flow, question, value, ISO week, office) of a period and of the
period before, and the flows (for question labels and option texts). Output is a `Report`
that `bot.reports.formats` writes as HTML, Markdown or CSV.

Small groups are hidden. A count from 1 to 4 is hidden; if that leaves one hidden cell in a
question, the next smallest cell is hidden too, so no hidden count can be worked out from the
total (secondary suppression). Every hidden cell is shown with the same neutral mark,
«skjult», as statistics offices do: the second hidden count may be 5 or more, so saying
«færre enn 5» about it would be false, and marking the two differently would tell which one is
small. Only a total hidden because it is below 5 says «færre enn 5». A question answered by
fewer than 5 shows nothing but that; a mean is shown only when no cell is hidden. Free texts
are shown only when at least 5 wrote in the period, and a topic with fewer than 5 texts is
pooled with the others.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from babel.numbers import format_decimal

from bot.engine.answers import NO_VALUE, YES_VALUE
from bot.engine.model import Flow, FlowSet, Kind, Step
from bot.timing.planner import OSLO

MIN_GROUP = 5
HIDDEN = "skjult"  # a hidden cell: small, or hidden to protect a small one (any size)
FEWER = "færre enn 5"  # a total hidden because it is below MIN_GROUP (always true)
SURVEY_FLOWS = ("first_meeting_survey",)
FEEDBACK_FLOWS = ("feedback",)


@dataclass(frozen=True)
class AnonRow:
    """How many gave this answer in the period (the database counts; texts come one by one
    unless two wrote the very same)."""

    flow: str
    question: str
    value: str
    office: str | None
    n: int = 1


@dataclass(frozen=True)
class Period:
    """Whole ISO weeks (the anonymous rows keep no finer time)."""

    first: date  # Monday of the first week
    weeks: int

    @property
    def keys(self) -> tuple[str, ...]:
        out = []
        for i in range(self.weeks):
            y, w, _ = (self.first + timedelta(weeks=i)).isocalendar()
            out.append(f"{y}-W{w:02d}")
        return tuple(out)

    @property
    def last_day(self) -> date:
        return self.first + timedelta(weeks=self.weeks, days=-1)

    def before(self) -> Period:
        return Period(self.first - timedelta(weeks=self.weeks), self.weeks)

    def label(self) -> str:
        """«uke 46–47 2026 (9.–22. november)»."""
        a, b = self.first.isocalendar(), self.last_day.isocalendar()
        weeks = f"uke {a[1]}" if self.weeks == 1 else f"uke {a[1]}–{b[1]}"
        return f"{weeks} {b[0]} ({_day(self.first)}–{_day(self.last_day)})"


_MONTHS = ("januar", "februar", "mars", "april", "mai", "juni", "juli", "august", "september",
           "oktober", "november", "desember")


def _day(d: date) -> str:
    return f"{d.day}. {_MONTHS[d.month - 1]}"


# Reports cover fixed 14-day periods only, counted from this Monday (so the periods in 2026
# are weeks 46–47, 48–49, ...), and only periods that are over. No two reports overlap, so
# none can be subtracted from another to show what one of them hid.
EPOCH = date(2024, 1, 8)
PERIOD_WEEKS = 2


def period_containing(day: date) -> Period:
    """The fixed period that `day` falls in."""
    n = (day - EPOCH).days // (7 * PERIOD_WEEKS)
    return Period(EPOCH + timedelta(weeks=PERIOD_WEEKS * n), PERIOD_WEEKS)


def last_finished(now: datetime) -> Period:
    """The latest fixed period that is over by `now` (Oslo time)."""
    return period_containing(now.astimezone(OSLO).date()).before()


class PeriodError(ValueError):
    """A period that cannot be reported, in words a coordinator can act on."""


def period_of(now: datetime, *, week: date | None = None) -> Period:
    """The period to report: the latest one that is over, or the fixed period that the day
    `week` falls in, which must be over too (an unfinished period is never reported)."""
    if week is None:
        return last_finished(now)
    p = period_containing(week)
    if p.last_day >= now.astimezone(OSLO).date():
        raise PeriodError(f"perioden {p.label()} er ikke over ennå; velg en periode som er "
                          f"ferdig, for eksempel {last_finished(now).label()}")
    return p


# -- small-group protection ---------------------------------------------------------------------

def protect(counts: Sequence[int]) -> list[int | None]:
    """Counts with small ones hidden (None); one more if a single hidden one could be worked
    out from the total; and, once anything is hidden, the zeros too: a «0» beside hidden
    cells tells that each of them is at least 1, and with the total shown that can pin
    them (two hidden cells that add up to 2 are 1 and 1)."""
    if sum(counts) < MIN_GROUP:
        return [None] * len(counts)
    hidden = {i for i, c in enumerate(counts) if 0 < c < MIN_GROUP}
    if len(hidden) == 1:
        rest = sorted((c, i) for i, c in enumerate(counts) if i not in hidden and c > 0)
        if rest:
            hidden.add(rest[0][1])
    if hidden:
        hidden |= {i for i, c in enumerate(counts) if c == 0}
    return [None if i in hidden else c for i, c in enumerate(counts)]


# -- the report -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    label: str
    count: int | None  # None: hidden
    share: float | None
    before: int | None = None  # the same in the period before
    before_share: float | None = None


@dataclass(frozen=True)
class Question:
    flow: str
    key: str
    label: str
    text: str
    kind: Kind
    n: int | None  # None: fewer than 5 answered
    n_before: int | None
    cells: tuple[Cell, ...] = ()
    mean: float | None = None
    mean_before: float | None = None
    texts: tuple[str, ...] | None = None  # free texts; None: too few to show


@dataclass(frozen=True)
class TopicGroup:
    label: str
    count: int | None
    texts: tuple[str, ...]


@dataclass
class Report:
    period: Period
    office: str | None
    made_at: datetime
    survey_n: int | None = None
    survey_n_before: int | None = None
    feedback_n: int | None = None
    feedback_n_before: int | None = None
    offices: list[tuple[str, int | None]] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    feedback: list[TopicGroup] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"Veivis: hva unge sier, {self.period.label()}" + (
            f", {self.office}" if self.office else "")


def _answered(flow: Flow) -> list[Step]:
    return [s for s in flow.steps if s.save and s.is_question]


def _participants(flow: Flow, rows: Sequence[AnonRow]) -> int:
    """How many took part: the most answers any one question got (rows are not linked)."""
    per: Counter[str] = Counter()
    for r in rows:
        if r.flow == flow.id:
            per[r.question] += r.n
    return max(per.values(), default=0)


def _shown(n: int) -> int | None:
    return n if n >= MIN_GROUP else None


def _share(c: int | None, n: int) -> float | None:
    return None if c is None or n == 0 else c / n


def _by_question(rows: Sequence[AnonRow]) -> dict[str, Counter[str]]:
    out: dict[str, Counter[str]] = {}
    for r in rows:
        out.setdefault(r.question, Counter())[r.value] += r.n
    return out


def _mean(c: Counter[str]) -> float:
    return sum(int(v) * k for v, k in c.items() if v.lstrip("-").isdigit()) / c.total()


def _question(flow: Flow, st: Step, now_by: dict[str, Counter[str]],
              before_by: dict[str, Counter[str]]) -> Question:
    key = st.save or ""
    now_c, before_c = now_by.get(key, Counter()), before_by.get(key, Counter())
    label = st.label or st.text or key
    n, nb = now_c.total(), before_c.total()
    base = Question(flow.id, key, label, st.text or "", st.kind or Kind.TEXT, _shown(n),
                    _shown(nb))
    if st.kind is Kind.TEXT:
        return replace(base, texts=tuple(now_c.elements()) if n >= MIN_GROUP else None)
    if st.kind is Kind.YESNO:
        cats = [("Ja", YES_VALUE), ("Nei", NO_VALUE)]
    elif st.kind is Kind.CHOICE:
        cats = [(o.text, o.value) for o in st.options]
    else:  # scale / number
        lo, hi = st.min if st.min is not None else 1, st.max if st.max is not None else 5
        cats = [(str(i), str(i)) for i in range(lo, hi + 1)]
    shown = protect([now_c[v] for _, v in cats])
    shown_b = protect([before_c[v] for _, v in cats])
    cells = tuple(Cell(lab, c, _share(c, n), b, _share(b, nb))
                  for (lab, _), c, b in zip(cats, shown, shown_b, strict=True))
    mean = mean_b = None
    if st.kind in (Kind.SCALE, Kind.NUMBER):
        if n >= MIN_GROUP and None not in shown:
            mean = _mean(now_c)
        if nb >= MIN_GROUP and None not in shown_b:
            mean_b = _mean(before_c)
    return replace(base, cells=cells, mean=mean, mean_before=mean_b)


def _feedback(flow: Flow, rows: list[AnonRow]) -> list[TopicGroup]:
    """Texts grouped by the step they were written in (its label is the topic); topics with
    fewer than 5 pooled; nothing at all when fewer than 5 wrote."""
    steps = [s for s in _answered(flow) if s.kind is Kind.TEXT]
    groups = [(s.label or s.save or "", [r.value for r in rows if r.question == s.save
                                         for _ in range(r.n)]) for s in steps]
    total = sum(len(t) for _, t in groups)
    if total < MIN_GROUP:
        return []
    out, pooled = [], []
    for label, texts in groups:
        if len(texts) >= MIN_GROUP:
            out.append(TopicGroup(label, len(texts), tuple(texts)))
        else:
            pooled.extend(texts)
    if pooled:
        out.append(TopicGroup("Andre tema (færre enn 5 hver)", _shown(len(pooled)),
                              tuple(pooled)))
    return out


def build(flows: FlowSet, rows: Sequence[AnonRow], before: Sequence[AnonRow], period: Period,
          made_at: datetime, office: str | None = None) -> Report:
    if office is not None:
        rows = [r for r in rows if r.office == office]
        before = [r for r in before if r.office == office]
    rep = Report(period, office, made_at)
    for fid in SURVEY_FLOWS:
        flow = flows.get(fid)
        if flow is None:
            continue
        now_rows = [r for r in rows if r.flow == fid]
        before_rows = [r for r in before if r.flow == fid]
        n, nb = _participants(flow, now_rows), _participants(flow, before_rows)
        rep.survey_n, rep.survey_n_before = _shown(n), _shown(nb)
        now_by, before_by = _by_question(now_rows), _by_question(before_rows)
        for st in _answered(flow):
            rep.questions.append(_question(flow, st, now_by, before_by))
        if office is None:  # who took part, per office
            per_office: dict[str, list[AnonRow]] = {}
            for r in now_rows:
                per_office.setdefault(r.office or "Uten kontor", []).append(r)
            names = sorted(per_office)
            per = [_participants(flow, per_office[o]) for o in names]
            rep.offices = list(zip(names, protect(per), strict=True))
    for fid in FEEDBACK_FLOWS:
        flow = flows.get(fid)
        if flow is None:
            continue
        texts = {s.save for s in _answered(flow) if s.kind is Kind.TEXT}
        m = sum(r.n for r in rows if r.flow == fid and r.question in texts)
        mb = sum(r.n for r in before if r.flow == fid and r.question in texts)
        rep.feedback_n, rep.feedback_n_before = _shown(m), _shown(mb)
        rep.feedback = _feedback(flow, [r for r in rows if r.flow == fid])
    rep.summary = _summary(rep)
    return rep


def number(x: float, decimals: int = 1) -> str:
    return format_decimal(round(x, decimals), format="#,##0.0" if decimals else "#,##0",
                          locale="nb_NO")


def _summary(rep: Report) -> list[str]:
    """Plain sentences for the top: «12 svarte. 9 av 12 fikk et nummer de kan ringe …»."""
    out = []
    if rep.survey_n is None:
        out.append("Færre enn 5 svarte på spørsmålene etter første møte. Svarene vises når "
                   "flere har svart.")
    else:
        out.append(f"{rep.survey_n} svarte på spørsmålene etter første møte.")
        for q in rep.questions:
            if q.kind is Kind.YESNO and q.n is not None and q.cells[0].count is not None:
                out.append(f"{q.cells[0].count} av {q.n} {q.label}.")
            elif q.mean is not None:
                change = ""
                if q.mean_before is not None:
                    change = f" (forrige periode {number(q.mean_before)})"
                out.append(f"{q.label[:1].upper()}{q.label[1:]}: {number(q.mean)} i snitt"
                           f"{change}.")
    if rep.feedback_n is None:
        out.append("Færre enn 5 sendte en melding til ressursgruppa.")
    else:
        out.append(f"{rep.feedback_n} sendte en melding til ressursgruppa.")
    return out
