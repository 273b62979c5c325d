"""The command line: `veivis chat`, `veivis flows check`, `veivis flows test`.

Wiring only: it reads arguments and the environment, opens the store, loads flows and hands
over to the pipeline and channels. Errors a person can fix are printed plainly, never as a
traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from bot.app.admin import add_parsers, run
from bot.app.config import Config, apply_config, configured
from bot.app.demo import DEMO_USER_PHONE, seed_demo
from bot.app.flowcmds import add_parsers as add_flows_parsers
from bot.app.flowcmds import load_flows_or_explain, print_diagnostics
from bot.app.logs import setup_logging
from bot.app.settings import (
    DatabaseFileError,
    Settings,
    SettingsError,
    activate,
    active,
    database_problem,
    default_flows_dir,
    load_settings,
    open_store,
)
from bot.channels.base import INVITE_DAYS, plain_text
from bot.channels.console import CHANNEL as CONSOLE
from bot.channels.console import ConsoleSender
from bot.engine.language import sms_segments
from bot.engine.loader import SEVERITY_NB, os_problem
from bot.phone import PhoneError, mask_address, normalise_phone, pretty_phone
from bot.reports import announce
from bot.reports.digest import make_report
from bot.reports.formats import FORMATS
from bot.reports.report import PeriodError
from bot.service.clock import system_clock
from bot.service.meetings import user_id_by_phone
from bot.service.pipeline import FlowRequest, Inbound, Pipeline
from bot.service.scheduler import Ticker
from bot.store import Store
from bot.store.db import backup_file, check_backup
from bot.store.meetings import MeetingError
from bot.store.migrations import MIGRATIONS, SchemaTooNew
from bot.store.pg import copy_sqlite, is_url
from bot.store.seal import SealError, key_file_for
from bot.timing.planner import DEFAULT_RULES, OSLO, Rules
from bot.timing.when import WhenError, describe, parse_day

log = logging.getLogger("veivis")


def cmd_krise_test(args: argparse.Namespace) -> int:
    """veivis krise test "tekst": would this message trigger crisis safety, and why."""
    from bot.engine.crisis import explain
    from bot.engine.loader import load

    flows_dir = Path(args.flows) if args.flows else default_flows_dir()
    report = load([flows_dir], language=False)
    if report.errors or report.flowset is None or report.flowset.crisis is None:
        print_diagnostics(report.errors, sys.stderr)
        print(f"Fant ingen brukbar krise-ordliste i {flows_dir} (veivis flows check viser "
              "feilene).", file=sys.stderr)
        return 2
    triggered = False
    for i, text in enumerate(args.texts):
        verdict = report.flowset.crisis.check(text, explain=True)
        triggered |= verdict.tier is not None
        print(("\n" if i else "") + f"Melding: «{text}»")
        print("\n".join(explain(verdict, report.flowset.crisis.model)))
    return 0 if triggered else 1


# -- veivis chat --------------------------------------------------------------------------------

async def _read_line(interactive: bool) -> str | None:
    if interactive:
        try:
            return await asyncio.to_thread(input, "du> ")
        except EOFError:
            return None
    line: str = await asyncio.to_thread(sys.stdin.readline)
    if line == "":
        return None
    return line.rstrip("\r\n")


def _configured_or_explain() -> tuple[Config | None, Rules | None]:
    """The configuration file (if any) and its reminder rules; (None, None) after saying on
    stderr what is wrong with the file."""
    conf, errors = configured(active().config_path)
    if errors:
        print("\n".join(["veivis: oppsettfilen har feil:", *errors]), file=sys.stderr)
        return None, None
    return conf, conf.rules if conf else DEFAULT_RULES


async def chat(args: argparse.Namespace) -> int:
    if not args.verbose:  # the chat window shows what the young person sees: no developer logs
        logging.getLogger().setLevel(logging.CRITICAL)
    flows = load_flows_or_explain(Path(args.flows) if args.flows else default_flows_dir())
    if flows is None:
        return 1
    try:
        phone = normalise_phone(args.user) if args.user else DEMO_USER_PHONE
    except PhoneError as e:
        print(f"--user: {e}", file=sys.stderr)
        return 2
    if args.flow and flows.get(args.flow) is None:
        print(f"--flow: det finnes ingen flyt som heter '{args.flow}'; disse finnes: "
              f"{', '.join(sorted(flows.flows))}", file=sys.stderr)
        return 2
    try:
        clock = ChatClock(parse_now(args.now) if args.now else None)
    except ValueError as e:
        print(f"--now: {e}", file=sys.stderr)
        return 2
    conf, rules = _configured_or_explain()
    if rules is None:
        return 1
    # a preview never touches the real database: it runs on a throwaway one in memory
    store = await open_store(":memory:" if args.flow else args.db)
    try:
        if conf is not None:
            await apply_config(store, conf)
        if not args.no_demo and store.created:
            await seed_demo(store, clock())
        await store.purge(clock())  # what the welcome promises: logs go after 90 days
        if args.flow:
            print(f"Forhåndsvisning av flyten {args.flow}: ingenting blir lagret (en "
                  f"midlertidig database{'' if args.no_demo else ' med demodata'}).",
                  file=sys.stderr)
        async with Pipeline(store, flows, clock, rules=rules) as pipeline:
            await _converse(args, store, pipeline, clock, rules, phone)
    finally:
        await store.close()
    return 0


async def _converse(args: argparse.Namespace, store: Store, pipeline: Pipeline,
                    clock: ChatClock, rules: Rules, phone: str) -> None:
    """Lines from the person in, the bot's messages out, until /slutt or the end of input."""
    interactive = sys.stdin.isatty()
    width = shutil.get_terminal_size().columns if interactive else None
    sender = ConsoleSender(store, sys.stdout, clock, as_json=args.json, width=width)
    if interactive and not args.json:
        print(f"Veivis, lokal chat. Du skriver som {pretty_phone(phone)}. Klokka er "
              f"{describe(clock())}. Skriv /tid +1d (eller +2h, +30m) for å flytte "
              "klokka, /slutt for å avslutte.\n")
    ticker = Ticker(store, pipeline, clock, rules)
    # a preview shows one flow; otherwise what is due fires as the clock passes it
    scheduled = not args.flow
    if args.flow:
        await pipeline.submit(FlowRequest(CONSOLE, phone, args.flow, preview=True))
    else:
        await ticker.tick()
    await sender.drain()
    while True:
        line = await _read_line(interactive)
        if line is None:
            break
        cmd = line.strip().lower()
        if interactive and cmd in ("/slutt", "/quit", "/exit"):
            break
        if cmd.startswith("/tid"):
            try:
                clock.advance(parse_offset(cmd[4:]))
            except ValueError as e:
                print(f"/tid: {e}", file=sys.stderr)
                continue
            if not args.json:
                print(f"(klokka er nå {describe(clock())})")
            await ticker.tick()
            await sender.drain()
            continue
        await pipeline.submit(Inbound(CONSOLE, phone, line, f"console-{uuid.uuid4()}"))
        if scheduled:
            await ticker.tick()
        await sender.drain()


