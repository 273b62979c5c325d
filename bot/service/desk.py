"""The veileder's work phone: forwards from young people, relayed replies (K7 ...), and
meeting commands by SMS (MØTE, FLYTT, AVLYS).

A young person's message goes to their veileder's work phone with a short code (K7), their
first name and last initial, the text and how to answer; nothing else about them. The veileder
answers «K7 <text>» (or, with one open thread in the last 24 hours, just the text); «K7 LUKK»
closes the thread. Codes are looked up only among the veileder's own threads. Answers from a
flow marked `summary` (first-meeting preparation, a reply to a reminder) go the same way, as
one short SMS; a crisis signal sends an urgent notice with name and phone to whoever is on
duty. Outside working hours and on public holidays the SMS waits until someone reads it (the
young person is told when); while the veileder is away it goes to the backup (bot.timing.hours).

Only a number registered as a veileder's work phone reaches this code (the pipeline checks);
a veileder reaches only the young people assigned to them, and a command never assigns
anyone (that is `veivis user assign`), except MØTE for a number not registered at all. A
number that is unknown, nobody's or someone else's gets the same refusal, word for word. The
command, its inbound record (provider id, for dedupe; no text, since it holds a phone number)
and the confirmation go in one transaction: nothing half-saved, a retried webhook is handled
once; a command that fails is rolled back, and only its error answer is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.phone import pretty_phone
from bot.service import meetings
from bot.store import threads as TH
from bot.store.meetings import MeetingError
from bot.store.protocol import Database
from bot.store.protocol import Transaction as Tx
from bot.timing.hours import Duty
from bot.timing.planner import DEFAULT_RULES, Rules
from bot.timing.when import VERBS, PassedError, WhenError, describe, parse_command

EXAMPLE = "Eksempel: MØTE 912 34 567 24.11 10:00 NAV Gjøvik. Eller FLYTT / AVLYS + nummer."


MAX_FORWARD = 300  # characters of a young person's text that go to the work phone
REPLY_WINDOW = timedelta(hours=24)  # a reply without a code goes to the only thread this recent
_CODE = re.compile(r"^\s*K\s?(\d{1,5})\b[\s:.,-]*(.*)$", re.IGNORECASE | re.DOTALL)


def short_name(first: str | None, last: str | None) -> str:
    """«Sara H.»: enough for the veileder to know who, nothing more."""
    name = (first or "").strip() or "En bruker"
    if last and last.strip():
        name += f" {last.strip()[0].upper()}."
    return name


def _shorten(text: str, limit: int) -> str:
    body = " ".join(text.split())
    if len(body) > limit:
        body = body[:limit].rsplit(" ", 1)[0] + " … (forkortet)"
    return body


async def _send(tx: Tx, who: TH.Sender, d: Duty, direction: str,
                text: Callable[[int], str], now: datetime) -> int:
    """Open (or reuse) the thread on the desk that reads it (the veileder, or the backup while
    they are away) and queue the SMS, held until someone reads messages."""
    assert d.phone is not None and who.veileder_id is not None
    desk = (await tx.desk_id(d.phone)) if d.backup else who.veileder_id
    code = await tx.open_thread(who.user_id, desk or who.veileder_id, now, direction)
    await tx.queue_message("sms", d.phone, text(code), now, due=d.read_from, about=who.user_id)
    return code


def _for(who: TH.Sender, d: Duty) -> str:
    return f" (for {who.veileder_name}, som er borte)" if d.backup else ""


async def forward(tx: Tx, user_id: int, text: str, d: Duty, now: datetime) -> None:
    """Send a young person's message where the engine decided (`d`: their veileder's work
    phone, or the backup while the veileder is away; held until someone reads it)."""
    who = await tx.sender(user_id)
    name, body = short_name(who.first_name, who.last_name), _shorten(text, MAX_FORWARD)
    await _send(tx, who, d, "in", lambda code: (
        f"Veivis K{code} fra {name}{_for(who, d)}: {body} — Svar: K{code} + tekst. "
        f"K{code} LUKK avslutter."), now)


async def summary(tx: Tx, user_id: int, title: str, items: Sequence[tuple[str, str]],
                  meeting_at: datetime | None, d: Duty, now: datetime) -> None:
    """A flow's answers for the veileder (first-meeting preparation, a reply to a reminder),
    as one short SMS with the thread's code."""
    who = await tx.sender(user_id)
    name = short_name(who.first_name, who.last_name)
    when = f" ({describe(meeting_at)})" if meeting_at else ""
    body = (f"{items[0][1]}." if len(items) == 1  # one answer speaks for itself
            else " ".join(f"{label}: {value}." for label, value in items))
    body = _shorten(body, MAX_FORWARD)
    await _send(tx, who, d, "summary", lambda code: (
        f"Veivis K{code} fra {name}{_for(who, d)} – {title}{when}: {body} "
        f"Svar: K{code} + tekst."), now)


async def crisis_notice(tx: Tx, user_id: int, d: Duty, now: datetime) -> bool:
    """An urgent SMS to whoever the engine found on duty for this young person, with their
    name and phone so they can call; never what the young person wrote. (The engine sends
    one per young person per half hour: `Desk.crisis_told_lately`.)"""
    who = await tx.sender(user_id)
    full = " ".join(x for x in (who.first_name, who.last_name) if x) or "En bruker"
    phone = f"tlf. {pretty_phone(who.phone)}" if who.phone else "telefon ukjent"
    await _send(tx, who, d, "crisis", lambda code: (
        f"HASTER fra Veivis K{code}: {full}, {phone}{_for(who, d)}, skrev noe som kan bety "
        f"krise. Ring så fort du kan. {who.first_name or 'Brukeren'} har fått krisenumrene. "
        f"Svar: K{code} + tekst."), now)
    return True


