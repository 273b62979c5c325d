"""Loads flow files (YAML) into the flow model and checks them.

Every problem becomes a Diagnostic, shown as `path:line: feil|advarsel: melding` in plain
Norwegian (coordinators read it); nothing here raises on bad input, whatever a file holds.
Structural checks live here; plain-language rules are added by other checkers that receive the
loaded FlowSet.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .answers import NO_VALUE, YES_VALUE, parse_yesno
from .crisis import CRISIS_FLOW, CrisisRules
from .crisisrules import Problem, compile_file
from .language import Wordlist, check_flowset
from .model import Checklist, Flow, FlowSet, Kind, Option, Pos, Step, Texts
from .systemtexts import SYSTEM_TEXTS
from .templates import COUNT, FLOW_VARIABLES, GLOBAL_VARIABLES, NAME, NUMBER, variables_in

_ID = re.compile(r"[a-z0-9][a-z0-9_\-]*")
_SAVE = re.compile(NAME)

FLOW_KEYS = {"id", "title", "description", "anonymous", "summary", "steps"}
TEXTS_KEYS = {"id", "title", "description", "texts"}
STEP_KEYS = {
    "id", "say", "ask", "type", "save", "options", "hint", "optional",
    "min", "max", "next", "start_flow", "end", "explains", "checklist", "label",
}
WORDLIST_KEYS = {"id", "title", "description", "avoid", "explain"}
CHECKLIST_KEYS = {"id", "title", "description", "items"}
OPTION_KEYS = {"text", "value", "also"}
KINDS = [k.value for k in Kind]


# what a coordinator reads: «feil» must be fixed, «advarsel» is advice
SEVERITY_NB = {"error": "feil", "warning": "advarsel"}


@dataclass(frozen=True, slots=True)
class Diagnostic:
    path: str
    line: int
    severity: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {SEVERITY_NB[self.severity]}: {self.message}"


@dataclass
class Report:
    """What loading produced: the usable flows and every finding."""

    flowset: FlowSet | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    lix: dict[str, float] = field(default_factory=dict)  # readability of each flow

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (mente du '{close[0]}'?)" if close else ""


def line_of_key(node: Any, key: Any, default: int) -> int:
    try:
        return int(node.lc.key(key)[0]) + 1
    except Exception:
        return default


def line_of_value(node: Any, key: Any, default: int) -> int:
    try:
        return int(node.lc.value(key)[0]) + 1
    except Exception:
        return default


def line_of_item(node: Any, i: int, default: int) -> int:
    try:
        return int(node.lc.item(i)[0]) + 1
    except Exception:
        return default


def _line(node: Any, default: int) -> int:
    try:
        return int(node.lc.line) + 1
    except Exception:
        return default


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "true eller false"
    if isinstance(v, int | float):
        return "et tall"
    if isinstance(v, str):
        return "tekst"
    if isinstance(v, list):
        return "en liste"
    if isinstance(v, dict):
        return "nøkler med verdier (navn: verdi)"
    if v is None:
        return "tom"
    return "noe annet"


class FileChecker:
    """Checks and builds one file; records diagnostics with this file's path."""

    def __init__(self, path: str, diags: list[Diagnostic]) -> None:
        self.path = path
        self.diags = diags
        self.errors = 0

    def failed(self) -> bool:
        return self.errors > 0

    def error(self, line: int, msg: str) -> None:
        self.errors += 1
        self.diags.append(Diagnostic(self.path, line, "error", msg))

    def failed_at(self, line: int) -> bool:
        return any(d.path == self.path and d.line == line and d.severity == "error"
                   for d in self.diags)

    def warning(self, line: int, msg: str) -> None:
        self.diags.append(Diagnostic(self.path, line, "warning", msg))

    # -- typed getters --------------------------------------------------------------------
    def get_str(self, node: CommentedMap, key: str, line: int, *, required: bool = False,
                what: str = "") -> str | None:
        if key not in node:
            if required:
                self.error(line, f"{what}mangler nøkkelen '{key}', som må være med")
            return None
        v = node[key]
        vline = line_of_value(node, key, line)
        if isinstance(v, CommentedMap | CommentedSeq) and v.fa.flow_style():
            # `say: {fornavn}` reads as a mapping: a text that starts with { or [ needs quotes
            self.error(vline, f"{what}{_quote_it(key, '{' if isinstance(v, dict) else '[')}")
            return None
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            self.error(vline, f"{what}'{key}' må være tekst, men er {_type_name(v)}")
            return None
        s = str(v)
        if not s.strip():
            self.error(vline, f"{what}'{key}' er tom; skriv en tekst, eller fjern linjen")
            return None
        return s

    def get_bool(self, node: CommentedMap, key: str, line: int, what: str = "") -> bool:
        if key not in node:
            return False
        v = node[key]
        if not isinstance(v, bool):
            self.error(line_of_value(node, key, line),
                       f"{what}'{key}' må være true eller false, men er {_type_name(v)}")
            return False
        return v

    def get_int(self, node: CommentedMap, key: str, line: int, what: str = "") -> int | None:
        if key not in node:
            return None
        v = node[key]
        if isinstance(v, bool) or not isinstance(v, int):
            self.error(line_of_value(node, key, line),
                       f"{what}'{key}' må være et helt tall, men er {_type_name(v)}")
            return None
        return int(v)

    def get_words(self, node: CommentedMap, key: str, line: int, what: str = "") -> tuple[str, ...]:
        """A word or a list of words."""
        if key not in node:
            return ()
        v = node[key]
        if isinstance(v, str) and v.strip():
            return (v.strip(),)
        if isinstance(v, CommentedSeq) and v and all(isinstance(x, str) and x.strip()
                                                      for x in v):
            return tuple(x.strip() for x in v)
        self.error(line_of_value(node, key, line),
                   f"{what}'{key}' må være et ord eller en liste med ord")
        return ()

    def unknown_keys(self, node: CommentedMap, allowed: set[str], line: int, what: str) -> None:
        for k in node:
            if str(k) not in allowed:
                self.error(line_of_key(node, k, line),
                           f"ukjent nøkkel '{k}' i {what}{did_you_mean(str(k), allowed)}")