class ChatClock:
    """The chat's clock: real time, or from --now; /tid moves it forward."""

    def __init__(self, start: datetime | None) -> None:
        self._base = start or system_clock()
        self._t0 = time.monotonic()
        self._offset = timedelta()

    def __call__(self) -> datetime:
        return self._base + timedelta(seconds=time.monotonic() - self._t0) + self._offset

    def advance(self, by: timedelta) -> None:
        self._offset += by


def parse_offset(text: str) -> timedelta:
    """'+1d', '+2h', '+30m', '+1d2h' -> a timedelta."""
    s = text.strip().replace(" ", "")
    m = re.fullmatch(r"\+((?:\d+[dhm])+)", s)
    if not m:
        raise ValueError("skriv /tid +1d, +2h eller +30m")
    units = {"d": "days", "h": "hours", "m": "minutes"}
    return timedelta(**{units[u]: int(n) for n, u in re.findall(r"(\d+)([dhm])", m.group(1))})


def parse_now(text: str) -> datetime:
    """'2026-11-24 17:00' in Oslo time."""
    try:
        local = datetime.strptime(text.strip(), "%Y-%m-%d %H:%M")
    except ValueError as e:
        raise ValueError("skriv tiden som «2026-11-24 17:00» (norsk tid)") from e
    return local.replace(tzinfo=OSLO).astimezone(UTC)


# -- veivis run / check-config / invite / outbox / backup -------------------------------------

