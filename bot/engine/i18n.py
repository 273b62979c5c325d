"""Languages: the Babel extraction method for flow files, and loading the catalogs.

Bokmål in the flow files is the source. `pybabel extract -F babel.cfg` pulls every user-facing
text out of the flows (with this module's `extract_flows`, registered as the Babel extractor
`veivis_flows`) and the `_()` texts in code into messages/veivis.pot; translators work in
messages/<lang>/LC_MESSAGES/veivis.po. The .po files are read at start (no compiled .mo files
are committed). A text is looked up by (context, bokmål text), so a translation whose source
changed no longer matches and is reported as stale by the checker.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from babel.messages.pofile import read_po

from bot.engine.language import MAX_SEGMENTS, SAMPLE_VALUES, non_gsm, sms_segments
from bot.engine.loader import Diagnostic, Report, file_texts, flow_files, load
from bot.engine.templates import render

DOMAIN = "veivis"
TRANSLATED = ("nn", "en")
LANGUAGE_NAMES = {"nb": "bokmål", "nn": "nynorsk", "en": "English"}


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


@dataclass
class Catalogs:
    """Translations by language, plus the entries marked fuzzy (stale) and where they live."""

    translations: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    fuzzy: dict[str, set[str]] = field(default_factory=dict)  # lang -> contexts
    contexts: dict[str, dict[str, str]] = field(default_factory=dict)  # lang -> ctx -> msgid
    paths: dict[str, str] = field(default_factory=dict)


def po_path(messages: Path, lang: str) -> Path:
    return messages / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def load_catalogs(messages: Path) -> Catalogs:
    cats = Catalogs()
    for lang in TRANSLATED:
        path = po_path(messages, lang)
        if not path.exists():
            continue
        with path.open("rb") as f:
            catalog = read_po(f, locale=lang, domain=DOMAIN)
        table: dict[tuple[str, str], str] = {}
        fuzzy: set[str] = set()
        ctxs: dict[str, str] = {}
        for m in catalog:
            if not m.id or not isinstance(m.id, str) or m.context is None:
                continue
            ctxs[m.context] = m.id
            if m.fuzzy:
                fuzzy.add(m.context)
            elif isinstance(m.string, str) and m.string:
                table[m.context, m.id] = m.string
        cats.translations[lang] = table
        cats.fuzzy[lang] = fuzzy
        cats.contexts[lang] = ctxs
        cats.paths[lang] = str(path)
    return cats


def sms_problems(text: str) -> list[str]:
    """What makes a translated text cost more as SMS."""
    out = []
    bad = non_gsm(text)
    if bad:
        out.append("characters outside the SMS alphabet: " + ", ".join(f"«{c}»" for c in bad))
    n, enc = sms_segments(render(text, SAMPLE_VALUES))
    if n > MAX_SEGMENTS:
        out.append(f"needs {n} SMS ({enc}); keep it to {MAX_SEGMENTS}")
    return out


def check_translations(flow_paths: Sequence[str], cats: Catalogs) -> list[Diagnostic]:
    """A warning for every text with no translation, or a stale one, in each language."""
    out: list[Diagnostic] = []
    for path in flow_files(flow_paths):
        texts, _ = file_texts(path)
        for line, context, text in texts:
            for lang in TRANSLATED:
                if lang not in cats.translations:
                    continue
                name, po = LANGUAGE_NAMES[lang], cats.paths[lang]
                translated = cats.translations[lang].get((context, text))
                if translated is not None:
                    out.extend(Diagnostic(path, line, "warning", f"{name} translation of "
                                          f"'{context}': {problem}")
                               for problem in sms_problems(translated))
                    continue
                if context in cats.fuzzy[lang] or context in cats.contexts[lang]:
                    out.append(Diagnostic(path, line, "warning",
                                          f"the {name} translation of '{context}' is stale: "
                                          f"the bokmål text changed after it was translated; "
                                          f"update it in {po}"))
                else:
                    out.append(Diagnostic(path, line, "warning",
                                          f"'{context}' has no {name} translation; add it in "
                                          f"{po}"))
    return out


def default_messages_dir(flows_dir: Path) -> Path:
    return flows_dir.resolve().parent / "messages"


def load_all(paths: Sequence[str | Path], messages: Path | None) -> Report:
    """Load and check flows, then their translations: what `veivis flows check` reports and
    what the bot runs on (the FlowSet carries the catalogs)."""
    report = load(paths)
    if messages is None or not messages.is_dir():
        return report
    cats = load_catalogs(messages)
    report.diagnostics.extend(check_translations([str(p) for p in paths], cats))
    report.diagnostics.sort(key=lambda d: (d.path, d.line))
    if report.flowset is not None:
        report.flowset = replace(report.flowset, catalogs=cats.translations)
    return report
