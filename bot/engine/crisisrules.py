"""Reads and checks flows/krise.yaml: word groups, spellings, rules in four sections, emoji,
numbers.

Every mistake becomes a problem at its line, in Norwegian, for the coordinator who edits the
file («ukjent ordgruppe {døø} – mente du {dø}?»). Nothing here raises on bad input.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from .crisis import (
    ADDED_GROUPS,
    END,
    GAP,
    NEGATION,
    NUMBER,
    REQUIRED_GROUPS,
    SECTIONS,
    START,
    CrisisRules,
    Lexicon,
    Marker,
    Rule,
    Word,
    fold_variants,
)
from .crisismodel import NgramModel, parse
from .model import Pos

CRISIS_KEYS = {"id", "title", "description", "words", "spellings", "emoji", "required_numbers",
               "model", *SECTIONS}
SECTION_NAMES = {
    "phrases": "tydelige tegn (phrases)",
    "danger": "fare fra andre (danger)",
    "possible": "mulige tegn (possible)",
    "together": "mulige tegn sammen (together)",
    "not": "unntak (not)",
}
_GROUP_NAME = re.compile(r"[a-zæøå_][a-zæøå0-9_]*")
_WORD = re.compile(r"[^\W_]+")
_APOSTROPHE = re.compile(r"['’´`‘]")


@dataclass
class Problem:
    line: int
    severity: str  # "error" | "warning"
    message: str


@dataclass
class _Compiler:
    path: str
    groups: dict[str, tuple[list[str], int]] = field(default_factory=dict)  # name -> words, line
    used: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    next_id: int = 0

    def error(self, line: int, msg: str) -> None:
        self.problems.append(Problem(line, "error", msg))

    def warning(self, line: int, msg: str) -> None:
        self.problems.append(Problem(line, "warning", msg))

    def group_words(self, name: str, line: int, seen: frozenset[str] = frozenset()
                    ) -> list[str] | None:
        """A group's words with any {other} groups inside it spelled out."""
        if name not in self.groups:
            close = difflib.get_close_matches(name, list(self.groups), n=1, cutoff=0.6)
            hint = f" – mente du {{{close[0]}}}?" if close else ""
            self.error(line, f"ukjent ordgruppe {{{name}}}{hint} Ordgruppene står under "
                             "«words».")
            return None
        if name in seen:
            self.error(line, f"ordgruppen {{{name}}} viser til seg selv (i ring)")
            return None
        self.used.add(name)
        out: list[str] = []
        for w in self.groups[name][0]:
            if w.startswith("{") and w.endswith("}"):
                inner = self.group_words(w[1:-1], line, seen | {name})
                out.extend(inner or [])
            else:
                out.append(w)
        return out

    def word(self, raw: str, line: int, where: str, section: str = "") -> Word | None:
        """One position of a pattern: «ord», «ord*», «=ord», «{gruppe}», «a|b|{c}», and in
        a `not` phrase «[ord]» (must be there, is not taken out)."""
        context = raw.startswith("[") and raw.endswith("]") and len(raw) > 2
        if context:
            if section != "not":
                self.error(line, f"{where}: «[{raw[1:-1]}]» (ord som må stå der, men ikke tas "
                                 "ut) brukes bare under «not»")
                return None
            raw = raw[1:-1]
        exact = raw.startswith("=")
        body = raw[1:] if exact else raw
        words: set[str] = set()
        prefixes: list[str] = []
        suffixes: list[str] = []
        negation = False
        ok = True
        for alt in body.split("|"):
            if not alt:
                self.error(line, f"{where}: «{raw}» har en tom del; skriv for eksempel "
                                 "«tar|tok|tatt»")
                ok = False
                continue
            if alt.startswith("{") and alt.endswith("}"):
                if exact:
                    self.error(line, f"{where}: «=» kan ikke stå foran en ordgruppe")
                    ok = False
                    continue
                members = self.group_words(alt[1:-1], line)
                if members is None:
                    ok = False
                    continue
                negation |= alt[1:-1] == NEGATION
                for m in members:
                    got = self._one(m, line, where, exact=False)
                    if got is None:
                        ok = False
                    elif got.endswith("*"):
                        prefixes.append(got[:-1])
                    elif got.startswith("*"):
                        suffixes.append(got[1:])
                    else:
                        words.add(got)
                continue
            got = self._one(alt, line, where, exact=exact)
            if got is None:
                ok = False
            elif got.endswith("*"):
                prefixes.append(got[:-1])
            elif got.startswith("*"):
                suffixes.append(got[1:])
            else:
                words.add(got)
        if not ok:
            return None
        negation |= bool(words & set(self.groups.get(NEGATION, ([], 0))[0]))
        all_words: set[str] = set()
        for w in words:
            all_words |= {w} if exact else fold_variants(w)
        all_prefixes = sorted({v for p in prefixes for v in fold_variants(p)})
        all_suffixes = sorted({v for x in suffixes for v in fold_variants(x)})
        self.next_id += 1
        return Word(self.next_id, raw, frozenset(all_words), tuple(all_prefixes),
                    tuple(all_suffixes), exact, negation, context)

    def _one(self, text: str, line: int, where: str, *, exact: bool) -> str | None:
        """A single word as the reader sees it (lower case, no apostrophes), or an error."""
        w = _APOSTROPHE.sub("", text.casefold())
        star = w.endswith("*") or (w.startswith("*") and len(w) > 1)
        core = w.strip("*") if star else w
        if "*" in core or (w.startswith("*") and w.endswith("*")):
            self.error(line, f"{where}: «*» kan bare stå først eller sist i et ord, som i "
                             "«selvmord*» eller «*brua»")
            return None
        if core in (START, END, GAP):
            self.error(line, f"{where}: «{core}» må stå alene, med mellomrom rundt, ikke "
                             "sammen med andre ord med «|»")
            return None
        if not _WORD.fullmatch(core) and core != NUMBER:
            self.error(line, f"{where}: «{text}» er ikke ett ord; skriv ordene hver for seg, "
                             "med mellomrom")
            return None
        if star and exact:
            self.error(line, f"{where}: «=» og «*» kan ikke stå på samme ord")
            return None
        if star and len(core) < 4:
            self.error(line, f"{where}: «{text}» er for kort foran «*»; skriv minst fire "
                             "bokstaver, ellers treffer det altfor mange ord")
            return None
        return w

    def together(self, text: str, line: int) -> Rule | None:
        """`together`: two or more words or groups joined by «+», anywhere in one message."""
        where = f"«{text}»"
        parts = [p.strip() for p in text.split("+")]
        if len(parts) < 2 or not all(parts):
            self.error(line, f"{where}: skriv to eller flere ord eller ordgrupper med «+» "
                             "mellom, for eksempel «{tung} + {nød}»")
            return None
        elems: list[Word | Marker] = []
        for p in parts:
            if len(p.split()) != 1 or p in (GAP, START, END) or p.startswith(("[", "!")):
                self.error(line, f"{where}: «{p}» – under «together» er hver del ett ord, "
                                 "en ordgruppe eller ord med «|», uten «...», «^» og «$»")
                return None
            w = self.word(p, line, where, "together")
            if w is None:
                return None
            elems.append(w)
        return Rule(text, "together", Pos(self.path, line), tuple(elems))

    def pattern(self, text: str, section: str, line: int) -> Rule | None:
        if section == "together":
            return self.together(text, line)
        where = f"«{text}»"
        parts = text.replace("…", f" {GAP} ").split()
        if not parts:
            self.error(line, "tomt uttrykk; skriv ord, eller fjern linjen")
            return None
        elems: list[Word | Marker] = []
        ok = True
        unless: Word | None = None
        unless_after: Word | None = None
        if len(parts) > 2 and parts[-1].startswith("!") and parts[-1] != "!" \
                and section == "not":
            unless_after = self.word(parts[-1][1:], line, where, section)
            if unless_after is None:
                return None
            parts = parts[:-1]
        if parts[0].startswith("!"):
            if section != "not" or len(parts) < 2 or parts[0] == "!":
                self.error(line, f"{where}: «!» (unntaket gjelder ikke når dette ordet står like "
                                 "før eller etter) brukes bare først eller sist i et unntak "
                                 "under «not», foran ett ord eller en ordgruppe")
                return None
            unless = self.word(parts[0][1:], line, where, section)
            if unless is None:
                return None
            parts = parts[1:]
        for i, p in enumerate(parts):
            if p == GAP:
                if i == 0 or i == len(parts) - 1:
                    self.error(line, f"{where}: «...» kan ikke stå først eller sist; det står "
                                     "mellom to ord")
                    ok = False
                elif parts[i - 1] == GAP:
                    self.error(line, f"{where}: to «...» etter hverandre; ett er nok (det "
                                     "tillater opp til seks ord)")
                    ok = False
                else:
                    elems.append(Marker(GAP))
            elif p == START:
                if i != 0:
                    self.error(line, f"{where}: «^» (starten av en setning) kan bare stå først")
                    ok = False
                else:
                    elems.append(Marker(START))
            elif p == END:
                if i != len(parts) - 1:
                    self.error(line, f"{where}: «$» (slutten av en setning) kan bare stå sist")
                    ok = False
                else:
                    elems.append(Marker(END))
            elif p in ("..", "...."):
                self.error(line, f"{where}: skriv tre prikker «...» for ord imellom")
                ok = False
            else:
                w = self.word(p, line, where, section)
                if w is None:
                    ok = False
                else:
                    elems.append(w)
        if ok and not any(isinstance(e, Word) for e in elems):
            self.error(line, f"{where}: uttrykket har ingen ord")
            ok = False
        if ok and all(e.context for e in elems if isinstance(e, Word)) and section == "not":
            self.error(line, f"{where}: alle ordene står i [klammer], så ingenting blir tatt ut")
            ok = False
        if ok and len([e for e in elems if isinstance(e, Word)]) == 1 and section != "not":
            only = next(e for e in elems if isinstance(e, Word))
            common = set()
            for g in ("fyll", "jeg", "andre", "ny_setning", NEGATION):
                common |= set(self.groups.get(g, ([], 0))[0])
            if only.words & common:
                self.error(line, f"{where}: et vanlig ord alene gir falske alarmer; skriv "
                                 "flere ord sammen")
                ok = False
        if not ok:
            return None
        return Rule(text, section, Pos(self.path, line), tuple(elems), unless, unless_after)


