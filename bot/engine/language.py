"""The plain-language rules every user-facing text must pass: readability (LIX), sentence
length, jargon, SMS cost (GSM-7 and segments) and Norwegian writing conventions.

Pure functions over texts; `check_flowset` turns them into Diagnostics at the text's line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .model import FlowSet, Kind, Pos
from .templates import render

LIX_ERROR = 45
LIX_WARNING = 35
LIX_MIN_WORDS = 5  # LIX says little about a text shorter than this
MAX_SENTENCE_WORDS = 15
MAX_SEGMENTS = 2

# Values used to fill in variables before a text is measured: typical lengths.
SAMPLE_VALUES: dict[str, str] = {
    "fornavn": "Sara", "veileder": "Kari Nordmann", "kontor": "NAV Gjøvik",
    "møtetid": "tirsdag 24. november kl. 10.00", "møtested": "NAV Gjøvik",
    "jobbtelefon": "400 12 345",
    "antall": "8", "nr": "1", "min": "1", "max": "5", "kode": "K7",
    "tekst": "Hei, kan vi flytte møtet?",
}

# -- words and sentences ------------------------------------------------------------------------

_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
# a sentence ends at . ! ? followed by the end or a new sentence (capital letter, quote);
# "kl. 10.00" and "24. november" do not end a sentence
_SENTENCE_END = re.compile(r"[.!?]+(?=\s*$|\s+[«\"(]?[A-ZÆØÅ0-9])")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    parts, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        parts.append(text[start:m.end()])
        start = m.end()
    tail = text[start:]
    if tail.strip():
        parts.append(tail)
    return [p.strip() for p in parts if words(p)]


def lix(text: str) -> float:
    """LIX = words / sentences + 100 × words longer than 6 letters / words."""
    w = words(text)
    if not w:
        return 0.0
    s = max(1, len(sentences(text)))
    long = sum(1 for x in w if len(x.replace("-", "")) > 6)
    return len(w) / s + 100 * long / len(w)


def lix_of(texts: Iterable[str]) -> float:
    """LIX of many texts taken together (a whole flow)."""
    n_words = n_sent = n_long = 0
    for t in texts:
        w = words(t)
        n_words += len(w)
        n_sent += max(1, len(sentences(t))) if w else 0
        n_long += sum(1 for x in w if len(x.replace("-", "")) > 6)
    if not n_words:
        return 0.0
    return n_words / max(1, n_sent) + 100 * n_long / n_words


# -- SMS ----------------------------------------------------------------------------------------

GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")
SUGGEST = {
    "«": '"', "»": '"', "“": '"', "”": '"', "„": '"', "’": "'", "‘": "'", "–": "-", "—": "-",
    "…": "...", "\u00a0": " (et vanlig mellomrom)", "´": "'", "`": "'", "•": "-",
}


def non_gsm(text: str) -> list[str]:
    return sorted({c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENDED})


def sms_segments(text: str) -> tuple[int, str]:
    """How many SMS the text takes, and the encoding ('GSM-7' or 'UCS-2'), as the network
    splits it: a long text goes in parts of 153 septets (GSM-7) or 67 UTF-16 units (UCS-2),
    and a character is never split between two parts (an extended GSM-7 character such as €
    is two septets, a character outside the BMP such as an emoji two UTF-16 units), so such a
    character at the end of a part moves to the next one."""
    if non_gsm(text):
        return _parts([2 if ord(c) > 0xFFFF else 1 for c in text], 70, 67), "UCS-2"
    return _parts([2 if c in GSM7_EXTENDED else 1 for c in text], 160, 153), "GSM-7"


def _parts(sizes: list[int], single: int, part: int) -> int:
    if sum(sizes) <= single:
        return 1
    n, used = 1, 0
    for size in sizes:
        if used + size > part:
            n, used = n + 1, 0
        used += size
    return n


# -- conventions --------------------------------------------------------------------------------

_KL_NO_DOT = re.compile(r"\bkl(?!\.)\b", re.IGNORECASE)
_COLON_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_NUMERIC_DATE = re.compile(r"(?<![\d.])(\d{1,2})[./](\d{1,2})(?:[./](\d{2,4}))?(?![\d])")
_PHONE_RUN = re.compile(r"(?<![\d.:])\d(?:\d| (?=\d))+(?![\d.:]\d)")
ABBREVIATIONS = {
    "jf.": "jamfør: skriv det ut, eller la det være", "iht.": "etter", "evt.": "kanskje",
    "ifm.": "i forbindelse med: skriv «når» eller «om»", "bl.a.": "blant annet",
    "f.eks.": "for eksempel", "mht.": "om", "vha.": "med", "pga.": "fordi",
    "dvs.": "det vil si", "ca.": "omtrent", "KVP": "kvalifiseringsprogrammet",
    "AAP": "arbeidsavklaringspenger", "NAV-loven": "loven", "sosialhj.": "sosialhjelp",
}
_ABBR = re.compile(
    r"(?<![\w.])(" + "|".join(re.escape(a) for a in sorted(ABBREVIATIONS, key=len, reverse=True))
    + r")(?!\w)")
_VARIABLE = re.compile(r"\{[^{}]*\}")
DISCREET = "_discreet"
_NAMES_NAV = re.compile(r"\bNAV\b|\{kontor\}|\{møtested\}|\{jobbtelefon\}|veileder",
                        re.IGNORECASE)


def phone_format_problem(number: str) -> str | None:
    digits = number.replace(" ", "")
    groups = [len(g) for g in number.split()]
    if len(digits) == 8 and groups not in ([2, 2, 2, 2], [3, 2, 3]):
        d = digits
        return f"skriv telefonnummer i par: {d[:2]} {d[2:4]} {d[4:6]} {d[6:]}"
    if len(digits) == 6 and groups != [3, 3]:
        return f"skriv et nummer med seks sifre som 3 + 3: {digits[:3]} {digits[3:]}"
    return None


def convention_problems(template: str) -> Iterator[str]:
    text = _VARIABLE.sub("X", template)
    if _KL_NO_DOT.search(text):
        yield "skriv «kl.» med punktum, som i «kl. 10.00»"
    for m in _COLON_TIME.finditer(text):
        yield f"skriv klokkeslett med punktum: «kl. {int(m.group(1)):02d}.{m.group(2)}», " \
              f"ikke «{m.group(0)}»"
    for m in _NUMERIC_DATE.finditer(text):
        day, month = int(m.group(1)), int(m.group(2))
        before = text[max(0, m.start() - 4):m.start()]
        if "kl." in before or not (1 <= day <= 31 and 1 <= month <= 12):
            continue  # a time («kl. 10.30») or not a date
        if m.group(3) is None and "." in m.group(0) and month > 12:
            continue
        yield f"skriv datoer med ord, som «tirsdag 24. november», ikke «{m.group(0)}»"
    for m in _PHONE_RUN.finditer(text):
        problem = phone_format_problem(m.group(0))
        if problem:
            yield problem
    for m in _ABBR.finditer(text):
        yield f"unngå forkortelsen «{m.group(1)}»; skriv «{ABBREVIATIONS[m.group(1)]}»"


# -- jargon -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wordlist:
    """Words to avoid (with a plainer alternative) and words allowed only when explained."""

    avoid: Mapping[str, str] = field(default_factory=dict)
    explain: Mapping[str, str] = field(default_factory=dict)
    pos: Pos | None = None

    def find(self, text: str) -> Iterator[tuple[str, str, bool]]:
        """(word as found, advice, must_explain) for each listed word in the text."""
        low = text.casefold()
        for table, must in ((self.avoid, False), (self.explain, True)):
            for word, advice in table.items():
                w = word.casefold()
                if " " in w:
                    hit = re.search(rf"(?<!\w){re.escape(w)}(?!\w)", low)
                else:  # also inflected forms and compounds: vedtaket, sosialstønad
                    hit = re.search(rf"\w*{re.escape(w)}\w*", low)
                if hit:
                    yield text[hit.start():hit.end()], advice, must


# -- the check over a whole FlowSet -------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    pos: Pos
    severity: str
    message: str


@dataclass(frozen=True)
class UserText:
    """A text a user can see, where it was written, and how it is sent."""

    flow: str  # flow id, or "system"
    where: str  # "steg 'q1'", "systemtekst 'help'"
    pos: Pos
    text: str
    options: tuple[str, ...] = ()
    message: bool = True  # a whole message (LIX applies), not an option label


def user_texts(flows: FlowSet) -> Iterator[UserText]:
    for f in flows.flows.values():
        for s in f.steps:
            if s.text is not None:
                opts = tuple(o.text for o in s.options) if s.kind is Kind.CHOICE else ()
                yield UserText(f.id, f"steg '{s.id}'", s.text_pos or s.pos, s.text, opts)
            if s.hint is not None:
                yield UserText(f.id, f"steg '{s.id}', hint", s.hint_pos or s.pos, s.hint)
            for o in s.options:
                yield UserText(f.id, f"steg '{s.id}', valg", o.pos or s.pos, o.text,
                               message=False)
    for key, text in flows.texts.texts.items():
        yield UserText("system", f"systemtekst '{key}'", flows.texts.positions[key], text)


def sms_body(text: str, options: tuple[str, ...]) -> str:
    if not options:
        return text
    return text + "\n" + "\n".join(f"{i}) {o}" for i, o in enumerate(options, 1))


def check_text(ut: UserText, wordlist: Wordlist, explained: set[str]) -> Iterator[Finding]:
    sample = render(ut.text, SAMPLE_VALUES)
    where = ut.where
    if ut.message and len(words(sample)) >= LIX_MIN_WORDS:
        score = lix(sample)
        if score > LIX_ERROR:
            yield Finding(ut.pos, "error", f"{where}: vanskelig å lese (LIX {score:.0f}, høyst "
                                           f"{LIX_ERROR}); bruk kortere ord og setninger")
        elif score > LIX_WARNING:
            yield Finding(ut.pos, "warning", f"{where}: ikke lett å lese (LIX {score:.0f}, sikt "
                                             f"mot {LIX_WARNING} eller lavere); bruk kortere ord "
                                             "og setninger")
    for sent in sentences(sample):
        n = len(words(sent))
        if n > MAX_SENTENCE_WORDS:
            yield Finding(ut.pos, "warning", f"{where}: en setning med {n} ord (høyst "
                                             f"{MAX_SENTENCE_WORDS}): «{_short(sent)}»; del den "
                                             "opp")
    for found, advice, must in wordlist.find(ut.text):
        base = next((w for w in (*wordlist.explain, *wordlist.avoid)
                     if w.casefold() in found.casefold()), found)
        if must:
            if base.casefold() not in explained:
                yield Finding(ut.pos, "warning",
                              f"{where}: «{found}» må forklares i denne flyten ({advice}); "
                              f"merk steget som forklarer det, med 'explains: {base}'")
        else:
            yield Finding(ut.pos, "warning", f"{where}: «{found}» er NAV-språk; skriv "
                                             f"«{advice}» eller noe lignende")
    bad = non_gsm(ut.text)
    if bad:
        tips = ", ".join(f"«{c}» → {SUGGEST[c]}" if c in SUGGEST else f"«{c}»" for c in bad)
        n, _ = sms_segments(sms_body(sample, ut.options))
        yield Finding(ut.pos, "warning", f"{where}: tegn utenfor SMS-alfabetet gjør at SMS-en "
                                         f"koster dobbelt (70 tegn, ikke 160): {tips} "
                                         f"(nå {n} SMS)")
    if ut.message:
        body = sms_body(sample, ut.options)
        n, enc = sms_segments(body)
        if n > MAX_SEGMENTS:
            yield Finding(ut.pos, "warning", f"{where}: trenger {n} SMS ({len(body)} tegn, "
                                             f"{enc}); hold det til {MAX_SEGMENTS}")
    for problem in convention_problems(ut.text):
        yield Finding(ut.pos, "warning", f"{where}: {problem}")
    if ut.flow.endswith(DISCREET) and _NAMES_NAV.search(ut.text):
        yield Finding(ut.pos, "error", f"{where}: en diskret flyt er for en delt telefon og "
                                       "kan ikke nevne NAV, kontoret eller stedet")


def check_message(text: str, path: str, wordlist: Wordlist | None) -> list[Finding]:
    """The same rules for a text a coordinator sends once (`veivis announce`): nothing is
    explained there, so every listed word counts."""
    ut = UserText("announce", "meldingen", Pos(path, 1), text)
    out = list(check_text(ut, wordlist or Wordlist(), set()))
    if _VARIABLE.search(text):
        out.append(Finding(ut.pos, "error", "meldingen: {…} blir ikke fylt inn her; skriv "
                                            "teksten slik den skal sendes"))
    return out


_VARIABLE = re.compile(r"\{[^{}]*\}")


def _short(s: str, n: int = 50) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def check_flowset(flows: FlowSet, wordlist: Wordlist) -> tuple[list[Finding], dict[str, float]]:
    """Every plain-language finding, and the LIX of each flow."""
    findings: list[Finding] = []
    by_flow: dict[str, list[str]] = {}
    own: dict[str, set[str]] = {
        f.id: {w.casefold() for s in f.steps for w in s.explains} for f in flows.flows.values()
    }
    # a flow also explains what a flow it leads to explains (a menu option «Hva er ...?»)
    explained = {
        f.id: own[f.id].union(*(own.get(s.start_flow, set()) for s in f.steps if s.start_flow))
        for f in flows.flows.values()
    }
    explained["system"] = set().union(*own.values()) if own else set()
    for ut in user_texts(flows):
        findings.extend(check_text(ut, wordlist, explained.get(ut.flow, set())))
        if ut.message:
            by_flow.setdefault(ut.flow, []).append(render(ut.text, SAMPLE_VALUES))
    return findings, {fid: lix_of(texts) for fid, texts in by_flow.items()}