def os_problem(e: OSError) -> str:
    """Why a file could not be read, in Norwegian (the system says it in English)."""
    known = {errno.ENOENT: "den finnes ikke", errno.EACCES: "du har ikke lov til å lese den",
             errno.EPERM: "du har ikke lov til å lese den", errno.EISDIR: "det er en mappe"}
    return known.get(e.errno or 0, f"feil fra systemet ({e.errno})")


def read_yaml(path: str, chk: FileChecker, raw: bytes | None = None) -> Any:
    """The file parsed (or `raw`, its bytes when they were read already)."""
    if raw is None:
        try:
            raw = Path(path).read_bytes()
        except OSError as e:
            chk.error(1, f"kan ikke lese filen: {os_problem(e)}")
            return None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        chk.error(line, "filen er ikke UTF-8-tekst; lagre den som UTF-8")
        return None
    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as e:
        line, message = _yaml_error(e, text.splitlines())
        chk.error(line, message)
    except YAMLError:
        chk.error(1, "filen er ikke gyldig YAML")
    except RecursionError:
        chk.error(1, "filen har for mange nivåer inni hverandre til å leses")
    except Exception as e:  # ruamel can raise odd things on odd bytes; never a traceback
        chk.error(1, f"kan ikke lese YAML ({type(e).__name__})")
    return None


def _yaml_error(e: MarkedYAMLError, lines: list[str]) -> tuple[int, str]:
    """Where a YAML mistake is and what to do about it, in Norwegian."""
    problem = (e.problem or e.context or "").strip()
    ctx = e.context or ""
    opener = ("en '['" if "sequence" in ctx else "en '{'" if "mapping" in ctx
              else "et anførselstegn" if "quoted" in ctx else None)
    at_end = "stream end" in problem or "end of stream" in problem or "expected ','" in problem
    if opener and at_end and e.context_mark is not None:
        # something opened earlier was never closed: point at where it opened
        return e.context_mark.line + 1, f"{opener} på denne linjen blir aldri lukket"
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 if mark is not None else 1
    last = max((i + 1 for i, t in enumerate(lines) if t.strip()), default=1)
    line = min(line, last)  # a problem found at the end of the file is on its last line
    return line, _yaml_problem(problem, lines[line - 1] if 0 < line <= len(lines) else "")


_BRACE_VALUE = re.compile(r"\s*(?:-\s+)?([^\s:#'\"]+):\s+([\[{])")


def _quote_it(key: str, first: str) -> str:
    return (f"teksten etter '{key}:' starter med '{first}' og blir ikke lest som tekst; sett "
            "anførselstegn (\") rundt hele teksten")


def _yaml_problem(problem: str, line_text: str = "") -> str:
    """ruamel's English description, said in Norwegian with what to do about it."""
    braced = _BRACE_VALUE.match(line_text)
    if braced and "expected" in problem:
        return _quote_it(braced.group(1), braced.group(2))
    if "\\t" in problem or "'\\t'" in problem:
        return "tabulator i innrykket; bruk mellomrom, ikke tabulator"
    if "duplicate key" in problem:
        key = re.search(r'"([^"]*)"', problem)
        which = f" '{key.group(1)}'" if key else ""
        return f"nøkkelen{which} står to ganger; hver nøkkel kan bare stå én gang"
    if "mapping values are not allowed" in problem:
        return "kolon og mellomrom (': ') midt i en tekst; sett teksten i anførselstegn"
    if "could not find expected ':'" in problem:
        return "her mangler et kolon (':') etter navnet"
    if "found character" in problem and "cannot start any token" in problem:
        return ("teksten starter med et tegn som har egen betydning i YAML; sett teksten i "
                "anførselstegn")
    if "expected <block end>" in problem or "did not find expected" in problem:
        return "innrykket stemmer ikke; se at linjene under hverandre starter likt"
    return "filen er ikke gyldig YAML her; se etter innrykk, kolon og anførselstegn på denne " \
           "linjen og linjen over"


def _check_template(chk: FileChecker, text: str, line: int, known: set[str],
                    where: str, anonymous_saves: set[str] | None = None,
                    numbered: bool = False) -> None:
    for name, valid in variables_in(text):
        if not valid:
            chk.error(line, f"{where}: '{{{name}}}' er ikke en variabel; variabler skrives som "
                            f"{{fornavn}}; skriv {{{{ og }}}} for en krøllparentes i teksten")
        elif anonymous_saves is not None and name in anonymous_saves:
            chk.error(line, f"{where}: '{{{name}}}' gjentar et anonymt svar; anonyme svar "
                            "vises aldri tilbake")
        elif name == NUMBER and NUMBER in known and not numbered:
            chk.error(line, f"{where}: {{{NUMBER}}} er nummeret på et spørsmål som lagrer "
                            "svaret ('ask' med 'save'); dette steget er ikke et slikt spørsmål")
        elif name not in known:
            chk.error(line, f"{where}: ukjent variabel '{{{name}}}'"
                            f"{did_you_mean(name, known)}")
    if text.count("{") - text.count("{{") * 2 != text.count("}") - text.count("}}") * 2:
        chk.error(line, f"{where}: en krøllparentes mangler sin make; skriv {{{{ og }}}} for "
                        "en krøllparentes i teksten")


