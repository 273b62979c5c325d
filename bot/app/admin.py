"""Command-line administration: users, veiledere and meetings (`veivis user|veileder|meeting`).

Wiring only: parse, call bot.service.meetings or the store, print plainly. Errors a person can fix
come back as one line and exit code 1 (2 for wrong arguments), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path

from bot.app.config import (
    add_veileder_to_file,
    apply_config,
    configured,
    default_config_path,
    load_config,
    set_away_in_file,
)
from bot.app.flowcmds import load_flows_or_explain
from bot.app.settings import default_flows_dir, open_store
from bot.engine.runtime import system_text
from bot.phone import (
    PhoneError,
    landline_warning,
    normalise_phone,
    pretty_phone,
    valid_phone,
)
from bot.service import meetings
from bot.service.clock import system_clock
from bot.store.meetings import MeetingError
from bot.store.protocol import Database
from bot.timing.planner import DEFAULT_RULES, OSLO
from bot.timing.when import WhenError, describe, parse_day, split_when_place

REPLIES = {"kommer": "kommer", "ny_tid": "trenger ny tid", "kan_ikke": "kan ikke komme"}


class Problem(Exception):
    """A mistake in what was asked, told to the person as one line."""


async def _veileder_id(store: Database, phone: str | None) -> int | None:
    if not phone:
        return None
    vid = await store.veileder_id(normalise_phone(phone))
    if vid is None:
        raise Problem(f"ingen veileder har jobbtelefonen {phone} (se veivis veileder list)")
    return vid


async def user_add(store: Database, a: argparse.Namespace) -> str:
    phone = valid_phone(normalise_phone(a.phone))
    if await store.user_exists(phone):
        raise Problem(f"{pretty_phone(phone)} er registrert fra før")
    await meetings.not_a_work_phone(store, phone)
    first, _, last = (a.name or "").strip().partition(" ")
    await store.add_user(phone=phone, channel=a.channel, first_name=first or None,
                         last_name=last or None, veileder_id=await _veileder_id(store, a.veileder),
                         now=system_clock(), discreet=a.discreet)
    warning = landline_warning(phone) if a.channel == "sms" else None
    return f"la til {first or 'bruker'} {pretty_phone(phone)}" + (
        f"\n{warning}" if warning else "")


async def user_assign(store: Database, a: argparse.Namespace) -> str:
    """The one way an existing young person gets (another) veileder: explicitly, here. They
    are told who their veileder is now (if they have said yes to Veivis and not STOPP)."""
    phone = normalise_phone(a.phone)
    vid, name, _ = await _find_veileder(store, a.veileder)
    flows = load_flows_or_explain(default_flows_dir())
    if flows is None:
        raise Problem("flytene har feil; brukeren er ikke flyttet")
    got = await store.assign_user(phone, vid, system_clock(), lambda lang: system_text(
        flows, lang, "new_veileder", {"veileder": name}))
    if got is None:
        raise Problem(f"ingen bruker har nummeret {pretty_phone(phone)} (se veivis user list)")
    changed, told = got
    if not changed:
        return f"{pretty_phone(phone)} har {name} som veileder fra før"
    return (f"{pretty_phone(phone)} har nå {name} som veileder"
            + ("; brukeren får en melding om det" if told else
               "; brukeren får ingen melding (har ikke svart ja til Veivis, eller har skrevet "
               "STOPP)"))


async def user_list(store: Database, a: argparse.Namespace) -> str:
    rows = await store.list_users()
    return "\n".join(f"{pretty_phone(p or '-'):14} {n or '-':20} {ch:8} {lang:3} "
                     f"{v or '-':20}{' STOPPET' if s else ''}"
                     for p, n, ch, lang, v, s in rows) or "ingen brukere"


async def veileder_add(store: Database, a: argparse.Namespace) -> str:
    phone = normalise_phone(a.phone)
    if await store.veileder_id(phone) is not None:
        raise Problem(f"{pretty_phone(phone)} er jobbtelefonen til en veileder fra før")
    await meetings.not_a_young_person(store, phone)
    office = await store.add_office(a.office)
    await store.add_veileder(a.name, phone, office)
    where = ""
    path = a.config or default_config_path()
    if path:
        add_veileder_to_file(path, a.name, phone, a.office)
        where = f"; skrevet i {path}"
    return f"la til veileder {a.name} ({pretty_phone(phone)}, {a.office}){where}"


async def _find_veileder(store: Database, who: str) -> tuple[int, str, str]:
    """A veileder by work phone or by name (any case; a part is enough if it is unique)."""
    rows = await store.veiledere()
    try:
        phone = normalise_phone(who)
        found = [r for r in rows if r[2] == phone]
    except PhoneError:
        key = " ".join(who.split()).casefold()
        found = [r for r in rows if str(r[1]).casefold() == key] or [
            r for r in rows if key in str(r[1]).casefold()]
    if not found:
        raise Problem(f"ingen veileder heter {who} (se veivis veileder list)")
    if len(found) > 1:
        raise Problem(f"{who} passer på {', '.join(str(r[1]) for r in found)}; skriv hele "
                      "navnet eller jobbtelefonen")
    return found[0]


async def veileder_away(store: Database, a: argparse.Namespace) -> str:
    """Mark a veileder away through a date (or back, with --back): their messages go to the
    backup phone meanwhile, and young people are told when they are back."""
    vid, name, phone = await _find_veileder(store, a.name)
    until: date | None = None
    if not a.back:
        if a.until is None:
            raise Problem("skriv --until DATO (siste dag borte, for eksempel 4.12.2026) eller "
                          "--back")
        until = parse_day(a.until, system_clock())
    await store.set_away(vid, until)
    path = a.config or default_config_path()
    where = ""
    if path and set_away_in_file(path, phone, until):
        where = f"; skrevet i {path}"
    if until is None:
        return f"{name} er tilbake: meldinger går til {pretty_phone(phone)} igjen{where}"
    backup = await store.backup_phone(vid)
    to = (f"meldinger går til {pretty_phone(backup)} så lenge" if backup
          else "ingen reservetelefon er satt (vikar eller reservetelefonen til kontoret), så "
               "meldinger venter til veilederen er tilbake")
    return f"{name} er borte til og med {until:%d.%m.%Y}: {to}{where}"


async def export_user(store: Database, a: argparse.Namespace) -> str:
    """Everything stored about one person, as JSON (the right of access). Anonymous answers
    are not in it: nothing links them to anyone."""
    phone = normalise_phone(" ".join(a.phone))
    found = await store.export_user(phone)
    if found is None:
        raise Problem(f"ingen bruker har nummeret {pretty_phone(phone)}")
    data = {
        "about": "Alt Veivis har lagret om deg. Anonyme svar (spørsmålene etter møtet og "
                 "meldinger til ressursgruppa) er ikke med: ingen kan koble dem til deg.",
        "made_at": system_clock().isoformat(timespec="seconds"),
        **found,
    }
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if a.out:
        fd = os.open(a.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # a file that was there already: for its owner only now
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        return f"skrev {a.out}"
    return text


async def config_check(store: Database | None, a: argparse.Namespace) -> str:
    path = a.file or default_config_path()
    if path is None:
        raise Problem("fant ikke oppsettfilen: gi filen, sett VEIVIS_CONFIG eller lag "
                      "veivis.yaml (se deploy/veivis.yaml)")
    conf, errors = load_config(path)
    if conf is None:
        raise Problem("\n".join(errors))
    return (f"{path}: {len(conf.offices)} kontorer, {len(conf.veiledere)} veiledere, "
            f"påminnelser kl. {conf.rules.evening_before:%H.%M} kvelden før og "
            f"{conf.rules.hours_before.total_seconds() / 3600:g} timer før; stille "
            f"{conf.rules.quiet_from:%H.%M}-{conf.rules.quiet_until:%H.%M}")


async def config_apply(store: Database, a: argparse.Namespace) -> str:
    summary = await config_check(None, a)
    conf, _ = load_config(a.file or default_config_path())  # type: ignore[arg-type]
    assert conf is not None
    await apply_config(store, conf)
    return summary + "; lagt inn i databasen"


async def veileder_list(store: Database, a: argparse.Namespace) -> str:
    rows = await store.veileder_offices()
    return "\n".join(f"{n:24} {pretty_phone(p or '-'):14} {o or '-'}" for n, p, o in rows) \
        or "ingen veiledere"


async def threads_list(store: Database, a: argparse.Namespace) -> str:
    """Conversations with veiledere: who, when, how many messages each way; never the text."""
    rows = await store.list_threads(open_only=a.open)
    if not rows:
        return "ingen åpne samtaler" if a.open else "ingen samtaler"
    head = f"{'kode':5} {'veileder':18} {'bruker':12} {'status':7} {'sist':17} {'inn':>3} {'ut':>3}"
    return "\n".join([head] + [
        f"K{r.code:<4} {r.veileder:18} {r.user:12} {r.status:7} {describe_iso(r.last_at):17} "
        f"{r.messages_in:>3} {r.messages_out:>3}" for r in rows])


def describe_iso(value: str) -> str:
    """Stored UTC text as Oslo time: 2026-11-23 12:00."""
    return datetime.fromisoformat(value).astimezone(OSLO).strftime("%Y-%m-%d %H:%M")


async def meeting_add(store: Database, a: argparse.Namespace) -> str:
    now = system_clock()
    when, place = split_when_place(" ".join(a.when), now)
    first = True if a.first else False if a.followup else None
    where: str | None = a.place or place
    mid = await meetings.register(store, phone=valid_phone(normalise_phone(a.phone)),
                                  starts_at=when,
                                  place=where, first=first, now=now, rules=a.rules)
    return f"møte {mid}: {describe(when, now)}" + (f", {where}" if where else "")


async def meeting_move(store: Database, a: argparse.Namespace) -> str:
    now = system_clock()
    when, place = split_when_place(" ".join(a.when), now)
    await meetings.move(store, a.id, when, a.place or place, now, a.rules)
    return f"møte {a.id} er flyttet til {describe(when, now)}; den unge får beskjed"


async def meeting_cancel(store: Database, a: argparse.Namespace) -> str:
    await meetings.cancel(store, a.id, system_clock(), a.rules)
    return f"møte {a.id} er avlyst; den unge får én melding om det"


async def meeting_list(store: Database, a: argparse.Namespace) -> str:
    rows = await store.list_meetings(include_cancelled=a.all)
    now = system_clock()
    return "\n".join(
        f"{r.id:5} {describe(r.starts_at, now):26} {r.kind:8} "
        f"{pretty_phone(r.user_phone or '-'):12}"
        f" {r.user_name or '-':18} {r.place or '-':18} "
        f"{'AVLYST' if r.status == 'cancelled' else REPLIES.get(r.reply or '', 'ikke svart')}"
        for r in rows) or "ingen møter"


async def meeting_import(store: Database, a: argparse.Namespace) -> str:
    n, errors = await meetings.import_csv(store, Path(a.file), system_clock(), a.rules)
    if errors:
        raise Problem("\n".join([*errors, "ingenting ble lagt inn"]))
    return f"la inn {n} møter"


Handler = Callable[[Database, argparse.Namespace], Awaitable[str]]


async def run(handler: Handler, a: argparse.Namespace) -> int:
    conf, errors = configured(default_config_path())
    if errors:
        print("\n".join(["veivis: oppsettfilen har feil:", *errors]))
        return 1
    a.rules = conf.rules if conf else DEFAULT_RULES
    store = await open_store(a.db)
    try:
        if conf is not None:
            await apply_config(store, conf)
        print(await handler(store, a))
        return 0
    except (Problem, MeetingError, WhenError, PhoneError) as e:
        print(f"veivis: {e}")
        return 1
    finally:
        await store.close()


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def cmd(parent: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
            handler: Handler, help_: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_)
        p.add_argument("--db", help="the database (default: VEIVIS_DB in the settings, else "
                                    "veivis.db)")
        p.set_defaults(handler=handler)
        return p

    u = sub.add_parser("user", help="young users").add_subparsers(dest="sub", required=True)
    p = cmd(u, "add", user_add, "register a young user")
    p.add_argument("phone")
    p.add_argument("--name", help="first and last name, e.g. \"Sara Hansen\"")
    p.add_argument("--veileder", help="the assigned veileder's work phone")
    p.add_argument("--channel", default="sms", choices=["sms", "telegram", "console"])
    p.add_argument("--discreet", action="store_true",
                   help="reminders that do not name NAV (a shared phone)")
    p = cmd(u, "assign", user_assign, "give a young user (another) veileder; they are told")
    p.add_argument("phone")
    p.add_argument("veileder", help="the veileder's work phone or name")
    cmd(u, "list", user_list, "list users")

    v = sub.add_parser("veileder", help="veiledere").add_subparsers(dest="sub", required=True)
    p = cmd(v, "add", veileder_add, "register a veileder and their work phone")
    p.add_argument("name")
    p.add_argument("phone")
    p.add_argument("--office", default="NAV Gjøvik")
    p.add_argument("--config", help="also write to this configuration file (default: "
                                    "VEIVIS_CONFIG, else veivis.yaml if there is one)")
    cmd(v, "list", veileder_list, "list veiledere")
    p = cmd(v, "away", veileder_away, "mark a veileder away through a date (messages go to "
            "the backup phone), or back")
    p.add_argument("name", help="the veileder's name (or a unique part of it) or work phone")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--until", metavar="DATE", help="the last day away, e.g. 4.12.2026")
    when.add_argument("--back", action="store_true", help="the veileder is back")
    p.add_argument("--config", help="also write borte_til in this configuration file "
                                    "(default: VEIVIS_CONFIG, else veivis.yaml if there is one)")

    g = sub.add_parser("config", help="offices, veiledere and reminder rules (veivis.yaml)")
    gs = g.add_subparsers(dest="sub", required=True)
    p = cmd(gs, "check", config_check, "check the configuration file")
    p.add_argument("file", nargs="?")
    p = cmd(gs, "apply", config_apply, "check it and apply offices and veiledere to the db")
    p.add_argument("file", nargs="?")

    t = sub.add_parser("threads", help="conversations with veiledere (no texts)")
    ts = t.add_subparsers(dest="sub", required=True)
    p = cmd(ts, "list", threads_list, "list conversations, newest first")
    p.add_argument("--open", action="store_true", help="only open ones")

    p = cmd(sub, "export-user", export_user, "everything stored about one person, as JSON")
    p.add_argument("phone", nargs="+", help="the phone number, e.g. 912 34 567")
    p.add_argument("--out", metavar="FILE", help="write here instead of to the screen")

    m = sub.add_parser("meeting", help="meetings").add_subparsers(dest="sub", required=True)
    p = cmd(m, "add", meeting_add, "register a meeting: PHONE WHEN [PLACE]")
    p.add_argument("phone")
    p.add_argument("when", nargs="+", help="e.g. «24.11 10:00 NAV Gjøvik» or «i morgen kl 10»")
    p.add_argument("--place")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--first", action="store_true", help="a first meeting (default: if none "
                      "before)")
    kind.add_argument("--followup", action="store_true")
    p = cmd(m, "move", meeting_move, "move a meeting: ID WHEN [PLACE]")
    p.add_argument("id", type=int)
    p.add_argument("when", nargs="+")
    p.add_argument("--place")
    p = cmd(m, "cancel", meeting_cancel, "cancel a meeting")
    p.add_argument("id", type=int)
    p = cmd(m, "list", meeting_list, "list planned meetings and the young person's reply")
    p.add_argument("--all", action="store_true", help="also cancelled ones")
    p = cmd(m, "import", meeting_import, "import meetings from CSV (all or nothing)")
    p.add_argument("file")
