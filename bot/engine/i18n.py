"""Languages: bokmål in the flow files is the source; nynorsk and English live in one plain
YAML file per language that coordinators keep up to date themselves.

    messages/nn.yaml                      # and messages/en.yaml
    menu.valg:                            # the text's context: flow.step (.option / .hint)
      bokmål: Hva vil du gjøre?           # the bokmål text this translation is of
      nynorsk: Kva vil du gjere?          # the translation ("engelsk:" in en.yaml)
      gammel: ...                         # optional: the translation of an earlier bokmål text

`veivis flows translations` writes the files (bot.app.flowcmds): a new text gets an entry with
an empty translation; a changed text gets the new `bokmål:` and an empty translation, with the
old one kept under `gammel:` for reference. A translation is used only while its `bokmål:` is
the flow's text, so a changed text is never answered with an old translation; the user gets
bokmål until the coordinator writes the new one. The checker lists every missing or stale
entry at its line. Reading files is all this module does; it never writes.

The Babel extractor `extract_flows` stays: `pybabel extract -F babel.cfg` still turns the flow
texts into a gettext template for anyone who wants one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import LiteralScalarString

from bot.engine.language import MAX_SEGMENTS, SAMPLE_VALUES, non_gsm, sms_segments
from bot.engine.loader import (
    Diagnostic,
    FileChecker,
    Report,
    file_texts,
    flow_files,
    line_of_key,
    load,
    read_yaml,
)
from bot.engine.templates import render, variables_in

TRANSLATED = ("nn", "en")
LANGUAGE_NAMES = {"nb": "bokmål", "nn": "nynorsk", "en": "engelsk"}
SOURCE = "bokmål"
OLD = "gammel"
COMMAND = "./veivis flows translations"


def extract_flows(fileobj: IO[bytes], keywords: Collection[str], comment_tags: Collection[str],
                  options: Mapping[str, Any]) -> Iterator[tuple[int, str, tuple[str, str],
                                                                list[str]]]:
    """Babel extraction method: (line, 'pgettext', (context, text), comments) per text."""
    name = getattr(fileobj, "name", None)
    if not name:
        return
    texts, _ = file_texts(name)
    for line, context, text in texts:
        yield line, "pgettext", (context, text), []


@dataclass(frozen=True)
class FlowText:
    """A text a user sees, where it is written, and its context (flow.step...)."""

    path: str
    line: int
    context: str
    text: str


def flow_texts(paths: Sequence[str | Path]) -> list[FlowText]:
    out: list[FlowText] = []
    for path in flow_files(paths):
        texts, _ = file_texts(path)
        out.extend(FlowText(path, line, ctx, text) for line, ctx, text in texts)
    return out


@dataclass(frozen=True)
class Entry:
    """One text in a translations file."""

    context: str
    source: str | None  # the bokmål text it translates
    text: str | None  # the translation; None or "" while it is missing
    old: str | None = None  # the translation of an earlier bokmål text
    line: int = 0  # where the entry starts
    text_line: int = 0  # where the translation is written (or would be)


@dataclass
class Translations:
    """One language's file, as read."""

    lang: str
    path: str
    entries: dict[str, Entry] = field(default_factory=dict)
    broken: bool = False  # the file has mistakes: it is not used, and never overwritten

    @property
    def name(self) -> str:
        return LANGUAGE_NAMES[self.lang]

    def table(self) -> dict[tuple[str, str], str]:
        """(context, bokmål) -> translation: what the bot looks up."""
        return {(e.context, e.source): e.text for e in self.entries.values()
                if e.source and e.text}


def translations_path(messages: Path, lang: str) -> Path:
    return messages / f"{lang}.yaml"


def read_translations(messages: Path, lang: str, diags: list[Diagnostic]) -> Translations:
    path = translations_path(messages, lang)
    tr = Translations(lang, str(path))
    if not path.exists():
        return tr
    chk = FileChecker(str(path), diags)
    doc = read_yaml(str(path), chk)
    if doc is not None and not isinstance(doc, CommentedMap):
        chk.error(1, f"filen må ha én oppføring per tekst (navn: med {SOURCE}: og {tr.name}:)")
    elif doc is not None:
        for k in doc:
            entry = _entry(chk, doc, k, tr.name)
            if entry is not None:
                tr.entries[entry.context] = entry
    tr.broken = chk.failed()
    return tr


