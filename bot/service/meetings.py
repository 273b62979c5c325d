"""Registering, moving and cancelling meetings: the planner's rules applied through the store.

Used by the CLI (`veivis meeting ...`), the CSV import and veileders' SMS commands, so all
three behave the same and all give plain errors.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.engine.loader import os_problem
from bot.phone import PhoneError, normalise_phone, pretty_phone, valid_phone
from bot.store import meetings as M
from bot.store.meetings import MeetingError
from bot.store.protocol import Database, MeetingReads
from bot.timing.planner import DEFAULT_RULES, Planned, Rules, notice, plan
from bot.timing.when import WhenError, parse_when


async def not_a_work_phone(db: MeetingReads, phone: str) -> None:
    """A veileder's work phone (or a backup desk's) is never a young person: its messages are
    read as veileder commands, and reminders for a young person would go to NAV."""
    if await db.is_work_phone(phone):
        raise MeetingError(f"{pretty_phone(phone)} er jobbtelefonen til en veileder, ikke "
                           "nummeret til en ung person")


async def not_a_young_person(db: MeetingReads, phone: str) -> None:
    """The other way round: a young person's number never becomes a work phone."""
    if await db.user_by_phone(phone) is not None:
        raise MeetingError(f"{pretty_phone(phone)} er registrert som en ung person i Veivis, "
                           "ikke som en jobbtelefon")


async def user_id_by_phone(db: MeetingReads, phone: str) -> tuple[int, int | None]:
    found = await db.user_by_phone(phone)
    if found is None:
        raise MeetingError(f"ingen bruker har nummeret {pretty_phone(phone)}; legg brukeren "
                           "til først (veivis user add)")
    return found


async def new_meeting(db: MeetingReads, *, phone: str, starts_at: datetime, place: str | None,
                      first: bool | None, now: datetime, rules: Rules = DEFAULT_RULES,
                      veileder_id: int | None = None, earlier: int = 0) -> M.NewMeeting:
    """Check and plan a meeting for the user with this phone (nothing saved yet).
    `first=None`: first if they have had none that was not cancelled (counting `earlier` ones
    in the same import): a first meeting that was called off was never held."""
    if starts_at <= now:
        raise MeetingError("tiden for møtet har vært; gi en tid fram i tid")
    uid, assigned = await user_id_by_phone(db, phone)
    if first is None:
        first = await db.meeting_count(uid) + earlier == 0
    return M.NewMeeting(uid, veileder_id or assigned, starts_at, place,
                        "first" if first else "followup", plan(starts_at, first, now, rules))


async def register(store: Database, *, phone: str, starts_at: datetime, place: str | None,
                   first: bool | None, now: datetime, rules: Rules = DEFAULT_RULES,
                   veileder_id: int | None = None) -> int:
    m = await new_meeting(store, phone=phone, starts_at=starts_at, place=place, first=first,
                          now=now, rules=rules, veileder_id=veileder_id)
    async with store.tx(now) as tx:
        return (await tx.add_meetings([m], now))[0]


async def move_plan(db: MeetingReads, meeting_id: int, starts_at: datetime, now: datetime,
                    rules: Rules = DEFAULT_RULES) -> list[Planned]:
    """The new plan for a moved meeting, with a notice to the young person."""
    if starts_at <= now:
        raise MeetingError("den nye tiden har vært; gi en tid fram i tid")
    _, kind, _ = await db.meeting_start(meeting_id)
    planned = [p for p in plan(starts_at, kind == "first", now, rules) if p.kind != "prep"]
    planned.append(notice("moved", starts_at, now, rules))
    return planned


async def move(store: Database, meeting_id: int, starts_at: datetime, place: str | None,
               now: datetime, rules: Rules = DEFAULT_RULES) -> None:
    planned = await move_plan(store, meeting_id, starts_at, now, rules)
    async with store.tx(now) as tx:
        await tx.move_meeting(meeting_id, starts_at, place, planned, now)