def _str_list(c: _Compiler, doc: CommentedMap, key: str) -> Iterator[tuple[str, int]]:
    v = doc[key]
    kline = _line_of_value(doc, key)
    if not isinstance(v, CommentedSeq):
        c.error(kline, f"«{key}» må være en liste, med én linje som begynner med «- » for "
                       "hvert uttrykk")
        return
    for i, item in enumerate(v):
        line = _line_of_item(v, i, kline)
        if isinstance(item, bool):
            c.error(line, f"«{key}»: true, false og lignende må stå i anførselstegn")
            continue
        if not isinstance(item, str | int):
            c.error(line, f"«{key}»: hvert uttrykk må være tekst")
            continue
        yield str(item).strip(), line


def _line_of_value(node: Any, key: Any, default: int = 1) -> int:
    try:
        return int(node.lc.value(key)[0]) + 1
    except Exception:
        return default


def _line_of_key(node: Any, key: Any, default: int = 1) -> int:
    try:
        return int(node.lc.key(key)[0]) + 1
    except Exception:
        return default


def _line_of_item(node: Any, i: int, default: int = 1) -> int:
    try:
        return int(node.lc.item(i)[0]) + 1
    except Exception:
        return default


def _word_groups(c: _Compiler, doc: CommentedMap) -> None:
    """`words`: the word groups, each a list of words (into c.groups)."""
    if "words" in doc:
        raw = doc["words"]
        wline = _line_of_value(doc, "words")
        if not isinstance(raw, CommentedMap):
            c.error(wline, "«words» må være ordgrupper: et navn, kolon og en liste med ord")
        else:
            for name in raw:
                nline = _line_of_key(raw, name, wline)
                if not isinstance(name, str) or not _GROUP_NAME.fullmatch(name):
                    c.error(nline, f"ordgruppen «{name}»: bruk små bokstaver og «_» i navnet")
                    continue
                v = raw[name]
                if isinstance(v, CommentedSeq) and any(isinstance(x, bool) for x in v):
                    c.error(nline, f"ordgruppen «{name}»: true, false og lignende må stå i "
                                   "anførselstegn, for eksempel \"true\"")
                    continue
                if not isinstance(v, CommentedSeq) or not v or not all(
                        isinstance(x, str | int) and not isinstance(x, bool) and str(x).strip()
                        for x in v):
                    c.error(nline, f"ordgruppen «{name}» må være en liste med ord, for "
                                   "eksempel [dø, døy, die]")
                    continue
                c.groups[name] = ([str(x).strip().casefold() for x in v], nline)
    for g in REQUIRED_GROUPS:
        if g not in c.groups and g in ADDED_GROUPS:
            line = _line_of_key(doc, "words") if "words" in doc else 1
            c.groups[g] = (list(ADDED_GROUPS[g]), line)
            c.warning(line, f"ordgruppen «{g}» mangler under «words» (den er ny); Veivis bruker "
                            f"disse ordene til du legger den til: {', '.join(ADDED_GROUPS[g])}")
        elif g not in c.groups:
            c.error(_line_of_key(doc, "words") if "words" in doc else 1,
                    f"ordgruppen «{g}» mangler under «words»; Veivis trenger den for å lese "
                    "meldingene riktig")


