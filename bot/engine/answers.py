"""Understanding answers the way young people in Norway write them.

Pure functions from a raw message to a value, or None when the message is not understood.
Case, whitespace, punctuation and emoji around an answer do not matter.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

from .model import Option

YES_VALUE = "ja"
NO_VALUE = "nei"
MAX_TEXT = 2000  # characters kept of a free-text answer

_KEYCAP = re.compile("([0-9])\ufe0f?\u20e3")
_SKIN = re.compile("[\U0001f3fb-\U0001f3ff]")
_EMOJI_WORDS = {
    "👍": " ja ", "👌": " ja ", "✅": " ja ", "✔": " ja ", "🙆": " ja ",
    "👎": " nei ", "❌": " nei ", "✖": " nei ", "🙅": " nei ", "⛔": " nei ",
}
_REPEAT = re.compile(r"(.)\1+")


def _collapse(word: str) -> str:
    """'jaaaa' -> 'ja', 'neeei' -> 'nei', 'jepp' -> 'jep': young people stretch words."""
    return _REPEAT.sub(r"\1", word)


_YES = {_collapse(w) for w in (
    "ja", "jepp", "jo", "japp", "jada", "jadda", "jaja", "jass", "jess", "joda", "jup",
    "yes", "yep", "yup", "yeah", "ya", "ye", "y", "j",
    "ok", "okei", "okey", "oki", "okay", "k", "greit", "gjerne", "sikkert", "klart",
    "selvfølgelig", "absolutt", "stemmer", "riktig", "definitivt", "sure", "yess",
    "jau", "jaudå", "gjerne", "sjølvsagt", "yeah", "yea", "indeed", "correct",
)}
_NO = {_collapse(w) for w in (
    "nei", "næ", "næh", "neh", "nope", "nah", "no", "n", "neida", "nej", "nix", "niks",
    "ikke", "aldri", "never", "ikkje", "nei takk", "nope", "not",
)}
_NEUTRAL = {_collapse(w) for w in (
    "takk", "da", "så", "det", "thanks", "please", "vel", "bare", "egentlig", "hehe", "haha",
    "lol", "tusen", "mye", "gjorde", "har", "han", "hun", "hen", "de", "dem", "sa",
)}

_NUMBER_WORDS = {
    "null": 0, "zero": 0,
    "en": 1, "én": 1, "ett": 1, "ei": 1, "eitt": 1, "one": 1, "første": 1, "first": 1,
    "to": 2, "two": 2, "andre": 2, "second": 2,
    "tre": 3, "three": 3, "tredje": 3, "third": 3,
    "fire": 4, "four": 4, "fjerde": 4, "fourth": 4,
    "fem": 5, "five": 5, "femte": 5, "fifth": 5,
    "seks": 6, "six": 6, "sjette": 6, "sixth": 6,
    "sju": 7, "syv": 7, "seven": 7, "sjuende": 7, "syvende": 7,
    "åtte": 8, "eight": 8, "åttende": 8,
    "ni": 9, "nine": 9, "niende": 9,
    "ti": 10, "ten": 10, "tiende": 10,
    "elleve": 11, "tolv": 12, "tretten": 13, "fjorten": 14, "femten": 15,
    "seksten": 16, "sytten": 17, "atten": 18, "nitten": 19, "tjue": 20, "tyve": 20,
}
_NUMBER_FILLER = {"nr", "nummer", "number", "alternativ", "valg", "svar", "jeg", "velger",
                  "tar", "vil", "ha", "blir", "gir", "den", "det", "option", "i", "pick", "nok",
                  "kanskje", "sier", "tror", "en", "vel", "takk", "terningkast", "poeng"}

SKIP_WORDS = {"hopp", "hopp over", "hoppover", "skip", "neste", "dropp", "pass", "-"}


def clean(text: str) -> str:
    """The user's own text, kept as written, minus control characters; for storing."""
    if text.isprintable():  # no control character in it (the usual message): kept as it is
        out = text
    else:
        out = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return out.strip()[:MAX_TEXT]


_NON_WORD = re.compile(r"[\W_]+")