def _build_option(chk: FileChecker, item: Any, line: int, step_id: str) -> Option | None:
    what = f"valg i steg '{step_id}': "
    if isinstance(item, bool) or item is None:
        chk.error(line, f"{what}må være en tekst eller ha 'text', men er {_type_name(item)}")
        return None
    if isinstance(item, str | int | float):
        s = str(item).strip()
        if not s:
            chk.error(line, f"{what}valget er tomt; skriv en tekst")
            return None
        return Option(text=s, value=s, pos=Pos(chk.path, line))
    if isinstance(item, CommentedMap):
        chk.unknown_keys(item, OPTION_KEYS, line, "et valg")
        text = chk.get_str(item, "text", line, required=True, what=what)
        value = chk.get_str(item, "value", line, what=what) or text
        also: list[str] = []
        if "also" in item:
            a = item["also"]
            if isinstance(a, CommentedSeq) and all(
                isinstance(x, str | int) and not isinstance(x, bool) for x in a
            ):
                also = [str(x) for x in a]
            else:
                chk.error(line_of_value(item, "also", line),
                          f"{what}'also' må være en liste med ord")
        if text is None or value is None:
            return None
        return Option(text=text.strip(), value=value.strip(), also=tuple(also),
                      pos=Pos(chk.path, line))
    chk.error(line, f"{what}må være en tekst eller ha 'text', men er {_type_name(item)}")
    return None


_YES_KEYS = {YES_VALUE}
_NO_KEYS = {NO_VALUE}


def _route_key(kind: Kind, key: Any, options: Sequence[Option]) -> str | None:
    """The answer value a `next:` key stands for, or None if it fits no answer."""
    k = str(key).strip()
    if kind is Kind.YESNO:
        v = parse_yesno(k)
        return v
    if kind is Kind.CHOICE:
        for i, o in enumerate(options, start=1):
            if k in (o.value, o.text, str(i)):
                return o.value
    return None


def _step_kind(chk: FileChecker, node: CommentedMap, line: int, what: str) -> Kind | None:
    """The question type of a step (None for a step that only says something)."""
    kind: Kind | None = None
    type_line = line_of_value(node, "type", line)
    tname = chk.get_str(node, "type", line, what=what)
    if "ask" in node:
        if tname is None and "type" not in node:
            chk.error(line, f"{what}stiller et spørsmål, men mangler 'type' "
                            f"(en av: {', '.join(KINDS)})")
        elif tname is not None:
            if tname in KINDS:
                kind = Kind(tname)
            else:
                chk.error(type_line, f"{what}ukjent type '{tname}'; bruk en av: "
                                     f"{', '.join(KINDS)}{did_you_mean(tname, KINDS)}")
    elif "type" in node:
        chk.error(type_line, f"{what}'type' hører til et spørsmål; bruk 'ask' i stedet for "
                             "'say'")
    for key in ("save", "options", "hint", "optional", "min", "max"):
        if key in node and "ask" not in node:
            chk.error(line_of_key(node, key, line), f"{what}'{key}' hører til et spørsmål "
                                                     "(et steg med 'ask')")
    return kind


def _step_save(chk: FileChecker, node: CommentedMap, line: int, what: str,
               kind: Kind | None) -> str | None:
    save = chk.get_str(node, "save", line, what=what)
    if save is not None and not _SAVE.fullmatch(save):
        chk.error(line_of_value(node, "save", line),
                  f"{what}navnet '{save}' i 'save' kan bare ha små bokstaver, tall og '_'")
        save = None
    if save is not None and (save in GLOBAL_VARIABLES or save in FLOW_VARIABLES):
        chk.error(line_of_value(node, "save", line),
                  f"{what}navnet '{save}' i 'save' er en innebygd variabel; velg et annet "
                  "navn")
    if save == "hør_tilbake" and kind is not Kind.YESNO:
        chk.error(line_of_value(node, "save", line),
                  f"{what}'hør_tilbake' er ja/nei til å få høre tilbake; bruk type: yesno")
    return save


def _step_range(chk: FileChecker, node: CommentedMap, line: int, what: str,
                kind: Kind | None) -> tuple[int | None, int | None]:
    """`min` and `max` of a number or scale question (a scale defaults to 1-5)."""
    lo = chk.get_int(node, "min", line, what)
    hi = chk.get_int(node, "max", line, what)
    if (lo is not None or hi is not None) and kind not in (Kind.NUMBER, Kind.SCALE, None):
        chk.error(line_of_key(node, "min" if lo is not None else "max", line),
                  f"{what}'min' og 'max' hører til spørsmål med type number eller scale")
    if kind is Kind.SCALE:
        lo = 1 if lo is None else lo
        hi = 5 if hi is None else hi
        if not (0 <= lo < hi <= 10):
            chk.error(line, f"{what}en skala går fra 0 eller 1 og opp til høyst 10")
    if lo is not None and hi is not None and lo > hi:
        chk.error(line_of_value(node, "min", line), f"{what}'min' er større enn 'max'")
    return lo, hi


def _step_options(chk: FileChecker, node: CommentedMap, line: int, what: str, sid: str,
                  kind: Kind | None) -> list[Option]:
    options: list[Option] = []
    if "options" in node:
        raw = node["options"]
        oline = line_of_value(node, "options", line)
        if kind is not None and kind is not Kind.CHOICE:
            chk.error(line_of_key(node, "options", line),
                      f"{what}'options' hører til et spørsmål med type choice; dette har "
                      f"type {kind.value}")
        if not isinstance(raw, CommentedSeq):
            chk.error(oline, f"{what}'options' må være en liste (hver linje starter med '- ')")
        else:
            seen: dict[str, int] = {}
            for i, item in enumerate(raw):
                il = line_of_item(raw, i, oline)
                opt = _build_option(chk, item, il, sid)
                if opt is None:
                    continue
                key = opt.value.casefold()
                if key in seen:
                    chk.error(il, f"{what}valget '{opt.value}' står to ganger "
                                  f"(første gang på linje {seen[key]})")
                    continue
                seen[key] = il
                options.append(opt)
    if kind is Kind.CHOICE and not options and not chk.failed_at(line):
        chk.error(line, f"{what}et spørsmål med type choice trenger 'options' (minst to valg)")
    elif kind is Kind.CHOICE and len(options) == 1 and len(node["options"]) == 1:
        chk.error(line_of_key(node, "options", line),
                  f"{what}et spørsmål med type choice trenger minst to valg")
    return options