def _emoji(c: _Compiler, doc: CommentedMap) -> dict[str, str]:
    """`emoji`: an emoji and the word it stands for."""
    emoji: dict[str, str] = {}
    if "emoji" in doc:
        raw = doc["emoji"]
        eline = _line_of_value(doc, "emoji")
        if not isinstance(raw, CommentedMap):
            c.error(eline, "«emoji» må være emoji, kolon og et ord, for eksempel «💊: piller»")
        else:
            for k in raw:
                kline = _line_of_key(raw, k, eline)
                v = raw[k]
                key = re.sub("[\ufe0f\ufe0e]", "", str(k))
                if not key or any(ch.isalnum() for ch in key) or not isinstance(v, str) or \
                        not _WORD.fullmatch(v.strip().casefold()):
                    c.error(kline, f"«{k}»: skriv én emoji, kolon og ett ord")
                    continue
                emoji[key] = v.strip().casefold()
    return emoji


def _spellings(c: _Compiler, doc: CommentedMap) -> dict[str, str]:
    """`spellings`: a bokmål word and the other ways it is written (nynorsk, dialect, chat):
    «ikke: [ikkje, itj, ikk]». Each written form is also read as the bokmål word."""
    out: dict[str, str] = {}
    where: dict[str, int] = {}
    if "spellings" not in doc:
        return out
    raw = doc["spellings"]
    sline = _line_of_value(doc, "spellings")
    if not isinstance(raw, CommentedMap):
        c.error(sline, "«spellings» må være et ord, kolon og en liste med andre skrivemåter, "
                       "for eksempel «ikke: [ikkje, itj]»")
        return out
    for std in raw:
        line = _line_of_key(raw, std, sline)
        v = raw[std]
        head = _APOSTROPHE.sub("", str(std).strip().casefold())
        if isinstance(std, bool) or not _WORD.fullmatch(head):
            c.error(line, f"«{std}»: skriv ett ord foran kolon (bokmålsordet)")
            continue
        if not isinstance(v, CommentedSeq) or not v or not all(
                isinstance(x, str | int) and not isinstance(x, bool) for x in v):
            c.error(line, f"«{std}» må ha en liste med skrivemåter, for eksempel "
                          f"«{std}: [ordet, ordet2]»; true, false og lignende må stå i "
                          "anførselstegn")
            continue
        for x in v:
            w = _APOSTROPHE.sub("", str(x).strip().casefold())
            if not _WORD.fullmatch(w):
                c.error(line, f"«{x}» under «{std}» er ikke ett ord")
            elif w == head:
                c.warning(line, f"«{w}» under «{std}» er det samme ordet")
            elif w in out and out[w] != head:
                c.error(line, f"«{w}» står både under «{out[w]}» (linje {where[w]}) og "
                              f"under «{head}»; et ord kan bare leses som ett bokmålsord")
            else:
                out[w] = head
                where[w] = line
    return out