def _entry(chk: FileChecker, doc: CommentedMap, key: Any, name: str) -> Entry | None:
    line = line_of_key(doc, key, 1)
    node = doc[key]
    if not isinstance(node, CommentedMap):
        chk.error(line, f"'{key}' må ha linjene '{SOURCE}:' og '{name}:' under seg")
        return None
    chk.unknown_keys(node, {SOURCE, name, OLD}, line, f"'{key}'")
    source = chk.get_str(node, SOURCE, line, what=f"'{key}': ") if SOURCE in node else None
    text = None
    if node.get(name) is not None:
        text = chk.get_str(node, name, line, what=f"'{key}': ")
    old = chk.get_str(node, OLD, line, what=f"'{key}': ") if node.get(OLD) else None
    text_line = line_of_key(node, name, line) if name in node else line
    return Entry(str(key), source, text, old, line, text_line)


def sms_problems(text: str) -> list[str]:
    """What makes a translated text cost more as SMS."""
    out = []
    bad = non_gsm(text)
    if bad:
        out.append("tegn utenfor SMS-alfabetet: " + ", ".join(f"«{c}»" for c in bad))
    n, enc = sms_segments(render(text, SAMPLE_VALUES))
    if n > MAX_SEGMENTS:
        out.append(f"trenger {n} SMS ({enc}); hold det til {MAX_SEGMENTS}")
    return out


def _variable_problems(source: str, text: str) -> tuple[list[str], list[str]]:
    """(errors, warnings) about the {variables} of a translation against its bokmål text."""
    wanted = {n for n, ok in variables_in(source) if ok}
    errors, warnings = [], []
    for n, ok in variables_in(text):
        if not ok:
            errors.append(f"'{{{n}}}' er ikke en variabel; skriv {{{{ og }}}} for en "
                          "krøllparentes i teksten")
        elif n not in wanted:
            known = ", ".join(f"{{{w}}}" for w in sorted(wanted)) or "ingen"
            errors.append(f"{{{n}}} står ikke i bokmålsteksten; bruk bare variablene derfra "
                          f"({known})")
    for n in sorted(wanted - {n for n, _ in variables_in(text)}):
        warnings.append(f"{{{n}}} står i bokmålsteksten, men ikke i oversettelsen")
    return errors, warnings


def check_translations(texts: Sequence[FlowText], tr: Translations) -> list[Diagnostic]:
    """Every text missing in one language or translated from an older bokmål text, each at
    the line where the coordinator fixes it; problems in the translations themselves."""
    out: list[Diagnostic] = []
    name, path = tr.name, tr.path
    for t in texts:
        e = tr.entries.get(t.context)
        if e is None:
            out.append(Diagnostic(t.path, t.line, "warning", f"'{t.context}' mangler på {name}; "
                                  f"kjør {COMMAND}, så får teksten en linje i {path}"))
        elif e.source != t.text:
            out.append(Diagnostic(path, e.line, "warning", f"{name} for '{t.context}' er "
                                  f"gammel: bokmålsteksten er endret ({t.path}:{t.line}); kjør "
                                  f"{COMMAND}, og skriv ny tekst etter «{name}:»"))
        elif not e.text:
            out.append(Diagnostic(path, e.text_line, "warning", f"'{t.context}' mangler "
                                  f"{name}; skriv teksten etter «{name}:» (bokmål: "
                                  f"«{_short(t.text)}»)"))
        else:
            errors, warnings = _variable_problems(t.text, e.text)
            warnings += sms_problems(e.text)
            out += [Diagnostic(path, e.text_line, "error", f"'{t.context}': {m}") for m in errors]
            out += [Diagnostic(path, e.text_line, "warning", f"'{t.context}': {m}")
                    for m in warnings]
    used = {t.context for t in texts}
    out += [Diagnostic(path, e.line, "warning", f"'{e.context}' finnes ikke lenger i flytene; "
                       f"kjør {COMMAND} for å rydde") for e in tr.entries.values()
            if e.context not in used]
    return out