def _step_next(chk: FileChecker, node: CommentedMap, line: int, what: str, kind: Kind | None,
               options: Sequence[Option], extra: dict[str, Any],
               ) -> tuple[str | None, list[tuple[str, str]]]:
    """`next`: one step id, or one per answer; targets are kept in extra for the graph."""
    nxt: str | None = None
    routes: list[tuple[str, str]] = []
    if "next" not in node:
        return nxt, routes
    raw = node["next"]
    nline = line_of_value(node, "next", line)
    if isinstance(raw, str):
        extra.setdefault("targets", []).append((raw, nline))
        return raw, routes
    if not isinstance(raw, CommentedMap):
        chk.error(nline, f"{what}'next' må være id-en til et steg, men er {_type_name(raw)}")
        return nxt, routes
    if kind not in (Kind.YESNO, Kind.CHOICE):
        chk.error(nline, f"{what}'next' kan bare avhenge av svaret for type yesno og choice; "
                         "skriv id-en til ett steg i stedet")
        return nxt, routes
    for k in raw:
        kl = line_of_key(raw, k, nline)
        target = raw[k]
        if not isinstance(target, str):
            chk.error(line_of_value(raw, k, kl), f"{what}'next' for '{k}' må være id-en til "
                                                 "et steg")
            continue
        value = _route_key(kind, k, options)
        if value is None:
            if kind is Kind.YESNO:
                chk.error(kl, f"{what}'{k}' er ikke et svar på et ja/nei-spørsmål; "
                              "bruk 'ja' eller 'nei'")
            elif options:
                chk.error(kl, f"{what}'{k}' er ikke et av valgene"
                              f"{did_you_mean(str(k), [o.value for o in options])}")
            continue
        routes.append((value, target))
        extra.setdefault("targets", []).append((target, kl))
    return nxt, routes


def _step_id(chk: FileChecker, node: Any, line: int, index: int) -> str | None:
    if not isinstance(node, CommentedMap):
        chk.error(line, f"steg {index + 1} må ha 'id' og 'say' eller 'ask', men er "
                        f"{_type_name(node)}")
        return None
    chk.unknown_keys(node, STEP_KEYS, line, "et steg")
    sid = chk.get_str(node, "id", line, required=True, what=f"steg {index + 1}: ")
    if sid is not None and not _ID.fullmatch(sid):
        chk.error(line_of_value(node, "id", line),
                  f"steg '{sid}': id kan bare ha små bokstaver a-z, tall, '_' og '-'")
    return sid


def _step_text(chk: FileChecker, node: CommentedMap, line: int, what: str,
               extra: dict[str, Any]) -> str | None:
    """What the step says or asks (its line kept in extra)."""
    say = chk.get_str(node, "say", line, what=what)
    ask = chk.get_str(node, "ask", line, what=what)
    if "say" in node and "ask" in node:
        chk.error(line_of_key(node, "ask", line),
                  f"{what}har både 'say' og 'ask'; del det i to steg")
    text = ask if ask is not None else say
    if text is not None:
        extra["text_line"] = line_of_value(node, "ask" if ask is not None else "say", line)
    return text


def _check_step_keys(chk: FileChecker, node: CommentedMap, line: int, what: str,
                     step: Step) -> None:
    """Keys that do not fit together."""
    if step.label is not None and step.save is None:
        chk.error(line_of_value(node, "label", line),
                  f"{what}'label' er navnet på et lagret svar; legg til 'save', eller fjern "
                  "'label'")
    if step.end and "next" in node:
        chk.error(line_of_key(node, "end", line), f"{what}har både 'end' og 'next'; behold én "
                                                   "av dem")
    if step.start_flow is not None and ("ask" in node or "next" in node):
        chk.error(line_of_key(node, "start_flow", line),
                  f"{what}'start_flow' går ut av denne flyten, så steget kan ikke ha 'ask' "
                  "eller 'next'")
    if (step.text is None and step.start_flow is None and not step.end and "say" not in node
            and "ask" not in node):
        chk.error(line, f"{what}gjør ingenting; gi det 'say', 'ask', 'start_flow' eller 'end'")


def _build_step(chk: FileChecker, node: Any, line: int,
                index: int) -> tuple[Step | None, dict[str, Any]]:
    """Build one step; returns the step and raw bits (route keys with lines) for later checks."""
    extra: dict[str, Any] = {}
    sid = _step_id(chk, node, line, index)
    if sid is None:
        return None, extra
    what = f"steg '{sid}': "
    text = _step_text(chk, node, line, what, extra)
    kind = _step_kind(chk, node, line, what)
    save = _step_save(chk, node, line, what, kind)
    hint = chk.get_str(node, "hint", line, what=what)
    optional = chk.get_bool(node, "optional", line, what)
    lo, hi = _step_range(chk, node, line, what, kind)
    options = _step_options(chk, node, line, what, sid, kind)
    nxt, routes = _step_next(chk, node, line, what, kind, options, extra)
    start_flow = chk.get_str(node, "start_flow", line, what=what)
    if start_flow is not None:
        extra["start_flow_line"] = line_of_value(node, "start_flow", line)
    end = chk.get_bool(node, "end", line, what)
    explains = chk.get_words(node, "explains", line, what)
    checklist = chk.get_words(node, "checklist", line, what)
    if checklist:
        extra["checklist_line"] = line_of_value(node, "checklist", line)
    label = chk.get_str(node, "label", line, what=what)
    if hint is not None:
        extra["hint_line"] = line_of_value(node, "hint", line)
    if save is not None:
        extra["save_line"] = line_of_value(node, "save", line)
    step = Step(
        id=sid, pos=Pos(chk.path, line), text=text, kind=kind, save=save,
        options=tuple(options), hint=hint, optional=optional, min=lo, max=hi, next=nxt,
        routes=tuple(routes), start_flow=start_flow, end=end, explains=explains,
        checklist=checklist, label=label,
        text_pos=Pos(chk.path, extra["text_line"]) if "text_line" in extra else None,
        hint_pos=Pos(chk.path, extra["hint_line"]) if "hint_line" in extra else None,
    )
    _check_step_keys(chk, node, line, what, step)
    return step, extra