@dataclass(frozen=True)
class Veileder:
    id: int
    name: str
    phone: str


class _Refused(Exception):
    """A command that cannot be carried out: its answer, and nothing of it is kept."""


async def handle(store: Database, v: Veileder, channel: str, provider_id: str, text: str,
                 now: datetime, rules: Rules = DEFAULT_RULES) -> tuple[str | None, bool]:
    """(the confirmation or error to send back, was it a duplicate). A command that fails
    changes nothing: its transaction is rolled back, and the error goes out in a second one
    with the message's provider id (so a retried webhook is still answered once)."""
    try:
        async with store.tx(now) as tx:
            if not await tx.log_inbound_once(channel, provider_id, now):
                return None, True
            about: int | None = None  # the young person the answer names (SLETT erases it)
            try:
                reply, about = await _relay(tx, v, text, now)
                if reply is None:
                    reply, about = await _run(tx, v, text, now, rules)
            except PassedError as e:  # a question back, not «did not understand»
                raise _Refused(f"Ikke registrert: {e}") from None
            except (WhenError, MeetingError) as e:
                raise _Refused(f"Veivis skjønte ikke meldingen: {e}. {EXAMPLE}") from None
            await tx.queue_message(channel, v.phone, reply, now, about=about)
        return reply, False
    except _Refused as refused:
        reply = str(refused)
    async with store.tx(now) as tx:
        if not await tx.log_inbound_once(channel, provider_id, now):
            return None, True
        await tx.queue_message(channel, v.phone, reply, now)
    return reply, False


async def _relay(tx: Tx, v: Veileder, text: str,
                 now: datetime) -> tuple[str | None, int | None]:
    """A reply to a young person, if the message is one: the confirmation for the veileder,
    and who it is about. None: it is a meeting command (or meant as one)."""
    m = _CODE.match(text)
    if m:
        thread = await tx.find_thread(v.id, int(m.group(1)))
        body = m.group(2).strip()
        if thread is None:  # not one of theirs (or no such code): nothing about it leaks
            return f"K{m.group(1)} er ikke en av dine samtaler i Veivis.", None
    else:
        first = text.strip().split(maxsplit=1)
        if first and first[0].casefold() in VERBS:
            return None, None
        recent = await tx.open_recent_threads(v.id, now - REPLY_WINDOW)
        if len(recent) != 1:
            codes = ", ".join(f"K{t.code}" for t in recent[:5])
            return ("Start svaret med koden, for eksempel K7 Hei!" + (
                f" Åpne samtaler: {codes}." if codes else " Du har ingen åpne samtaler nå.")), None
        thread, body = recent[0], text.strip()
    name = short_name(thread.first_name, thread.last_name)
    if body.casefold() == "lukk":
        await tx.close_thread(thread.id, now)
        return f"K{thread.code} med {name} er avsluttet.", thread.user_id
    if not body:
        return f"Skriv svaret etter koden, for eksempel K{thread.code} Hei!", thread.user_id
    if thread.stopped:
        return (f"{name} har skrevet STOPP og får ikke meldinger fra Veivis nå.",
                thread.user_id)
    first_name = v.name.split()[0] if v.name.strip() else "Veilederen"
    await tx.reply_in_thread(thread, f"{first_name}: {body}", now)
    return f"Sendt til {name} (K{thread.code}).", thread.user_id


def not_yours(phone: str) -> str:
    """The one refusal for a number the veileder may not reach, whoever it belongs to."""
    return f"{pretty_phone(phone)} er ikke registrert hos deg"


async def _user(tx: Tx, v: Veileder, phone: str, *, create: bool,
                now: datetime) -> tuple[int, str]:
    if await tx.is_work_phone(phone):  # never a young person; and no oracle for NAV's numbers
        raise MeetingError(not_yours(phone))
    found = await tx.user_for_veileder(phone, v.id, create=create, now=now)
    if found is None:  # someone else's, nobody's, or unknown: one answer for all three
        raise MeetingError(not_yours(phone))
    return found[0], found[1] or pretty_phone(phone)


async def _run(tx: Tx, v: Veileder, text: str, now: datetime,
               rules: Rules) -> tuple[str, int]:
    cmd = parse_command(text, now)
    uid, name = await _user(tx, v, cmd.phone, create=cmd.verb == "add", now=now)
    if cmd.verb == "add":
        assert cmd.when is not None
        m = await meetings.new_meeting(tx, phone=cmd.phone, starts_at=cmd.when,
                                       place=cmd.place, first=None, now=now, rules=rules,
                                       veileder_id=v.id)
        await tx.add_meetings([m], now)
        kind = "første møte" if m.kind == "first" else "møte"
        return (f"Registrert: {kind} med {name} {describe(cmd.when, now)}"
                f"{', ' + cmd.place if cmd.place else ''}. Veivis sender påminnelser. "
                f"Feil? Svar AVLYS {pretty_phone(cmd.phone)}"), uid
    mid = await meetings.next_meeting_of(tx, cmd.phone, now)
    if cmd.verb == "move":
        assert cmd.when is not None
        planned = await meetings.move_plan(tx, mid, cmd.when, now, rules)
        await tx.move_meeting(mid, cmd.when, cmd.place, planned, now)
        return (f"Flyttet: møtet med {name} er nå {describe(cmd.when, now)}. {name} får "
                "beskjed."), uid
    notice = await meetings.cancel_notice(tx, mid, now, rules)
    await tx.cancel_meeting(mid, notice, now)
    return f"Avlyst: møtet med {name}. {name} får én melding om det.", uid