def compile_file(path: str, doc: CommentedMap, lexicon: Lexicon | None = None,
                 fuzzy: bool = True) -> tuple[CrisisRules, list[Problem]]:
    """The crisis rules of one parsed krise.yaml and every problem found in it."""
    c = _Compiler(path)
    for k in doc:
        if str(k) not in CRISIS_KEYS:
            close = difflib.get_close_matches(str(k), sorted(CRISIS_KEYS), n=1, cutoff=0.6)
            hint = f" – mente du «{close[0]}»?" if close else ""
            c.error(_line_of_key(doc, k), f"ukjent nøkkel «{k}» i krise-ordlista{hint}")
    _word_groups(c, doc)
    emoji = _emoji(c, doc)
    spellings = _spellings(c, doc)
    # rules
    rules: list[Rule] = []
    seen: dict[tuple[str, str], int] = {}
    for section in SECTIONS:
        if section not in doc:
            if section == "phrases":
                c.error(1, "krise-ordlista har ingen «phrases» (tydelige tegn)")
            continue
        for text, line in _str_list(c, doc, section):
            said = (section, " ".join(text.casefold().split()))
            if said in seen:
                c.warning(line, f"«{text}» står to ganger under «{section}» (også på linje "
                                f"{seen[said]})")
                continue
            seen[said] = line
            r = c.pattern(text, section, line)
            if r is not None:
                rules.append(r)
    if "phrases" in doc and not any(r.section == "phrases" for r in rules) and \
            not any(p.severity == "error" for p in c.problems):
        c.error(_line_of_value(doc, "phrases"), "krise-ordlista har ingen tydelige tegn")
    for name, (_, line) in c.groups.items():
        if name not in c.used and name not in REQUIRED_GROUPS:
            c.warning(line, f"ordgruppen {{{name}}} brukes ikke i noe uttrykk")
    numbers: list[str] = []
    if "required_numbers" in doc:
        numbers = [t for t, _ in _str_list(c, doc, "required_numbers")]
    crisis = CrisisRules(tuple(rules), {k: frozenset(v[0]) for k, v in c.groups.items()},
                         emoji, tuple(numbers), Pos(path, 1), lexicon or Lexicon(), fuzzy,
                         spellings, _model(c, doc))
    _check_reachable(c, crisis)
    return crisis, c.problems


