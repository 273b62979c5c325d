"""`veivis flows check | test | translations`: the coordinators' commands, in Norwegian.

Wiring only: the checks live in bot.engine (loader, language, i18n) and the transcripts in
bot.app.flowtest; this module reads arguments, prints what a coordinator needs and writes the
translations files.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bot.app.flowtest import run_all
from bot.app.settings import FlowsError, default_flows_dir, load_flows, messages_dir
from bot.engine.i18n import (
    LANGUAGE_NAMES,
    TRANSLATED,
    FlowText,
    dump,
    flow_texts,
    load_all,
    read_translations,
    translations_path,
    updated,
)
from bot.engine.loader import Diagnostic, Report, load
from bot.engine.model import FlowSet


def print_diagnostics(diags: Sequence[object], stream: object = sys.stdout) -> None:
    for d in diags:
        print(d, file=stream)  # type: ignore[call-overload]


def load_flows_or_explain(flows_dir: Path) -> FlowSet | None:
    """The flows, or None after telling the person what to fix (on stderr)."""
    try:
        return load_flows(flows_dir)
    except FlowsError as e:
        print_diagnostics(e.lines, sys.stderr)
        print(f"Flytene i {flows_dir} har feil. Rett dem, og prøv igjen "
              "(./veivis flows check viser alle).", file=sys.stderr)
        return None


def counted(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def summary(report: Report) -> str:
    """The last line of `flows check`: «15 flyter sjekket: 0 feil, 0 advarsler»."""
    flows = len(report.flowset.flows) if report.flowset else 0
    return (f"{counted(flows, 'flyt', 'flyter')} sjekket: {len(report.errors)} feil, "
            f"{counted(len(report.warnings), 'advarsel', 'advarsler')}")


def cmd_check(args: argparse.Namespace) -> int:
    paths = args.paths or [str(default_flows_dir())]
    if args.messages:
        messages: Path | None = Path(args.messages)
    elif not args.paths:
        messages = messages_dir(default_flows_dir())
    else:
        messages = None  # checking chosen files: translations only with --messages
    report = load_all(paths, messages)
    print_diagnostics(report.diagnostics)
    if report.lix:
        print("Lesbarhet (LIX; lavere er lettere, sikt mot 35 eller lavere): " + ", ".join(
            f"{fid} {v:.0f}" for fid, v in sorted(report.lix.items())), file=sys.stderr)
    if report.flowset is not None and report.flowset.version:
        print(f"Versjon av flytene: {report.flowset.version}", file=sys.stderr)
    print(summary(report), file=sys.stderr)
    return 1 if report.errors else 0


def cmd_test(args: argparse.Namespace) -> int:
    flows_dir = Path(args.flows) if args.flows else default_flows_dir()
    flowset = load_flows_or_explain(flows_dir)
    if flowset is None:
        return 1
    paths = args.paths or [str(flows_dir / "tests")]
    # a transcript's crisis is a test, not a signal to log
    logging.getLogger("bot.service").setLevel(logging.ERROR)
    ran, failures = asyncio.run(run_all(paths, flowset))
    for f in failures:
        print(f)
    failed = len({f.split(":", 1)[0] for f in failures})
    print(f"{ran - failed} bestått, {failed} feilet")
    if ran == 0:
        print("fant ingen samtaletester i " + ", ".join(map(str, paths)), file=sys.stderr)
        return 1
    return 1 if failures else 0


def cmd_translations(args: argparse.Namespace) -> int:
    """Bring messages/nn.yaml and messages/en.yaml up to the flows: new texts get an empty
    translation, changed ones a new bokmål text; then list what is missing, with lines."""
    flows_dir = Path(args.flows) if args.flows else default_flows_dir()
    messages = Path(args.messages) if args.messages else messages_dir(flows_dir)
    report = load([flows_dir], language=False)
    if report.errors:
        print_diagnostics(report.errors, sys.stderr)
        print("Flytene har feil. Rett dem først (./veivis flows check); oversettelsene ble "
              "ikke endret.", file=sys.stderr)
        return 1
    package = Path(__file__).resolve().parents[1]
    if messages.resolve().is_relative_to(package):
        print(f"{messages} ligger inne i den installerte Veivis-pakken; det som skrives der, "
              "forsvinner ved neste oppgradering. Kopier flytene og oversettelsene til egne "
              "mapper, sett VEIVIS_FLOWS og VEIVIS_MESSAGES (eller --flows og --messages) til "
              "dem, og kjør kommandoen igjen. Ingenting ble endret.", file=sys.stderr)
        return 1
    texts = flow_texts([flows_dir])
    messages.mkdir(parents=True, exist_ok=True)
    status = 0
    for lang in TRANSLATED:
        status |= _update_language(messages, lang, texts)
    return status


def _update_language(messages: Path, lang: str, texts: Sequence[FlowText]) -> int:
    name = LANGUAGE_NAMES[lang]
    diags: list[Diagnostic] = []
    tr = read_translations(messages, lang, diags)
    if tr.broken:
        print_diagnostics(diags, sys.stderr)
        print(f"{tr.path} har feil. Rett dem først; filen ble ikke endret.", file=sys.stderr)
        return 1
    up = updated(texts, tr)
    path = translations_path(messages, lang)
    text = dump(up.entries, lang)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    missing = [e for e in read_translations(messages, lang, []).entries.values() if not e.text]
    changes = ", ".join(part for part in (
        counted(up.added, "ny tekst", "nye tekster") if up.added else "",
        counted(up.changed, "endret tekst", "endrede tekster") if up.changed else "",
        counted(up.removed, "tekst fjernet", "tekster fjernet") if up.removed else "") if part)
    print(f"{path}: {changes or 'ingen endringer'}; "
          f"{counted(len(missing), 'tekst mangler', 'tekster mangler')} {name}.")
    for e in missing:
        print(f"{path}:{e.text_line}: '{e.context}': «{' '.join((e.source or '').split())}»")
    if missing:
        print(f"Skriv {name} etter «{name}:» på linjene over, og kjør ./veivis flows check.")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    f = sub.add_parser("flows", help="sjekk, test og oversett flytfilene (for koordinatorer)")
    fs = f.add_subparsers(dest="flows_command", required=True)
    fc = fs.add_parser("check", help="sjekk flytfilene; avslutter med 1 ved feil")
    fc.add_argument("paths", nargs="*", help="filer eller mapper (standard: flows/)")
    fc.add_argument("--messages", help="mappen med oversettelser (standard uten filer: "
                                       "messages/)")
    fc.set_defaults(func=cmd_check)
    ft = fs.add_parser("test", help="kjør samtaletestene (flows/tests/)")
    ft.add_argument("paths", nargs="*", help="samtaletester (filer eller mapper)")
    ft.add_argument("--flows", help="mappen med flytfiler (standard: flows/)")
    ft.set_defaults(func=cmd_test)
    tr = fs.add_parser("translations", help="oppdater messages/nn.yaml og messages/en.yaml "
                                            "etter flytene, og vis hva som mangler")
    tr.add_argument("--flows", help="mappen med flytfiler (standard: flows/)")
    tr.add_argument("--messages", help="mappen med oversettelser (standard: messages/)")
    tr.set_defaults(func=cmd_translations)