def _successors(flow_steps: Sequence[Step], i: int) -> list[str]:
    s = flow_steps[i]
    if s.end or s.start_flow:
        return []
    out = [t for _, t in s.routes]
    if s.next:
        out.append(s.next)
    elif i + 1 < len(flow_steps):  # the following step (also for answers not listed)
        out.append(flow_steps[i + 1].id)
    return out


def _check_graph(chk: FileChecker, flow_id: str, steps: Sequence[Step],
                 extras: Sequence[dict[str, Any]]) -> None:
    ids = {s.id for s in steps}
    for s, ex in zip(steps, extras, strict=True):
        for target, tline in ex.get("targets", []):
            if target not in ids:
                chk.error(tline, f"steg '{s.id}' går til '{target}', som ikke finnes"
                                 f"{did_you_mean(target, ids)}")
    if not steps:
        return
    # reachability from the first step
    index = {s.id: i for i, s in enumerate(steps)}
    seen = {steps[0].id}
    todo = [0]
    while todo:
        i = todo.pop()
        for t in _successors(steps, i):
            if t in index and t not in seen:
                seen.add(t)
                todo.append(index[t])
    for s in steps:
        if s.id not in seen:
            chk.warning(s.pos.line, f"steg '{s.id}' kan aldri nås; pek på det med 'next', "
                                    "eller fjern det")
    # a loop of steps that never wait for an answer would run forever
    silent = {s.id for s in steps if s.kind is None}
    state: dict[str, int] = {}

    def visit(sid: str, path: list[str]) -> None:
        state[sid] = 1
        for t in _successors(steps, index[sid]):
            if t not in silent or t not in index:
                continue
            if state.get(t) == 1:
                cyc = [*path[path.index(t):], t] if t in path else [sid, t]
                chk.error(steps[index[t]].pos.line,
                          f"stegene {' -> '.join(cyc)} går i ring uten et spørsmål")
            elif t not in state:
                visit(t, [*path, t])
        state[sid] = 2

    for s in steps:  # in file order, so the same loop is always reported at the same line
        if s.id in silent and s.id not in state:
            visit(s.id, [s.id])


def _flow_steps(chk: FileChecker, doc: CommentedMap,
                ) -> tuple[list[Step], list[dict[str, Any]]] | None:
    """The steps of a flow file, each checked (None when 'steps' is missing or no list)."""
    if "steps" not in doc:
        chk.error(1, "mangler nøkkelen 'steps', som må være med")
        return None
    raw = doc["steps"]
    sline = line_of_value(doc, "steps", 1)
    if not isinstance(raw, CommentedSeq):
        chk.error(sline, f"'steps' må være en liste med steg, men er {_type_name(raw)}")
        return None
    if not raw:
        chk.error(sline, "'steps' er tom; en flyt trenger minst ett steg")
        return None
    steps: list[Step] = []
    extras: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    number = 0
    for i, node in enumerate(raw):
        line = line_of_item(raw, i, sline)
        step, ex = _build_step(chk, node, line, i)
        if step is None:
            continue
        if step.id in seen:
            chk.error(line, f"steg-id-en '{step.id}' er brukt to ganger (første gang på "
                            f"linje {seen[step.id]})")
            continue
        seen[step.id] = line
        if step.is_question and step.save:  # {nr}: counted from the top of the file
            number += 1
            step = replace(step, number=number)
        steps.append(step)
        extras.append(ex)
    return steps, extras


def _check_flow_texts(chk: FileChecker, steps: Sequence[Step],
                      extras: Sequence[dict[str, Any]], anonymous: bool) -> None:
    """Variables in texts and hints; answers saved twice."""
    # variables: globals, the question numbers, and answers saved in this flow (never
    # anonymous ones)
    saves = {s.save for s in steps if s.save}
    known = set(GLOBAL_VARIABLES) | FLOW_VARIABLES | (set() if anonymous else saves)
    anon = saves if anonymous else None
    for s, ex in zip(steps, extras, strict=True):
        numbered = s.number is not None
        if s.text is not None:
            _check_template(chk, s.text, ex["text_line"], known, f"steg '{s.id}'", anon,
                            numbered)
        if s.hint is not None:
            _check_template(chk, s.hint, ex["hint_line"], known, f"steg '{s.id}', hint", anon,
                            numbered)
    save_lines: dict[str, int] = {}
    for s, ex in zip(steps, extras, strict=True):
        if s.save:
            if s.save in save_lines:
                chk.warning(ex["save_line"], f"steg '{s.id}' lagrer '{s.save}' igjen (også på "
                                              f"linje {save_lines[s.save]}); det siste svaret "
                                              "gjelder")
            else:
                save_lines[s.save] = ex["save_line"]


def _load_flow(chk: FileChecker, doc: CommentedMap,
               digest: str) -> tuple[Flow | None, list[dict[str, Any]]]:
    chk.unknown_keys(doc, FLOW_KEYS, 1, "en flyt")
    fid = chk.get_str(doc, "id", 1, required=True)
    title = chk.get_str(doc, "title", 1, required=True)
    desc = chk.get_str(doc, "description", 1) or ""
    anonymous = chk.get_bool(doc, "anonymous", 1)
    summary = chk.get_bool(doc, "summary", 1)
    if summary and anonymous:
        chk.error(line_of_value(doc, "summary", 1), "en anonym flyt kan ikke sende svarene "
                  "til veilederen; fjern 'summary' eller 'anonymous'")
    if fid is not None and not _ID.fullmatch(fid):
        chk.error(line_of_value(doc, "id", 1),
                  "id-en til en flyt kan bare ha små bokstaver a-z, tall, '_' og '-'")
    got = _flow_steps(chk, doc)
    if got is None:
        return None, []
    steps, extras = got
    _check_graph(chk, fid or "?", steps, extras)
    _check_flow_texts(chk, steps, extras, anonymous)
    _check_questions(chk, steps, anonymous)
    if fid is None or title is None or not steps:
        return None, extras
    flow = Flow(id=fid, title=title, pos=Pos(chk.path, 1), steps=tuple(steps), version=digest,
                anonymous=anonymous, description=desc, summary=summary,
                questions=sum(1 for s in steps if s.number is not None),
                index={s.id: i for i, s in enumerate(steps)})
    return flow, extras