def _settings(args: argparse.Namespace) -> Settings | None:
    """The settings `main` loaded for this command (the one loader, for every command)."""
    return active()


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 1
    if args.show:
        print("\n".join(settings.describe()))
    problems = settings.problems()
    from bot.app.server import StartError, flows_for  # the web server's libraries: only here

    try:
        flows_for(settings)
    except StartError as e:
        problems.append(str(e))
    _conf, errors = configured(settings.config_path)
    problems += errors
    if problems:
        print("Ikke klar til å starte:", file=sys.stderr)
        for p in problems:
            print(f"- {p}", file=sys.stderr)
        return 1
    channels = [n for n, on in (("Telegram", settings.telegram), ("SMS", settings.sms)) if on]
    print(f"Klar til å starte: {' og '.join(channels)}; databasen {settings.db}; webserveren "
          f"på {settings.host}:{settings.port}.")
    if not settings.sms:
        print("Merk: meldinger til veiledernes jobbtelefoner (videresendinger, oppsummeringer, "
              "krisevarsler) går som SMS. Uten Twilio venter de i utboksen: sett TWILIO_* for "
              "å sende dem.")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return 1
    from bot.app.server import StartError, serve  # the web server's libraries: only here

    try:
        return asyncio.run(serve(settings))
    except StartError as e:
        print(f"veivis run: {e}", file=sys.stderr)
        return 1


async def _invite(args: argparse.Namespace) -> int:
    from bot.channels import telegram as T  # python-telegram-bot: only here

    settings = _settings(args)
    if settings is None:
        return 1
    if not settings.telegram:
        print("veivis invite: Telegram er ikke satt opp (sett TELEGRAM_BOT_TOKEN)",
              file=sys.stderr)
        return 1
    try:
        phone = normalise_phone(args.phone)
    except PhoneError as e:
        print(f"veivis invite: {e}", file=sys.stderr)
        return 2
    store = await open_store(args.db)
    try:
        try:
            uid, _ = await user_id_by_phone(store, phone)
        except MeetingError:
            print(f"veivis invite: ingen bruker har nummeret {pretty_phone(phone)}; legg "
                  "brukeren til først (veivis user add)", file=sys.stderr)
            return 1
        bot = T.make_bot(settings.get("TELEGRAM_BOT_TOKEN"), settings.get("TELEGRAM_API_URL"))
        try:
            async with bot:
                username = bot.username
        except Exception as e:
            print(f"veivis invite: fikk ikke kontakt med Telegram for å finne navnet på boten "
                  f"({type(e).__name__}); sjekk TELEGRAM_BOT_TOKEN", file=sys.stderr)
            return 1
        link = await T.invite(store, uid, username, system_clock(), args.days)
    finally:
        await store.close()
    print(link)
    print(f"Send lenken til {pretty_phone(phone)}. Den virker én gang, i {args.days} dager.",
          file=sys.stderr)
    return 0


async def _outbox_list(args: argparse.Namespace) -> int:
    store = await open_store(args.db)
    try:
        rows = await store.list_outbox(failed=args.failed, limit=args.limit)
        counts = await store.outbox_counts()
        waiting = await store.unsent_outbox("sms")
    finally:
        await store.close()
    print("meldinger etter status: " + (", ".join(
        f"{STATUS_NB.get(k, k)} {v}" for k, v in sorted(counts.items())) or "ingen"))
    if waiting:  # what Twilio will bill: parts of 153 GSM-7 septets or 67 UCS-2 units
        parts = [sms_segments(plain_text(i.text, i.choices, i.numbered)) for i in waiting]
        ucs2 = sum(1 for _, enc in parts if enc == "UCS-2")
        print(f"SMS som venter: {len(waiting)}, til sammen {sum(n for n, _ in parts)} "
              f"SMS-deler ({ucs2} sendes som UCS-2: tegn utenfor GSM-7)")
    for r in rows:
        delivery = f" ({r.delivery})" if r.delivery else ""
        error = f": {r.last_error}" if r.last_error else ""
        print(f"#{r.id} {r.created_at} {r.channel} til {mask_address(r.address)} "
              f"{STATUS_NB.get(r.status, r.status)}{delivery}, {r.tries} forsøk{error}")
    return 0