async def cancel_notice(db: MeetingReads, meeting_id: int, now: datetime,
                        rules: Rules = DEFAULT_RULES) -> Planned:
    start, _, _ = await db.meeting_start(meeting_id)
    return notice("cancelled", start, now, rules)


async def cancel(store: Database, meeting_id: int, now: datetime,
                 rules: Rules = DEFAULT_RULES) -> None:
    notice_ = await cancel_notice(store, meeting_id, now, rules)
    async with store.tx(now) as tx:
        await tx.cancel_meeting(meeting_id, notice_, now)


async def next_meeting_of(db: MeetingReads, phone: str, now: datetime) -> int:
    uid, _ = await user_id_by_phone(db, phone)
    mid = await db.next_meeting(uid, now)
    if mid is None:
        raise MeetingError(f"{pretty_phone(phone)} har ikke noe planlagt møte")
    return mid


# -- CSV import ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CsvRow:
    line: int
    phone: str
    starts_at: datetime
    place: str | None
    first: bool | None


CSV_COLUMNS = ("telefon", "tid", "sted", "type")
KINDS: dict[str, bool | None] = {"first": True, "første": True, "forste": True,
                                 "followup": False, "oppfølging": False, "oppfolging": False,
                                 "": None}


def read_meetings_csv(path: Path, now: datetime) -> tuple[list[CsvRow], list[str]]:
    """Rows and the errors as 'path:line: message'. Columns: telefon, tid, sted, type
    (first|followup|første|oppfølging, optional). Separator , or ;."""
    errors: list[str] = []
    rows: list[CsvRow] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return [], [f"{path}:1: filen er ikke UTF-8-tekst; lagre den som UTF-8"]
    except OSError as e:
        return [], [f"{path}:1: kan ikke lese filen: {os_problem(e)}"]
    dialect = csv.Sniffer().sniff(text.splitlines()[0] if text else ",", delimiters=",;")
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    header = [h.strip().casefold() for h in reader.fieldnames or []]
    missing = [c for c in ("telefon", "tid") if c not in header]
    if missing:
        return [], [f"{path}:1: mangler kolonne: {', '.join(missing)}; første linje må være "
                    f"{';'.join(CSV_COLUMNS)}"]
    for i, raw in enumerate(reader, start=2):
        r = {(k or "").strip().casefold(): (v or "").strip() for k, v in raw.items()}
        if not any(r.values()):
            continue
        try:
            phone = valid_phone(normalise_phone(r.get("telefon", "")))
            when = parse_when(r.get("tid", ""), now)
            if when <= now:
                raise WhenError("tiden har vært")
            kind = r.get("type", "").casefold()
            if kind not in KINDS:
                raise WhenError(f"type må være første eller oppfølging, ikke «{kind}»")
            rows.append(CsvRow(i, phone, when, r.get("sted") or None, KINDS[kind]))
        except (PhoneError, WhenError) as e:
            errors.append(f"{path}:{i}: {e}")
    return rows, errors


async def import_csv(store: Database, path: Path, now: datetime,
                     rules: Rules = DEFAULT_RULES) -> tuple[int, list[str]]:
    """All or nothing: every row valid and every user known, then one transaction."""
    rows, errors = read_meetings_csv(path, now)
    planned: list[M.NewMeeting] = []
    seen: dict[str, int] = {}
    for r in rows:
        try:
            planned.append(await new_meeting(store, phone=r.phone, starts_at=r.starts_at,
                                             place=r.place, first=r.first, now=now,
                                             rules=rules, earlier=seen.get(r.phone, 0)))
            seen[r.phone] = seen.get(r.phone, 0) + 1
        except MeetingError as e:
            errors.append(f"{path}:{r.line}: {e}")
    if errors:
        return 0, sorted(errors, key=lambda e: int(e.split(":")[1]) if e.count(":") > 1 else 0)
    async with store.tx(now) as tx:
        return len(await tx.add_meetings(planned, now)), []