# The flows the bot itself starts (bot.engine.runtime, bot.timing.planner), and what for.
REQUIRED_FLOWS = {
    "welcome": "velkomst første gang de skriver",
    "menu": "svar på MENY",
    "language": "svar på SPRÅK",
    "message_veileder": "sende melding til veilederen (VEILEDER)",
    "first_meeting_prep": "forberedelse før første møte",
    "meeting_reminder": "påminnelse før et møte",
    "first_meeting_survey": "spørsmål etter første møte",
    "meeting_moved": "beskjed når et møte er flyttet",
    "meeting_cancelled": "beskjed når et møte er avlyst",
}
MAX_SURVEY_QUESTIONS = 8  # an anonymous flow (a survey) asks at most this many on any way


def _ways(steps: Sequence[Step]) -> tuple[dict[str, set[int]], set[int]]:
    """Along every way through the flow from its first step (loops cut where they turn back):
    the numbers each question that saves an answer can have as it is asked, and how many such
    questions a whole way asks."""
    index = {s.id: i for i, s in enumerate(steps)}
    succ = {s.id: [t for t in _successors(steps, i) if t in index] for i, s in enumerate(steps)}
    # depth-first from the first step, without recursion: edges back into the path are loops
    order: list[str] = []
    state: dict[str, int] = {steps[0].id: 1}
    stack: list[tuple[str, int]] = [(steps[0].id, 0)]
    forward: dict[str, list[str]] = {sid: [] for sid in index}
    while stack:
        sid, k = stack.pop()
        if k < len(succ[sid]):
            stack.append((sid, k + 1))
            t = succ[sid][k]
            if state.get(t) == 1:
                continue  # a loop back: cut
            forward[sid].append(t)
            if t not in state:
                state[t] = 1
                stack.append((t, 0))
        else:
            state[sid] = 2
            order.append(sid)
    before: dict[str, set[int]] = {steps[0].id: {0}}
    asked: dict[str, set[int]] = {}
    totals: set[int] = set()
    for sid in reversed(order):  # each step after every step that leads to it
        counts = before.get(sid, set())
        here = {c + 1 for c in counts} if steps[index[sid]].number is not None else counts
        if steps[index[sid]].number is not None:
            asked[sid] = here
        for t in forward[sid]:
            before.setdefault(t, set()).update(here)
        if not succ[sid]:
            totals |= here
    return asked, totals


def _check_questions(chk: FileChecker, steps: Sequence[Step], anonymous: bool) -> None:
    """At most 8 questions on any way through a survey; {nr} and {antall} true for everyone."""
    if not steps:
        return
    asked, totals = _ways(steps)
    count = sum(1 for s in steps if s.number is not None)
    if anonymous and totals and max(totals) > MAX_SURVEY_QUESTIONS:
        over = next((s for s in steps if s.number is not None
                     and MAX_SURVEY_QUESTIONS + 1 in asked.get(s.id, set())), steps[0])
        chk.error(over.pos.line, f"en anonym undersøkelse kan ha høyst {MAX_SURVEY_QUESTIONS} "
                                 f"spørsmål som lagrer svaret ('save'); her får noen "
                                 f"{max(totals)}, og steg '{over.id}' er nummer "
                                 f"{MAX_SURVEY_QUESTIONS + 1}; fjern et spørsmål")
    uses = {name for s in steps for t in (s.text, s.hint) if t
            for name, _ in variables_in(t)} & FLOW_VARIABLES
    if NUMBER in uses:
        for s in steps:
            got = asked.get(s.id)
            if s.number is not None and got and got != {s.number}:
                others = ", ".join(str(n) for n in sorted(got - {s.number}))
                chk.warning(s.pos.line, f"steg '{s.id}' er spørsmål {s.number} i filen, men noen "
                                        f"får det som nummer {others} (et hopp med 'next'); "
                                        "da blir {nr} feil for dem")
    if COUNT in uses and totals - {0} - {count}:
        others = ", ".join(str(n) for n in sorted(totals - {0} - {count}))
        chk.warning(steps[0].pos.line, f"{{antall}} blir {count}, men noen svarer på {others} "
                                       "spørsmål (et hopp med 'next' går forbi spørsmål)")


def _load_texts(chk: FileChecker, doc: CommentedMap) -> Texts | None:
    chk.unknown_keys(doc, TEXTS_KEYS, 1, "systemtekstene")
    raw = doc["texts"]
    tline = line_of_value(doc, "texts", 1)
    if not isinstance(raw, CommentedMap):
        chk.error(tline, "'texts' må være en liste med navn: tekst")
        return None
    texts: dict[str, str] = {}
    positions: dict[str, Pos] = {}
    for k in raw:
        key = str(k)
        kl = line_of_key(raw, k, tline)
        if key not in SYSTEM_TEXTS:
            chk.error(kl, f"ukjent systemtekst '{key}'{did_you_mean(key, SYSTEM_TEXTS)}")
            continue
        s = chk.get_str(raw, k, kl, what=f"systemtekst '{key}': ")
        if s is None:
            continue
        vl = line_of_value(raw, k, kl)
        _check_template(chk, s, vl, set(GLOBAL_VARIABLES) | SYSTEM_TEXTS[key],
                        f"systemtekst '{key}'")
        texts[key] = s
        positions[key] = Pos(chk.path, vl)
    for key in SYSTEM_TEXTS:
        if key not in texts and key not in raw:
            chk.error(tline, f"systemteksten '{key}' mangler")
    if len(texts) != len(SYSTEM_TEXTS):
        return None
    return Texts(pos=Pos(chk.path, 1), texts=texts, positions=positions)


