"""When things should happen around a meeting: a pure planner, in Europe/Oslo time.

Given a meeting (start, first or follow-up) and when it was registered, `plan()` returns the
scheduled flow starts: the first-meeting preparation, the reminders, the survey with its
nudge and expiry. All times are UTC in and out; rules are applied in Oslo wall time, so
daylight-saving changes are handled by the time zone database, not by arithmetic on UTC.
No message to a young user falls in quiet hours (21.00-08.00 by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

OSLO = ZoneInfo("Europe/Oslo")


@dataclass(frozen=True)
class Rules:
    evening_before: time = time(18, 0)
    hours_before: timedelta = timedelta(hours=2)
    quiet_from: time = time(21, 0)
    quiet_until: time = time(8, 0)
    meeting_length: timedelta = timedelta(hours=1)
    survey_delay: timedelta = timedelta(hours=2)
    survey_nudge_after: timedelta = timedelta(days=1)
    survey_expires_after: timedelta = timedelta(days=3)
    # days the offices are closed beyond the public holidays (config `stengt`), for routing
    closed_days: frozenset[date] = frozenset()


DEFAULT_RULES = Rules()


@dataclass(frozen=True)
class Planned:
    """One scheduled start. `slot` is unique per meeting: the same slot is never planned twice
    (a reminder's slot names the meeting time it is for, so a moved meeting gets new ones)."""

    slot: str
    kind: str  # prep | reminder | survey | survey_nudge | survey_expire | moved | cancelled
    flow: str | None
    due_at: datetime
    not_after: datetime | None  # dropped, not sent, if it could only go out after this


def oslo(dt: datetime) -> datetime:
    return dt.astimezone(OSLO)


def at_oslo(day: date, t: time) -> datetime:
    """The UTC instant of a wall-clock time in Oslo. A time that does not exist (spring
    forward) is read as the instant after the gap; one that happens twice (fall back) as the
    first of the two (fold=0)."""
    local = datetime.combine(day, t, tzinfo=OSLO)
    # round-trip through UTC normalises a non-existent wall time
    return local.astimezone(UTC)


def is_quiet(dt: datetime, rules: Rules) -> bool:
    t = oslo(dt).time()
    return t >= rules.quiet_from or t < rules.quiet_until


def next_allowed(dt: datetime, rules: Rules) -> datetime:
    """`dt` if it is outside quiet hours, else the end of those quiet hours."""
    if not is_quiet(dt, rules):
        return dt
    local = oslo(dt)
    day = local.date() if local.time() < rules.quiet_until else local.date() + timedelta(days=1)
    return at_oslo(day, rules.quiet_until)


def last_allowed_before(dt: datetime, rules: Rules) -> datetime:
    """`dt` if outside quiet hours, else the last minute before those quiet hours began."""
    if not is_quiet(dt, rules):
        return dt
    local = oslo(dt)
    day = local.date() if local.time() >= rules.quiet_from else local.date() - timedelta(days=1)
    return at_oslo(day, rules.quiet_from) - timedelta(minutes=1)


def nearest_allowed_before(due: datetime, deadline: datetime, rules: Rules) -> datetime | None:
    """The allowed time nearest to `due` that is still before `deadline`, or None."""
    if not is_quiet(due, rules):
        return due if due < deadline else None
    options = [t for t in (next_allowed(due, rules), last_allowed_before(due, rules))
               if t < deadline]
    if not options:
        return None
    return min(options, key=lambda t: abs((t - due).total_seconds()))


def plan(start: datetime, first: bool, registered: datetime, rules: Rules = DEFAULT_RULES
         ) -> list[Planned]:
    """Everything to schedule for a meeting registered at `registered` (UTC)."""
    stamp = start.astimezone(UTC).isoformat(timespec="minutes")
    out: list[Planned] = []
    if first:
        prep = next_allowed(registered, rules)
        if prep < start:
            out.append(Planned("prep", "prep", "first_meeting_prep", prep, start))
    evening = at_oslo(oslo(start).date() - timedelta(days=1), rules.evening_before)
    when = nearest_allowed_before(evening, start, rules)
    if when is not None and when > registered:
        out.append(Planned(f"evening@{stamp}", "reminder", "meeting_reminder", when, start))
    before = nearest_allowed_before(start - rules.hours_before, start, rules)
    if before is not None and before > registered and all(
        abs((p.due_at - before).total_seconds()) > 1800 for p in out if p.kind == "reminder"
    ):
        out.append(Planned(f"before@{stamp}", "reminder", "meeting_reminder", before, start))
    if first:
        survey = next_allowed(start + rules.meeting_length + rules.survey_delay, rules)
        expire = survey + rules.survey_expires_after
        out.append(Planned("survey", "survey", "first_meeting_survey", survey, expire))
        nudge = next_allowed(survey + rules.survey_nudge_after, rules)
        out.append(Planned("survey_nudge", "survey_nudge", "first_meeting_survey", nudge,
                           expire))
        out.append(Planned("survey_expire", "survey_expire", "first_meeting_survey", expire,
                           None))
    return out


def notice(kind: str, start: datetime, now: datetime, rules: Rules = DEFAULT_RULES) -> Planned:
    """A one-off message about a meeting that was moved or cancelled, sent in daytime."""
    stamp = start.astimezone(UTC).isoformat(timespec="minutes")
    flow = "meeting_moved" if kind == "moved" else "meeting_cancelled"
    return Planned(f"{kind}@{stamp}", kind, flow, next_allowed(now, rules), None)
