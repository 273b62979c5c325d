"""Veileder commands by SMS from a registered work phone: MØTE, FLYTT, AVLYS.

Only a number registered as a veileder's work phone reaches this code (the pipeline checks);
a veileder reaches only their own users: a young person assigned to another veileder is
refused without saying anything about them. The command, its inbound record (provider id,
for dedupe; no text, since it holds a phone number) and the confirmation go in one
transaction: nothing half-saved, a retried webhook is handled once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from . import meetings
from .phone import pretty_phone
from .schedule import DEFAULT_RULES, Rules
from .store import Store
from .store import meetings as M
from .store.meetings import MeetingError
from .when import WhenError, describe, parse_command

EXAMPLE = "Eksempel: MØTE 912 34 567 24.11 10:00 NAV Gjøvik. Eller FLYTT / AVLYS + nummer."


@dataclass(frozen=True)
class Veileder:
    id: int
    name: str
    phone: str


async def handle(store: Store, v: Veileder, channel: str, provider_id: str, text: str,
                 now: datetime, rules: Rules = DEFAULT_RULES) -> tuple[str | None, bool]:
    """(the confirmation or error to send back, was it a duplicate)."""
    async with store.transaction() as c:
        if not await M.log_inbound_once(c, channel, provider_id, now):
            return None, True
        try:
            reply = await _run(store, v, text, now, rules)
        except (WhenError, MeetingError) as e:
            reply = f"Veivis skjønte ikke meldingen: {e}. {EXAMPLE}"
        await M.queue_message(c, channel, v.phone, reply, now)
    return reply, False


async def _user(store: Store, v: Veileder, phone: str, *, create: bool,
                now: datetime) -> tuple[int, str]:
    found = await M.user_for_veileder(store.conn, phone, v.id, create=create, now=now)
    if found is None:  # someone else's user, or unknown: say nothing about them
        raise MeetingError(f"{pretty_phone(phone)} er ikke registrert hos deg")
    return found[0], found[1] or pretty_phone(phone)


async def _run(store: Store, v: Veileder, text: str, now: datetime, rules: Rules) -> str:
    cmd = parse_command(text, now)
    _, name = await _user(store, v, cmd.phone, create=cmd.verb == "add", now=now)
    if cmd.verb == "add":
        assert cmd.when is not None
        m = await meetings.new_meeting(store, phone=cmd.phone, starts_at=cmd.when,
                                       place=cmd.place, first=None, now=now, rules=rules,
                                       veileder_id=v.id)
        await M.add_meetings_in(store.conn, [m], now)
        kind = "første møte" if m.kind == "first" else "møte"
        return (f"Registrert: {kind} med {name} {describe(cmd.when)}"
                f"{', ' + cmd.place if cmd.place else ''}. Veivis sender påminnelser. "
                f"Feil? Svar AVLYS {pretty_phone(cmd.phone)}")
    mid = await meetings.next_meeting_of(store, cmd.phone, now)
    if cmd.verb == "move":
        assert cmd.when is not None
        planned = await meetings.move_plan(store, mid, cmd.when, now, rules)
        await M.move_meeting_in(store.conn, mid, cmd.when, cmd.place, planned, now)
        return f"Flyttet: møtet med {name} er nå {describe(cmd.when)}. {name} får beskjed."
    notice = await meetings.cancel_notice(store, mid, now, rules)
    await M.cancel_meeting_in(store.conn, mid, notice, now)
    return f"Avlyst: møtet med {name}. {name} får én melding om det."