def file_texts(path: str | Path) -> tuple[list[tuple[int, str, str]], list[Diagnostic]]:
    """Every user-facing text in one flow file: (line, context, bokmål text).

    Contexts: 'flow.step' (the text), 'flow.step.hint', 'flow.step.VALUE' (an option),
    'system.KEY' (a system text). Translations are looked up by (context, text).
    """
    diags: list[Diagnostic] = []
    chk = FileChecker(str(path), diags)
    doc = read_yaml(str(path), chk)
    out: list[tuple[int, str, str]] = []
    if chk.failed() or not isinstance(doc, CommentedMap):
        return out, diags
    if "texts" in doc:
        texts = _load_texts(chk, doc)
        if texts is not None:
            out.extend((texts.positions[k].line, f"system.{k}", v) for k, v in texts.texts.items())
        return out, diags
    if "steps" not in doc:
        return out, diags
    flow, _ = _load_flow(chk, doc, "")
    if flow is None:
        return out, diags
    for s in flow.steps:
        if s.text is not None:
            out.append(((s.text_pos or s.pos).line, f"{flow.id}.{s.id}", s.text))
        if s.hint is not None:
            out.append(((s.hint_pos or s.pos).line, f"{flow.id}.{s.id}.hint", s.hint))
        for o in s.options:
            out.append(((o.pos or s.pos).line, f"{flow.id}.{s.id}.{o.value}", o.text))
    return out, diags