def _short(s: str, n: int = 60) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def default_messages_dir(flows_dir: Path) -> Path:
    """messages/ beside the flows folder (kept relative, so messages read «messages/nn.yaml»)."""
    named = flows_dir.name not in ("", ".", "..")
    return (flows_dir.parent if named else flows_dir.resolve().parent) / "messages"


def load_all(paths: Sequence[str | Path], messages: Path | None) -> Report:
    """Load and check flows, then their translations: what `veivis flows check` reports and
    what the bot runs on (the FlowSet carries the translations it can use)."""
    report = load(paths)
    files = [Path(f) for f in flow_files(paths)]
    if messages is not None and messages.is_dir():
        files += [translations_path(messages, lang) for lang in TRANSLATED]
    if report.flowset is not None:
        report.flowset = replace(report.flowset, version=_version(files))
    if messages is None or not messages.is_dir():
        return report
    texts = flow_texts(paths)
    catalogs: dict[str, dict[tuple[str, str], str]] = {}
    for lang in TRANSLATED:
        tr = read_translations(messages, lang, report.diagnostics)
        report.diagnostics.extend(check_translations(texts, tr))
        catalogs[lang] = {} if tr.broken else tr.table()
    report.diagnostics.sort(key=lambda d: (d.path, d.line))
    if report.flowset is not None:
        report.flowset = replace(report.flowset, catalogs=catalogs)
    return report


def _version(files: Sequence[Path]) -> str:
    """12 hex digits that change when any of these files does."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.name.encode() + b"\0")
        with contextlib.suppress(OSError):
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:12]


# -- writing a translations file (the command does the I/O) -----------------------------------

@dataclass(frozen=True)
class Update:
    """What `veivis flows translations` changes in one language's file."""

    entries: list[Entry]
    added: int = 0
    changed: int = 0
    removed: int = 0


def updated(texts: Sequence[FlowText], tr: Translations) -> Update:
    """The file's entries for the flows as they are now, in the flows' order: translations
    kept where the bokmål is unchanged, emptied (the old one under `gammel:`) where it changed,
    new texts with an empty translation, texts no longer in the flows dropped."""
    out: list[Entry] = []
    added = changed = 0
    seen: set[str] = set()
    for t in texts:
        if t.context in seen:
            continue
        seen.add(t.context)
        e = tr.entries.get(t.context)
        if e is None:
            out.append(Entry(t.context, t.text, None))
            added += 1
        elif e.source == t.text:
            out.append(Entry(t.context, t.text, e.text, None if e.text else e.old))
        else:
            out.append(Entry(t.context, t.text, None, e.text or e.old))
            changed += 1
    removed = len(set(tr.entries) - seen)
    return Update(out, added, changed, removed)


HEADER = """\
# {Name} for Veivis: én oppføring per tekst brukeren ser.
# Skriv {name} etter «{name}:». Ikke endre «bokmål:»: den viser hvilken tekst du oversetter.
# Etter endringer i flytene: kjør {command}.
# Da får nye tekster en tom «{name}:». En endret tekst får ny «bokmål:» og tom «{name}:», og
# den gamle oversettelsen står under «gammel:» til du har skrevet en ny.
# Har teksten kolon og mellomrom (': '), eller starter den med {{ eller [, sett anførselstegn
# (") rundt hele teksten. Variabler som {{fornavn}} skrives som i bokmålsteksten.
# Kommentarer du skriver selv i denne filen, blir borte neste gang kommandoen kjøres.
"""


def dump(entries: Sequence[Entry], lang: str) -> str:
    """The text of a translations file."""
    name = LANGUAGE_NAMES[lang]
    yaml = YAML(typ="rt")
    yaml.width = 4096  # one line per text: nothing to get wrong when editing
    parts = [HEADER.format(Name=name.capitalize(), name=name, command=COMMAND)]
    for e in entries:
        body: dict[str, Any] = {SOURCE: _scalar(e.source), name: _scalar(e.text)}
        if e.old and not e.text:
            body[OLD] = _scalar(e.old)
        buf = io.StringIO()
        yaml.dump({e.context: body}, buf)
        parts.append(buf.getvalue())
    return "\n".join(parts)


def _scalar(s: str | None) -> Any:
    if s is None or s == "":
        return None
    return LiteralScalarString(s) if "\n" in s else s