@lru_cache(maxsize=4096)
def normalise(text: str) -> str:
    """Lower-case words separated by single spaces; punctuation and other emoji removed.
    (Cached: young users' answers repeat a lot — «ja», «1», «ok».)"""
    t = unicodedata.normalize("NFKC", text)
    if "\u20e3" in t:
        t = _KEYCAP.sub(r" \1 ", t)
    if not t.isascii():
        t = _SKIN.sub("", t)
        for emo, word in _EMOJI_WORDS.items():
            if emo in t:
                t = t.replace(emo, word)
    return _NON_WORD.sub(" ", t.casefold()).strip()


@lru_cache(maxsize=8192)
def _option_keys(text: str, value: str, also: tuple[str, ...]) -> tuple[frozenset[str],
                                                                         frozenset[str]]:
    """An option's whole-answer forms and its words, normalised once."""
    whole = frozenset({normalise(text), normalise(value), *(normalise(a) for a in also)})
    toks = frozenset(normalise(" ".join((text, value, *also))).split())
    return whole, toks


def words(text: str) -> list[str]:
    return normalise(text).split()


@lru_cache(maxsize=4096)  # pure, and answers repeat («ja», «nei», «ok»)
def parse_yesno(text: str) -> str | None:
    """'ja'/'nei' for a yes or a no in its common forms; None when unclear or both."""
    toks = [_collapse(w) for w in words(text)]
    if not toks or len(toks) > 8:
        return None
    first = toks[0]
    if first in _YES:
        verdict = YES_VALUE
    elif first in _NO:
        verdict = NO_VALUE
    else:
        return None
    for w in toks[1:]:
        if w in _YES and verdict == NO_VALUE and w not in ("ok", "k"):
            return None
        if w in _NO and verdict == YES_VALUE:
            return None
    return verdict


def _stars(text: str) -> int | None:
    s = text.strip()
    if s and set(s) <= {"⭐", "★", "🌟", " "}:
        return sum(1 for c in s if c != " ")
    return None


@lru_cache(maxsize=4096)  # pure, and answers repeat («1», «4»)
def parse_number(text: str) -> int | None:
    """A whole number written as digits or a Norwegian or English word; None when unclear."""
    stars = _stars(text)
    if stars is not None:
        return stars
    toks = words(text)
    if not toks or len(toks) > 6:
        return None
    found: list[int] = []
    for i, w in enumerate(toks):
        if w.isdigit() and len(w) <= 9 and w.isascii():
            n = int(w)
        elif w in _NUMBER_WORDS and (w not in ("en", "ei", "to", "ni") or len(toks) <= 2
                                     or (i > 0 and toks[i - 1] in _NUMBER_FILLER)):
            n = _NUMBER_WORDS[w]
        elif w in _NUMBER_FILLER or w in _NEUTRAL:
            continue
        elif w == "av" and found:
            break  # "4 av 5": the answer is the first number
        else:
            return None
        found.append(n)
    if len(set(found)) != 1:
        return None
    return found[0]


def parse_choice(text: str, options: Sequence[Option]) -> Option | None:
    """The option a message picks: by its number, its words or its 'also' words."""
    norm = normalise(text)
    if not norm:
        return None
    keys = [_option_keys(o.text, o.value, o.also) for o in options]
    for o, (whole, _) in zip(options, keys, strict=True):
        if norm in whole:
            return o
    n = parse_number(text)
    if n is not None:
        return options[n - 1] if 1 <= n <= len(options) else None
    toks = [w for w in norm.split() if w not in _NUMBER_FILLER]
    if not toks or len(toks) > 6:
        return None
    hits = []
    for o, (_, otoks) in zip(options, keys, strict=True):
        if all(any(ot.startswith(t) for ot in otoks) for t in toks if len(t) >= 3) and any(
            len(t) >= 3 for t in toks
        ):
            hits.append(o)
    return hits[0] if len(hits) == 1 else None


def parse_scale(text: str, lo: int, hi: int) -> int | None:
    n = parse_number(text)
    return n if n is not None and lo <= n <= hi else None


def is_skip(text: str) -> bool:
    return normalise(text) in SKIP_WORDS or text.strip() == "-"