def cmd_migrate_to(args: argparse.Namespace) -> int:
    """Copy an SQLite database into an empty PostgreSQL database (stop the bot first)."""
    if not is_url(args.url):
        print(f"veivis migrate-to: {args.url}: ikke en postgresql://-adresse", file=sys.stderr)
        return 2
    if is_url(args.db) or not Path(args.db).exists():
        print(f"veivis migrate-to: {args.db}: SQLite-databasen finnes ikke", file=sys.stderr)
        return 1
    try:
        counts = asyncio.run(copy_sqlite(args.db, args.url))
    except (ValueError, psycopg.Error) as e:
        print(f"veivis migrate-to: {e}".rstrip(), file=sys.stderr)
        return 1
    for table, n in counts.items():
        print(f"{table}: {n} rader")
    key = key_file_for(args.db)
    print(f"kopiert. Hver instans må nå kjøre med VEIVIS_DB satt til PostgreSQL-adressen og "
          f"VEIVIS_SEAL_KEY_FILE={key} (den samme forseglingsnøkkelen).")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    """SQLite's online backup: a consistent copy while the bot runs."""
    if is_url(args.db):
        print("veivis backup: databasen er PostgreSQL; ta kopi med pg_dump eller plattformens "
              "sikkerhetskopier (se deploy/README.md)", file=sys.stderr)
        return 1
    src_path = Path(args.db)
    if not src_path.exists():
        print(f"veivis backup: {src_path}: databasen finnes ikke", file=sys.stderr)
        return 1
    problem = database_problem(src_path)
    if problem:
        print(f"veivis backup: {problem}", file=sys.stderr)
        return 1
    target = Path(args.target)
    if target.exists() or target.is_symlink():  # a symlink, even to nothing, is not followed
        print(f"veivis backup: {target} finnes fra før; velg en ny fil", file=sys.stderr)
        return 1
    if not target.parent.is_dir():
        print(f"veivis backup: mappen {target.parent} finnes ikke; lag den først",
              file=sys.stderr)
        return 1
    try:
        backup_file(src_path, target, len(MIGRATIONS))
    except FileExistsError:  # made meanwhile, or a symlink planted meanwhile
        print(f"veivis backup: {target} finnes fra før; velg en ny fil", file=sys.stderr)
        return 1
    print(f"sikkerhetskopierte {src_path} til {target}")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Put a `veivis backup` copy in place as the database (VEIVIS_DB), with the bot stopped.
    Refuses to overwrite a database, a file that is not a whole Veivis database, or one from
    a newer Veivis."""
    source, target = Path(args.backup), Path(args.db)
    try:
        problem = check_backup(source, len(MIGRATIONS))
    except sqlite3.DatabaseError as e:
        problem = f"er ikke en SQLite-database ({e})"
    if problem:
        print(f"veivis restore: {source}: {problem}", file=sys.stderr)
        return 1
    for f in (target, Path(f"{target}-wal"), Path(f"{target}-shm")):
        if f.exists():
            print(f"veivis restore: {f} finnes; stopp Veivis og flytt den bort først (ingenting "
                  "er endret)", file=sys.stderr)
            return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    backup_file(source, target, len(MIGRATIONS), still=True)
    print(f"la tilbake {source} som {target}. Seglnøkkelen ({target}.seal-key eller "
          "VEIVIS_SEAL_KEY_FILE) legges tilbake for seg; start Veivis igjen.")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """The report for the resource group, from the anonymous answers: one fixed 14-day period
    that is over."""
    week = None
    if args.period:
        try:
            week = parse_day(args.period, system_clock())
        except WhenError as e:
            print(f"veivis report: {e}", file=sys.stderr)
            return 2
    flows = load_flows_or_explain(default_flows_dir())
    if flows is None:
        return 1
    if not is_url(args.db) and not Path(args.db).exists():
        print(f"veivis report: {args.db}: databasen finnes ikke", file=sys.stderr)
        return 1

    async def go() -> str:
        store = await open_store(args.db)
        try:
            rep = await make_report(store, flows, system_clock(), week=week)
        finally:
            await store.close()
        return FORMATS[args.format](rep)

    try:
        text = asyncio.run(go())
    except PeriodError as e:
        print(f"veivis report: {e}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"skrev {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_announce(args: argparse.Namespace) -> int:
    """«Du sa – vi gjorde»: one short update to those who said yes to hearing back."""
    path = Path(args.file)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        print(f"veivis announce: {path}: filen er ikke UTF-8-tekst", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"veivis announce: {path}: {os_problem(e)}", file=sys.stderr)
        return 1
    flows = load_flows_or_explain(default_flows_dir())
    if flows is None:
        return 1
    findings = announce.check(text, str(path), flows)
    if findings:  # every rule counts here: the text goes to many people at once
        for f in findings:
            print(f"{f.pos}: {SEVERITY_NB[f.severity]}: {f.message}", file=sys.stderr)
        print("Ingenting ble sendt. Endre teksten, og prøv igjen.", file=sys.stderr)
        return 1
    _, rules = _configured_or_explain()
    if rules is None:
        return 1

    async def go() -> str:
        store = await open_store(args.db)
        try:
            if args.dry_run:
                n = len(await store.hear_back_recipients())
                return f"teksten er i orden; den ville gått til {n} personer (ingenting sendt)"
            done = await announce.announce(store, text, system_clock(), rules)
        finally:
            await store.close()
        when = ("nå" if done.due <= system_clock() else
                f"{done.due.astimezone(OSLO):%d.%m kl. %H.%M} (etter stilletiden)")
        return (f"lagt i kø til {done.recipients} personer; den sendes {when}, i vanlig "
                "sendetakt")

    print(asyncio.run(go()))
    return 0


# -- parser -------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veivis", description="Veivis: samtaleroboten for unge med "
                                "aktivitetsplikt (SMS og Telegram).")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="logg hva som skjer (aldri meldingstekster)")
    p.add_argument("--version", action="version", version=f"veivis {version()}",
                   help="vis versjonen")
    p.add_argument("--settings", metavar="FILE.toml", help=SETTINGS_HELP)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("chat", help="chat with the bot in this terminal")
    c.add_argument("--db", help=DB_HELP)
    c.add_argument("--user", help="chat as this phone number (default: the demo user)")
    c.add_argument("--flow", help="start this flow at once (to preview it)")
    c.add_argument("--json", action="store_true", help="one JSON object per bot message")
    c.add_argument("--no-demo", action="store_true", help="do not add demo data to a new db")
    c.add_argument("--flows", help="folder with flow files (default: flows/)")
    c.add_argument("--now", help="start the clock here, e.g. \"2026-11-24 17:00\" (Oslo)")
    c.set_defaults(func=lambda a: asyncio.run(chat(a)))

    add_parsers(sub)
    for name in ("user", "veileder", "meeting", "config", "threads", "export-user"):
        sub.choices[name].set_defaults(func=lambda a: asyncio.run(run(a.handler, a)))

    r = sub.add_parser("run", help="kjør boten: webserver, kanaler, utsending, planlegger")
    r.add_argument("--settings", default=argparse.SUPPRESS, help=SETTINGS_HELP)
    r.set_defaults(func=cmd_run)
    cc = sub.add_parser("check-config", help="si hva som mangler eller er feil i "
                        "innstillingene")
    cc.add_argument("--settings", default=argparse.SUPPRESS, help=SETTINGS_HELP)
    cc.add_argument("--show", action="store_true",
                    help="vis alle innstillingene (hemmeligheter skjult)")
    cc.set_defaults(func=cmd_check_config)
    inv = sub.add_parser("invite", help="print a single-use Telegram link for a user")
    inv.add_argument("phone", help="the user's phone number")
    inv.add_argument("--days", type=int, default=INVITE_DAYS, help="days the link works")
    inv.add_argument("--db", help="the database (default: VEIVIS_DB in the settings)")
    inv.add_argument("--settings", default=argparse.SUPPRESS, help=SETTINGS_HELP)
    inv.set_defaults(func=lambda a: asyncio.run(_invite(a)))
    ob = sub.add_parser("outbox", help="meldinger som venter, er sendt eller feilet")
    obs = ob.add_subparsers(dest="outbox_command", required=True)
    obl = obs.add_parser("list", help="de siste meldingene (uten tekst)")
    obl.add_argument("--failed", action="store_true", help="bare de som feilet")
    obl.add_argument("--limit", type=int, default=50, help="hvor mange (standard 50)")
    obl.add_argument("--db", help=DB_HELP)
    obl.set_defaults(func=lambda a: asyncio.run(_outbox_list(a)))
    rp = sub.add_parser("report", help="the report for the resource group (anonymous answers)")
    rp.add_argument("--period", metavar="DATE",
                    help="the fixed 14-day period DATE falls in (it must be over); default: "
                         "the latest period that is over")
    rp.add_argument("--format", choices=sorted(FORMATS), default="md")
    rp.add_argument("--out", metavar="FILE", help="write here instead of to the screen")
    rp.add_argument("--db", help=DB_HELP)
    rp.set_defaults(func=cmd_report)

    an = sub.add_parser("announce", help="«Du sa – vi gjorde»: a short update to those who "
                        "said yes to hearing back")
    an.add_argument("file", help="a text file with the message (plain Norwegian, checked)")
    an.add_argument("--dry-run", action="store_true", help="check it and count, send nothing")
    an.add_argument("--db", help=DB_HELP)
    an.set_defaults(func=cmd_announce)

    mt = sub.add_parser("migrate-to", help="kopier SQLite-databasen til en ny, tom "
                                           "PostgreSQL-database (postgresql://...)")
    mt.add_argument("url", help="postgresql://bruker@vert:port/database (den må være tom)")
    mt.add_argument("--db", help=DB_HELP)
    mt.set_defaults(func=cmd_migrate_to)

    bk = sub.add_parser("backup", help="ta en sikker kopi av databasen mens boten kjører")
    bk.add_argument("target", help="den nye kopifilen")
    bk.add_argument("--db", help=DB_HELP)
    bk.set_defaults(func=cmd_backup)

    rs = sub.add_parser("restore", help="legg en sikkerhetskopi tilbake som database (med "
                        "boten stoppet)")
    rs.add_argument("backup", help="en fil laget av veivis backup")
    rs.add_argument("--db", help=DB_HELP)
    rs.set_defaults(func=cmd_restore)

    kr = sub.add_parser("krise", help="crisis safety: would a message trigger it, and why")
    krs = kr.add_subparsers(dest="krise_command", required=True)
    krt = krs.add_parser("test", help="show whether a message triggers, which tier and why "
                                      "(exit 0: it triggers, 1: it does not)")
    krt.add_argument("texts", nargs="+", metavar="tekst", help="the message (quote it)")
    krt.add_argument("--flows", help="folder with flow files (default: flows/)")
    krt.set_defaults(func=cmd_krise_test)

    add_flows_parsers(sub)
    return p


STATUS_NB = {"pending": "venter", "sending": "sendes", "unsure": "usikker", "sent": "sendt",
             "failed": "feilet"}


def version() -> str:
    try:
        return metadata.version("veivis")
    except metadata.PackageNotFoundError:
        return "(ikke installert)"


DB_HELP = "databasen (standard: VEIVIS_DB i innstillingene, ellers veivis.db)"
SETTINGS_HELP = ("TOML-fil med innstillinger (standard: VEIVIS_SETTINGS, ellers "
                 "/etc/veivis/veivis.toml); miljøvariabler går foran; alle kommandoer leser de "
                 "samme innstillingene")


def main(argv: Sequence[str] | None = None) -> int:
    # every file this process makes (database, WAL, seal key, backups, exports, reports) is
    # readable by its owner only
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    try:  # the one settings loader, for every command
        settings = load_settings(args.settings)
    except SettingsError as e:
        print(f"veivis: innstillingene: {e}", file=sys.stderr)
        return 1
    for warning in settings.warnings():  # a typo must not fall back to a default silently
        print(f"veivis: merk: {warning}", file=sys.stderr)
    setup_logging(settings, verbose=args.verbose, service=args.command == "run")
    if getattr(args, "db", "absent") is None:
        args.db = settings.db
    activate(settings)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except SchemaTooNew as e:
        print(f"veivis: {e.norwegian()}\n{e}", file=sys.stderr)
        return 1
    except (SealError, DatabaseFileError) as e:  # already one plain line
        print(f"veivis: {e}", file=sys.stderr)
        return 1
    except psycopg.OperationalError:  # PostgreSQL: no server there, or it refused us
        log.debug("failed", exc_info=True)
        db = getattr(args, "db", None)
        where = urlsplit(db if isinstance(db, str) and is_url(db) else settings.db)
        print(f"veivis: fikk ikke kontakt med PostgreSQL-databasen på {where.hostname}:"
              f"{where.port or 5432} (kjører den, og stemmer brukernavn og passord?); kjør "
              "kommandoen igjen med --verbose for å se hva", file=sys.stderr)
        return 1
    except Exception as e:  # a plain line for a person; the traceback only with --verbose
        log.debug("failed", exc_info=True)
        print(f"veivis: noe gikk galt ({type(e).__name__}); kjør kommandoen igjen med "
              "--verbose for å se hva", file=sys.stderr)
        if args.verbose:
            raise
        return 1
    finally:
        activate(None)


if __name__ == "__main__":
    sys.exit(main())