def flow_files(paths: Sequence[str | Path]) -> list[str]:
    """The flow files under the given paths (folders: their *.yaml/*.yml, not sub-folders)."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(str(f) for f in sorted(path.iterdir())
                       if f.suffix in (".yaml", ".yml") and f.is_file())
        else:
            out.append(str(path))
    return out


def _load_mapping(chk: FileChecker, doc: CommentedMap, key: str,
                  what: str) -> tuple[dict[str, str], dict[str, Pos]] | None:
    raw = doc[key]
    kline = line_of_value(doc, key, 1)
    if not isinstance(raw, CommentedMap):
        chk.error(kline, f"'{key}' må være en liste med {what}")
        return None
    out: dict[str, str] = {}
    pos: dict[str, Pos] = {}
    for k in raw:
        kl = line_of_key(raw, k, kline)
        v = chk.get_str(raw, k, kl, what=f"'{k}': ")
        if v is not None:
            out[str(k)] = " ".join(v.split())
            pos[str(k)] = Pos(chk.path, kl)
    return out, pos


def _load_wordlist(chk: FileChecker, doc: CommentedMap) -> Wordlist:
    chk.unknown_keys(doc, WORDLIST_KEYS, 1, "ordlisten")
    avoid = _load_mapping(chk, doc, "avoid", "ord: enklere ord") if "avoid" in doc else None
    explain = (_load_mapping(chk, doc, "explain", "ord: hva det betyr")
               if "explain" in doc else None)
    return Wordlist(avoid=avoid[0] if avoid else {}, explain=explain[0] if explain else {},
                    pos=Pos(chk.path, 1))


def _load_checklist(chk: FileChecker, doc: CommentedMap) -> Checklist | None:
    chk.unknown_keys(doc, CHECKLIST_KEYS, 1, "sjekklisten")
    got = _load_mapping(chk, doc, "items", "punkt: hva veilederen gjør")
    if got is None:
        return None
    for k, p in got[1].items():
        if not _ID.fullmatch(k):
            chk.error(p.line, f"punktet '{k}' i sjekklisten: bruk små bokstaver a-z, tall og '_'")
    return Checklist(items=got[0], positions=got[1])


# krise.yaml compiled, by its path and the bytes that were parsed: a process that loads the
# same flows again (a reload that changed another file, `veivis chat`, the test suite) need not
# parse and compile the crisis rules again, about half of a load. CrisisRules is immutable
# after construction, so one compiled copy can serve every load of the same bytes. A krise.yaml
# that names a model file is not kept (the model is read while compiling; its bytes could
# change meanwhile).
_CRISIS_MEMO: OrderedDict[tuple[str, bytes], tuple[CrisisRules, tuple[Problem, ...]]] = \
    OrderedDict()
_CRISIS_MEMO_SIZE = 4


def _bytes(path: str | Path) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _compile_crisis(f: str, doc: CommentedMap, raw: bytes | None
                    ) -> tuple[CrisisRules, tuple[Problem, ...]]:
    """flows/krise.yaml: the crisis rules (bot.engine.crisisrules checks them, in Norwegian);
    `raw` is what `doc` was parsed from."""
    crisis, problems = compile_file(f, doc)
    got = (crisis, tuple(problems))
    if raw is not None and "model" not in doc:
        _CRISIS_MEMO[(f, raw)] = got
        while len(_CRISIS_MEMO) > _CRISIS_MEMO_SIZE:
            _CRISIS_MEMO.popitem(last=False)
    return got


def _check_crisis_numbers(flows: dict[str, Flow], crisis: CrisisRules,
                          diags: list[Diagnostic]) -> None:
    flow = flows.get(CRISIS_FLOW)
    pos = crisis.pos or Pos("", 1)
    if flow is None:
        diags.append(Diagnostic(pos.path, pos.line, "error", f"flyten '{CRISIS_FLOW}' med "
                                "krisenumrene finnes ikke; en krisemelding ville fått ingen svar"))
        return
    text = " ".join(s.text or "" for s in flow.steps)
    for number in crisis.required_numbers:
        if number not in text:
            diags.append(Diagnostic(flow.pos.path, flow.pos.line, "error",
                                    f"kriseflyten må gi nummeret {number}"))


@dataclass
class _Loading:
    """What `load` gathers file by file, before the checks across files."""

    diags: list[Diagnostic] = field(default_factory=list)
    flows: dict[str, Flow] = field(default_factory=dict)
    first_seen: dict[str, Pos] = field(default_factory=dict)
    texts: Texts | None = None
    texts_seen: bool = False
    wordlist: Wordlist | None = None
    checklist: Checklist | None = None
    crisis: CrisisRules | None = None
    starts: list[tuple[FileChecker, Flow, list[dict[str, Any]]]] = field(default_factory=list)

    def read(self, f: str) -> None:
        """One file: a flow, the system texts, the word list, the crisis words or the
        checklist."""
        chk = FileChecker(f, self.diags)
        if not Path(f).exists():
            chk.error(1, "filen eller mappen finnes ikke")
            return
        raw = _bytes(f)  # read once: the memo is keyed on the very bytes that are parsed
        known = _CRISIS_MEMO.get((f, raw)) if raw is not None else None
        if known is not None:
            self.take_crisis(chk, *known)
            return
        doc = read_yaml(f, chk, raw)
        if chk.failed():
            return
        if doc is None:
            chk.error(1, "filen er tom; en flyt trenger 'id', 'title' og 'steps'")
            return
        if not isinstance(doc, CommentedMap):
            chk.error(_line(doc, 1), f"en flytfil må ha nøklene 'id', 'title' og 'steps', men "
                                     f"er {_type_name(doc)}")
            return
        if "texts" in doc:
            self.texts_seen = True
            t = _load_texts(chk, doc)
            if t is not None and self.texts is not None:
                chk.error(1, f"systemtekstene står to steder (også i {self.texts.pos.path})")
            elif t is not None:
                self.texts = t
        elif "avoid" in doc or "explain" in doc:
            if self.wordlist is not None:
                chk.error(1, "en ordliste til; ha alle ordene i én fil")
            self.wordlist = _load_wordlist(chk, doc)
        elif "phrases" in doc:
            self.take_crisis(chk, *_compile_crisis(f, doc, raw))
        elif "items" in doc:
            if self.checklist is not None:
                chk.error(1, "en sjekkliste til; ha alle punktene i én fil")
            self.checklist = _load_checklist(chk, doc)
        else:
            self.read_flow(f, chk, doc, raw)

    def take_crisis(self, chk: FileChecker, crisis: CrisisRules,
                    problems: Sequence[Problem]) -> None:
        if self.crisis is not None:
            chk.error(1, "en kriseordliste til; ha alle uttrykkene i én fil")
        for p in problems:
            (chk.error if p.severity == "error" else chk.warning)(p.line, p.message)
        self.crisis = crisis

    def read_flow(self, f: str, chk: FileChecker, doc: CommentedMap,
                  raw: bytes | None) -> None:
        """One flow file; `raw` is what `doc` was parsed from (its version is their hash)."""
        digest = hashlib.sha256(raw if raw is not None else b"").hexdigest()[:12]
        flow, extras = _load_flow(chk, doc, digest)
        if flow is None:
            return
        if flow.id in self.first_seen:
            chk.error(line_of_value(doc, "id", 1),
                      f"flyt-id-en '{flow.id}' er brukt to ganger (første gang i "
                      f"{self.first_seen[flow.id]})")
            return
        self.first_seen[flow.id] = Pos(f, line_of_value(doc, "id", 1))
        self.starts.append((chk, flow, extras))
        if not chk.failed():
            self.flows[flow.id] = flow

    def check_across(self, files: Sequence[str]) -> None:
        """Flows that start other flows, steps that name checklist items, the system texts
        and the crisis numbers."""
        covered: set[str] = set()
        checklist = self.checklist
        for chk, flow, extras in self.starts:
            for s, ex in zip(flow.steps, extras, strict=False):
                if s.start_flow and s.start_flow not in self.first_seen:
                    chk.error(ex.get("start_flow_line", s.pos.line),
                              f"steg '{s.id}' starter flyten '{s.start_flow}', som ikke "
                              f"finnes{did_you_mean(s.start_flow, self.first_seen)}")
                    self.flows.pop(flow.id, None)
                for item in s.checklist:
                    if checklist is not None and item not in checklist.items:
                        chk.error(ex.get("checklist_line", s.pos.line),
                                  f"steg '{s.id}': '{item}' er ikke et punkt i sjekklisten"
                                  f"{did_you_mean(item, checklist.items)}")
                    covered.add(item)
        if checklist is not None and self.flows:
            for item, pos in checklist.positions.items():
                if item not in covered:
                    self.diags.append(Diagnostic(
                        pos.path, pos.line, "warning", f"punktet '{item}' i sjekklisten har "
                        f"ikke noe steg; skriv 'checklist: {item}' i steget som gjør det"))
        if files and not self.texts_seen and self.flows:
            self.diags.append(Diagnostic(files[0], 1, "warning",
                                         "ingen fil med systemtekster ('texts:') blant disse "
                                         "filene; boten trenger en (flows/system.yaml)"))
        if self.crisis is not None:
            _check_crisis_numbers(self.flows, self.crisis, self.diags)
        if self.texts is not None:  # a whole set, as the bot runs it: the flows it starts
            folder = Path(self.texts.pos.path).parent
            for fid, why in REQUIRED_FLOWS.items():
                if fid not in self.first_seen:
                    self.diags.append(Diagnostic(str(folder / f"{fid}.yaml"), 1, "warning",
                                                 f"flyten '{fid}' finnes ikke; uten den får "
                                                 f"ingen {why}"))


def load(paths: Sequence[str | Path], *, language: bool = True) -> Report:
    """Load and check every flow under `paths`. Never raises for what a file holds.

    With `language`, the plain-language rules (bot.engine.language) run over every text.
    """
    got = _Loading()
    files = flow_files(paths)
    for f in files:
        got.read(f)
    got.check_across(files)
    diags, flows = got.diags, got.flows
    flowset = (FlowSet(flows=flows, texts=got.texts, checklist=got.checklist, crisis=got.crisis,
                       wordlist=got.wordlist)
               if got.texts is not None else None)
    lix: dict[str, float] = {}
    if language and flows:
        # a lone flow file is checked too, with no system texts
        checked = flowset or FlowSet(flows=flows, texts=Texts(Pos("", 1), {}, {}))
        findings, lix = check_flowset(checked, got.wordlist or Wordlist())
        diags.extend(Diagnostic(f.pos.path, f.pos.line, f.severity, f.message)
                     for f in findings)
    diags.sort(key=lambda d: (d.path, d.line))
    return Report(flowset=flowset, diagnostics=diags, lix=lix)