def _model(c: _Compiler, doc: CommentedMap) -> NgramModel | None:
    """`model: krise_modell.tsv`: the learned second opinion, a file next to krise.yaml (read
    here, when the flows are loaded; bench/crisis_model.py --write makes it)."""
    if "model" not in doc:
        return None
    line = _line_of_value(doc, "model")
    name = doc["model"]
    if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+\.tsv", name):
        c.error(line, "«model» må være navnet på en .tsv-fil i samme mappe som krise.yaml "
                      "(for eksempel krise_modell.tsv)")
        return None
    try:
        text = (Path(c.path).parent / name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        c.error(line, f"modellfila «{name}» finnes ikke eller kan ikke leses; fjern linja "
                      "«model» eller lag fila med bench/crisis_model.py --write")
        return None
    model, problems = parse(text, str(Path(c.path).parent / name))
    for n, message in problems:
        c.error(line, f"{name}, linje {n}: {message}")
    return model


def _check_reachable(c: _Compiler, crisis: CrisisRules) -> None:
    """A plain phrase (no groups, gaps or stars) must trigger on its own words; if it does
    not, an exception under `not` or a negation rule swallows it, and the coordinator should
    know."""
    for r in crisis.rules:
        if r.section == "not" or any(ch in r.text for ch in "{}*|=^$") or "..." in r.text:
            continue
        v = crisis.check(r.text)
        if v.tier is None:
            why = ""
            if v.excluded:
                ex = v.excluded[0].rule
                why = f": unntaket «{ex.text}» (linje {ex.pos.line}) tar det"
            elif v.cancelled:
                why = f": {v.cancelled[0][1]}"
            c.warning(r.pos.line, f"«{r.text}» slår aldri ut{why}")
