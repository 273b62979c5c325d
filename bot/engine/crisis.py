"""Recognising a message that may signal crisis, self-harm or danger from others. Pure.

The rules live in flows/krise.yaml so coordinators can extend them (bot.engine.crisisrules
reads and checks that file). A rule is a pattern of words, for example

    vil ... {dø}        «vil», up to six other words, then a word from the group {dø}
    ta livet {mitt}     any form of «ta» (tar, tok, tatt, teke), then «livet», then {mitt}
    selvmord*           a word that begins with «selvmord» (selvmordstanker)
    orker ikke mer $    ... at the end of a sentence (or before «og», «men», «jeg» ...)
    ^ vil bare dø       ... at the start of a sentence

and a message is read the way young people write it:

- words are lower-cased, apostrophes dropped («don't» is «dont»), stretched letters shortened
  («leeeve»), letters without Norwegian keys understood («do», «doe» for «dø»);
- every word is also known by its dictionary forms in bokmål, nynorsk and English
  (simplemma), so a rule written with «drepe» matches «drepte» and «dreper»;
- two words typed without a space («jegvil») are read as two;
- a word that is in no dictionary is compared with the rules' own words, allowing one
  typing mistake (two in long words), so «sellvmord» and «ikek» still count (rapidfuzz);
- emoji named in the file become words (💊 is «piller»), and may follow `$`;
- a filler word ({fyll}: «altså», «bare»), a word an exception took out, or «jeg» (and its
  spellings: «eg», «æ») may stand between two words of a rule («ingen vits altså å leve»,
  «i går kuttet jeg meg»: after an adverb the verb comes before the subject);
- when no rule matched, the rules are tried again as if a comma that starts no new clause
  were not there («jeg tok pillene til mamma, alle sammen»); such a match is only possible;
- «å» may be written «a», «aa»; «ø» «o», «oe»; «æ» «ae» («pa» is «på»);
- in a Norwegian message, a word only the English dictionary knows may be a typing mistake
  and is corrected like an unknown word («lere» for «leve»);
- a word written in nynorsk, dialect or chat spelling listed under `spellings` is also known
  by its bokmål form («itj», «ikkje» are «ikke»; «heim» is «hjem»), so rules written in
  bokmål cover them;
- a rule word counts in its other dictionary forms too («fjellveggen» also matches
  «fjellvegg»; the lemma of a rule word of five letters or more).

Three checks keep ordinary talk out:

- a negation the rule did not ask for, inside the match or within three words before it
  ({vil} words and «på», «å» not counted), cancels it («jeg vil ikke dø», «har aldri tenkt
  på å ta livet mitt»), but «vet ikke» and «ikke mer» do not;
- another person as the subject (up to four words before) cancels a rule about oneself
  («hun vil dø», «søstra mi slet med selvskading»); rules under
  `danger` (someone else threatens or hurts the user) expect another person;
- phrases under `not` («dør av latter», «tar livet med ro») are taken out before any rule is
  tried, so what they cover counts for nothing; one that begins «!{jeg}» does not apply
  when such a word stands one or two words before it («det tar livet av meg» is taken out,
  «jeg tar livet av meg» is not); one that ends «!{vilje}», when such a word follows within
  three words («kuttet meg på armen med vilje»).

Two tiers: a `clear` signal gets the crisis numbers at once; a `possible` one («orker ikke
mer»), or a `together` rule whose parts all stand somewhere in the message («{tung} +
{nød}»: «alt er håpløst. tenker på tau»), gets a short check-in. It errs on the side of
caution: a false alarm costs the user one message with phone numbers; a miss costs more.
Any length is read (no cut-off); the work per word is a few dictionary look-ups, so long
texts stay fast.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any, TypeVar

from .crisismodel import NgramModel
from .model import Pos

CRISIS_FLOW = "crisis"
CLEAR = "clear"
POSSIBLE = "possible"

# Sections of krise.yaml that hold rules, and what each means.
SECTIONS = ("phrases", "danger", "possible", "together", "not")
MODEL = "model"  # the section name of the learned model's verdict (not a section of rules)
TIER_OF = {"phrases": CLEAR, "danger": CLEAR, "possible": POSSIBLE, "together": POSSIBLE}
TOGETHER = "together"  # «{tung} + {nød}»: each part somewhere in the same message

# Word groups the reader itself relies on (defined in krise.yaml under `words`).
NEGATION = "nekting"  # ikke, aldri, not ...: cancels a rule that did not ask for it
OTHERS = "andre"  # han, hun, du ...: another person as the subject (also between words)
PEOPLE = "folk"  # mamma, kjæresten, noen ...: another person, when just before a match
SELF = "jeg"  # jeg, eg, æ, i ...: the user as the subject
KNOW = "vet"  # vet, skjønner ...: «vet ikke» is no negation of what follows
MORE = "mer"  # mer, lenger ...: «ikke mer» is no negation of what follows
FILLER = "fyll"  # nå, altså, ass ...: may stand after `$`
CLAUSE = "ny_setning"  # og, men, jeg ...: a new clause starts here (for `$` and look-backs)
JOINED = "bisetning"  # at, om, fordi ...: a «jeg» right after one starts no new clause
REQUIRED_GROUPS = (NEGATION, OTHERS, PEOPLE, SELF, KNOW, MORE, FILLER, CLAUSE, JOINED)
# groups a krise.yaml from before they were added may lack: read as these, with a warning
ADDED_GROUPS = {JOINED: ("at", "om", "hvis", "dersom", "når", "da", "enn", "som", "der",
                         "fordi", "selv", "sjøl", "that", "if", "whether", "when", "because",
                         "ka", "kva", "hva", "hvorfor", "korfor", "kvifor", "why", "what")}
WISH = "vil"  # vil, lyst, tenkt ... (a rule group): does not use up the negation look-back
_LIGHT = frozenset({"på", "pa", "å", "a", "om", "til", "te", "to", "about", "of"})

NUMBER = "10+"  # stands for any number from ten up («har tatt 30 paracet»)
GAP = "..."  # up to MAX_GAP other words
MAX_GAP = 6
NOUN_ENDINGS = frozenset({"en", "n", "et", "t", "a", "i", "ene", "ne", "ane", "er", "ar", "r"})
# rule words this long also match their dictionary form (fjellveggen: fjellvegg): only a form
# the rule word begins with, the rest one of NOUN_ENDINGS (a noun's base form)
RULE_LEMMA = 5
START, END = "^", "$"
LOOK_BACK = 3  # words before a match where a negation cancels it
OTHERS_BACK = 2  # words before an exception where «!{jeg}» turns it off
SUBJECT_BACK = 4  # words before a match where another person as subject cancels it
AFTER = 3  # words after an exception where its «!ord» at the end turns it off
CARRY_BACK = 6  # after «og», «men»: how far back the subject of the clause before is sought
MIN_PREFIX = 4  # letters before a '*'
MIN_FUZZY = 3  # words shorter than this are never corrected
NORDIC = ("nb", "nn")  # the dictionaries that decide whether a word in Norwegian is a typo
LONG_FUZZY = 8  # from this length two mistakes are allowed

# -- reading a message ------------------------------------------------------------------------

_APOSTROPHE = re.compile(r"(?<=\w)['’´`‘](?=\w)")
_TOKEN = re.compile(r"[^\W_]+|(?<=\d)\.(?= [^\W\d_])|[.!?;:,\n\r…]+")
_BOUNDARY_CHARS = frozenset(".!?;:,\n\r…")
_RUN3 = re.compile(r"(.)\1{2,}")
_RUN2 = re.compile(r"(.)\1+")
_SKIN_AND_VS = re.compile("[\ufe0f\ufe0e\u200d\U0001f3fb-\U0001f3ff]")
_EMOJI_MARK = "\u2063"  # invisible; follows a word that stood for an emoji
_FOLD = (("ø", ("o", "oe")), ("æ", ("ae",)), ("å", ("aa", "a")))


def fold_variants(word: str) -> set[str]:
    """How a word is written without Norwegian letters: «dø» -> «do», «doe»."""
    out = {word}
    for letter, subs in _FOLD:
        if any(letter in w for w in out):
            out |= {w.replace(letter, s) for w in out for s in subs}
    return out


@dataclass(frozen=True, slots=True)
class Lexicon:
    """Dictionary knowledge: the dictionary forms of a word and whether a word is known.
    Backed by simplemma (bokmål, nynorsk, English), whose data ships inside the package."""

    lemmatise: bool = True
    langs: tuple[str, ...] = ("nb", "nn", "en")

    def lemmas(self, word: str) -> tuple[str, ...]:
        if not self.lemmatise:
            return ()
        return (_lemmas if len(word) <= KEPT_WORD else _lemmas.__wrapped__)(word, self.langs)

    def known(self, word: str, langs: tuple[str, ...] | None = None) -> bool:
        return (_known if len(word) <= KEPT_WORD else _known.__wrapped__)(
            word, self.langs if langs is None else langs)


# what the reader works out for a word is kept for the next message only for words of at most
# this many letters (Norwegian's long compounds are 30-40): a longer one is worked out again
# each time, so nobody can fill the caches with long made-up words
KEPT_WORD = 48


@lru_cache(maxsize=1)
def _lemmatiser() -> Any:
    """simplemma's lemmatiser as `simplemma.lemmatize` uses it, but without its own cache of
    every word it was given (65,536 words of any length): `_lemmas` keeps what is worth
    keeping."""
    from simplemma import Lemmatizer  # loaded on first use: its dictionaries take a moment
    from simplemma.strategies import DefaultStrategy

    return Lemmatizer(cache_max_size=0, lemmatization_strategy=DefaultStrategy(greedy=False))


@lru_cache(maxsize=65536)
def _lemmas(word: str, langs: tuple[str, ...]) -> tuple[str, ...]:
    lemmatise = _lemmatiser().lemmatize
    return tuple({lemmatise(word, lang) for lang in langs} - {word})


@lru_cache(maxsize=65536)
def _known(word: str, langs: tuple[str, ...]) -> bool:
    import simplemma

    return any(simplemma.is_known(word, lang=lang) for lang in langs)


_R = TypeVar("_R")


def _kept(cached: Callable[..., _R], fresh: Callable[..., _R]) -> Callable[..., _R]:
    """`cached` for a word of at most KEPT_WORD letters (the first argument), else `fresh`."""
    def call(word: str, *rest: Any) -> _R:
        return cached(word, *rest) if len(word) <= KEPT_WORD else fresh(word, *rest)
    return call


@dataclass(slots=True)
class Token:
    text: str  # the word as written (lower case, apostrophes dropped)
    start: int  # where it stands in the normalised message
    end: int
    boundary: bool = False  # a sentence or clause break (. ! ? , ; : new line)
    elems: frozenset[int] = frozenset()  # ids of the rule words this token matches
    masked: bool = False  # covered by a `not` phrase: counts for nothing
    emoji: bool = False  # written as an emoji (💊): may stand after `$` like a filler word
    filler: bool = False  # a word from {fyll}: may stand between the words of a rule
    writer: bool = False  # «jeg» or a spelling of it: may stand between them too
    negation: bool = False  # a word from {nekting}


# -- rules ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Word:
    """One position of a pattern: the words and word beginnings it accepts."""

    id: int
    label: str  # as written in the file
    words: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()  # «*brua»: words that end so (jernbanebrua)
    exact: bool = False  # «=ta»: only this form, not «tok» or «tatt»
    negation: bool = False  # the pattern asks for a negation here
    context: bool = False  # «[ikke]» in a `not` phrase: must be there, is not taken out


@dataclass(frozen=True, slots=True)
class Marker:
    kind: str  # GAP, START or END


Elem = Word | Marker


@dataclass(frozen=True, slots=True)
class Rule:
    text: str
    section: str
    pos: Pos
    elems: tuple[Elem, ...]
    unless: Word | None = None  # `not` only: «!{jeg} ...», off when this word is just before
    unless_after: Word | None = None  # `not` only: «... !{vilje}», off when it follows soon

    @property
    def tier(self) -> str | None:
        return TIER_OF.get(self.section)

    @property
    def asks_negation(self) -> bool:
        return any(isinstance(e, Word) and e.negation for e in self.elems)

    def names(self, words: frozenset[str]) -> bool:
        """The pattern itself has one of these words (e.g. «meg»: it is about the user)."""
        return any(isinstance(e, Word) and e.words & words for e in self.elems)

    @property
    def anchor(self) -> int:
        """Index of the first word (a pattern never begins with a gap)."""
        return next(i for i, e in enumerate(self.elems) if isinstance(e, Word))


@dataclass(frozen=True, slots=True)
class Hit:
    rule: Rule
    span: str  # the words it covered, as normalised
    start: int
    end: int
    across: bool = False  # matched only across a comma: a possible signal, whatever the rule


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the reader made of a message, for the engine and for `veivis krise test`."""

    tier: str | None  # CLEAR, POSSIBLE or None
    hit: Hit | None = None  # the rule that decided
    hits: tuple[Hit, ...] = ()  # every rule that matched
    excluded: tuple[Hit, ...] = ()  # `not` phrases that took words out
    cancelled: tuple[tuple[Hit, str], ...] = ()  # matched, but did not count (and why)
    score: float | None = None  # the learned model's score, when it decided

    def __bool__(self) -> bool:
        return self.tier is not None


class CrisisRules:
    """The compiled rules of krise.yaml. `check(text)` reads one message. Immutable after
    construction; it caches what each written word matches, so repeated words cost nothing."""

    def __init__(self, rules: Sequence[Rule] = (),
                 groups: Mapping[str, frozenset[str]] | None = None,
                 emoji: Mapping[str, str] | None = None, required_numbers: Sequence[str] = (),
                 pos: Pos | None = None, lexicon: Lexicon | None = None,
                 fuzzy: bool = True, spellings: Mapping[str, str] | None = None,
                 model: NgramModel | None = None) -> None:
        self.rules = tuple(rules)
        self.model = model
        self._model_rule = Rule("modell", MODEL, Pos(model.path if model else "", 1), ())
        self.groups: Mapping[str, frozenset[str]] = dict(groups or {})
        self.emoji: Mapping[str, str] = dict(emoji or {})
        self.required_numbers = tuple(required_numbers)
        self.pos = pos
        self.lexicon = lexicon or Lexicon()
        self.fuzzy = fuzzy
        # written form -> the standard (bokmål) form it is also known by
        self.spellings: Mapping[str, str] = {v: std for w, std in (spellings or {}).items()
                                             for v in fold_variants(w)}
        index: dict[str, set[int]] = {}
        exact: dict[str, set[int]] = {}
        prefixes: list[tuple[str, int]] = []
        suffixes: list[tuple[str, int]] = []
        vocab: set[str] = set()
        for rule in self.rules:
            for e in (*rule.elems, *(u for u in (rule.unless, rule.unless_after) if u)):
                if not isinstance(e, Word):
                    continue
                for w in e.words:
                    (exact if e.exact else index).setdefault(w, set()).add(e.id)
                    if len(w) >= MIN_FUZZY and not e.exact:
                        vocab.add(w)
                    if len(w) >= RULE_LEMMA and not e.exact and rule.section != "not":
                        for lem in self.lexicon.lemmas(w):
                            if len(lem) >= RULE_LEMMA - 1 and w.startswith(lem) and \
                                    w[len(lem):] in NOUN_ENDINGS:
                                index.setdefault(lem, set()).add(e.id)
                prefixes.extend((p, e.id) for p in e.prefixes)
                suffixes.extend((x, e.id) for x in e.suffixes)
        self._index = {k: frozenset(v) for k, v in index.items()}
        self._exact = {k: frozenset(v) for k, v in exact.items()}
        self._prefixes = tuple(prefixes)
        self._starts: dict[str, set[int]] = {}  # word beginning -> rule word ids
        for p, eid in prefixes:
            self._starts.setdefault(p, set()).add(eid)
        self._ends_with: dict[str, set[int]] = {}  # word ending -> rule word ids
        for x, eid in suffixes:
            self._ends_with.setdefault(x, set()).add(eid)
        self._start_lengths = sorted({len(p) for p in self._starts})
        self._end_lengths = sorted({len(x) for x in self._ends_with})
        self._vocab = tuple(sorted(vocab))
        self._index_spelling()
        self._group_sets = {g: frozenset(v for w in ws if "*" not in w
                                         for v in fold_variants(w))
                            for g, ws in self.groups.items()}
        self._group_starts = {g: tuple(v for w in ws if w.endswith("*")
                                       for v in fold_variants(w[:-1]))
                              for g, ws in self.groups.items()}
        self._self_words = self._group_sets.get(SELF, frozenset())
        self._not = tuple(r for r in self.rules if r.section == "not")
        self._positive = tuple(r for r in self.rules if r.section != "not")
        # rules by the id of their first word: a message is tried only against the rules
        # whose first word it has (most messages, «ja», «2», have none)
        self._by_first: dict[int, list[tuple[int, Rule]]] = {}
        for n, rule in enumerate(self.rules):
            first = rule.elems[rule.anchor]
            assert isinstance(first, Word)
            self._by_first.setdefault(first.id, []).append((n, rule))
        self._token_elems = _kept(lru_cache(maxsize=65536)(self._elems_of), self._elems_of)
        self._in_group = _kept(lru_cache(maxsize=65536)(self._text_in_group),
                               self._text_in_group)
        self._anchors = {id(r): r.anchor for r in self.rules}
        self._joins: dict[str, int] = {}  # word -> where it splits in two (0: it does not)
        self._join_heads = frozenset().union(*(self._group_sets.get(g, frozenset())
                                               for g in (SELF, NEGATION))) | frozenset(
            {"vil", "skal", "ska", "har", "kan", "orker", "bare", "berre"})
        self._nordic_elems = _kept(lru_cache(maxsize=4096)(self._corrected), self._corrected)

    def _index_spelling(self) -> None:
        """Spelling: every rule word (and word beginning) under each of its forms with one or
        two letters left out; a written word finds its candidates by leaving letters out too
        (the «symmetric delete» of SymSpell), and rapidfuzz checks the distance."""
        self._deletes: dict[str, set[str]] = {}
        self._longest = max((len(w) for w in self._vocab), default=0)
        for w in self._vocab:
            for d in _deletes(w, 2):
                self._deletes.setdefault(d, set()).add(w)
        self._prefix_deletes: dict[str, set[str]] = {}
        for p, _ in self._prefixes:
            if len(p) >= MIN_FUZZY + 2:
                for d in _deletes(p, 1):
                    self._prefix_deletes.setdefault(d, set()).add(p)
        self._prefix_lengths = sorted({len(p) for ps in self._prefix_deletes.values()
                                       for p in ps})

    # -- the public face ---------------------------------------------------------------------

    def matches(self, text: str) -> bool:
        """True when the message is a clear or a possible signal."""
        return self.check(text).tier is not None

    def check(self, text: str, explain: bool = False) -> Verdict:
        """Read one message: the tier, and which rule decided (or what excluded it). With
        `explain`, also the matches a negation between the words stopped (for `veivis krise
        test`; slower)."""
        tokens = self.tokens(text)
        if not tokens or not self.rules:
            return Verdict(None)
        sentences = _sentences(tokens)
        where: dict[int, list[tuple[int, int]]] = {}  # rule word id -> (sentence, position)
        for si, sent in enumerate(sentences):
            for ti, t in enumerate(sent):
                for eid in t.elems:
                    where.setdefault(eid, []).append((si, ti))
        found = sorted(x for eid in where for x in self._by_first.get(eid, ()))
        candidates = [rule for _, rule in found]
        excluded = self._mask(candidates, sentences, where)
        hits, cancelled = self._hits(candidates, sentences, where, explain)
        decided = (next((h for h in hits if h.rule.tier == CLEAR), None)
                   or next((h for h in hits if h.rule.tier == POSSIBLE), None))
        if decided is None and any(t.boundary and t.text.strip(",") == "" for t in tokens):
            decided = self._across_commas(tokens, cancelled)
            if decided is not None:
                hits.append(decided)
                return Verdict(POSSIBLE, decided, tuple(hits), tuple(excluded),
                               tuple(cancelled))
        if decided is None and self.model is not None:
            said = self.model_input(text)  # a second opinion: never more than a check-in
            score = self.model.score(said) if said.strip() else None
            if score is not None and score >= self.model.threshold:
                decided = Hit(self._model_rule, said, tokens[0].start, tokens[-1].end)
                return Verdict(POSSIBLE, decided, (decided,), tuple(excluded),
                               tuple(cancelled), score)
        return Verdict(decided.rule.tier if decided else None, decided, tuple(hits),
                       tuple(excluded), tuple(cancelled))

    def model_input(self, text: str) -> str:
        """What the learned model reads: the message lower-cased, emoji as words, spaces
        made single (bench/crisis_model.py trains on the same)."""
        return " ".join(self.normalise(text).replace(_EMOJI_MARK, " ").split())

    def _mask(self, candidates: Sequence[Rule], sentences: Sequence[Sequence[Token]],
              where: Mapping[int, Sequence[tuple[int, int]]]) -> list[Hit]:
        """Apply the `not` phrases: mark the words they cover; what they matched."""
        excluded: list[Hit] = []
        for rule in (r for r in candidates if r.section == "not"):
            for si, s, e in self._find(rule, sentences, where):
                sent = sentences[si]
                if rule.unless is not None and any(
                        rule.unless.id in t.elems for t in sent[max(0, s - OTHERS_BACK):s]):
                    continue  # «jeg tar livet av meg»: not the idiom «det tar livet av meg»
                if rule.unless_after is not None and any(
                        rule.unless_after.id in t.elems for t in sent[e:e + AFTER]):
                    continue  # «kuttet meg på armen med vilje»: no accident
                excluded.append(self._hit(rule, sent, s, e))
                for t in self._covered(rule, sent, s, e):
                    t.masked = True
        return excluded

    def _hits(self, candidates: Sequence[Rule], sentences: Sequence[Sequence[Token]],
              where: Mapping[int, Sequence[tuple[int, int]]], explain: bool
              ) -> tuple[list[Hit], list[tuple[Hit, str]]]:
        """The rules that match and count, and those that matched but do not count."""
        hits: list[Hit] = []
        cancelled: list[tuple[Hit, str]] = []
        for rule in (r for r in candidates if r.section == TOGETHER):
            found_all = self._together(rule, sentences, where)
            if found_all is not None:
                hits.append(found_all)
        for rule in (r for r in candidates if r.section not in ("not", TOGETHER)):
            for si, s, e in self._find(rule, sentences, where):
                sent = sentences[si]
                hit = self._hit(rule, sent, s, e)
                why = self._why_not(rule, sent, s, e)
                if why is None:
                    hits.append(hit)
                    break  # one hit per rule is enough
                cancelled.append((hit, why))
        if explain:
            seen = {id(h.rule) for h in hits} | {id(h.rule) for h, _ in cancelled}
            for rule in self._positive:
                if id(rule) in seen:
                    continue
                for si, s, e in self._find(rule, sentences, where, negation_in_gaps=True):
                    sent = sentences[si]
                    neg = next(t.text for t in sent[s:e] if self.in_group(t, NEGATION))
                    cancelled.append((self._hit(rule, sent, s, e),
                                      f"«{neg}» står mellom ordene (en nekting)"))
                    break
        return hits, cancelled

    def _across_commas(self, tokens: Sequence[Token], cancelled: list[tuple[Hit, str]]
                       ) -> Hit | None:
        """Young people put commas where no clause ends («jeg tok pillene til mamma, alle
        sammen»). When nothing matched, the rules are tried again over sentences split only
        at . ! ? ; : new lines, and at a comma before a new clause («, men», «, jeg»); a match
        there is a possible signal (a check-in), never a clear one. The words `not` phrases
        took out stay out."""
        joined: list[list[Token]] = [[]]
        for i, t in enumerate(tokens):
            if not t.boundary:
                joined[-1].append(t)
            elif t.text.strip(",") or (i + 1 < len(tokens)
                                       and self.in_group(tokens[i + 1], CLAUSE)):
                joined.append([])
        joined = [sent for sent in joined if sent]
        where: dict[int, list[tuple[int, int]]] = {}
        for si, sent in enumerate(joined):
            for ti, t in enumerate(sent):
                for eid in t.elems:
                    where.setdefault(eid, []).append((si, ti))
        found = sorted(x for eid in where for x in self._by_first.get(eid, ()))
        for _, rule in found:
            if rule.section in ("not", TOGETHER):
                continue
            for si, s, e in self._find(rule, joined, where):
                sent = joined[si]
                hit = self._hit(rule, sent, s, e)
                why = self._why_not(rule, sent, s, e)
                if why is None:
                    return replace(hit, across=True)
                cancelled.append((replace(hit, across=True), why))
        return None

    # -- reading ------------------------------------------------------------------------------

    def normalise(self, text: str) -> str:
        t = unicodedata.normalize("NFKC", text)
        if not t.isascii():
            t = _SKIN_AND_VS.sub("", t)
            for emo, word in self.emoji.items():
                if emo in t:
                    t = t.replace(emo, f" {word}{_EMOJI_MARK} ")
        return _APOSTROPHE.sub("", t.casefold())

    def tokens(self, text: str) -> list[Token]:
        norm = self.normalise(text)
        out: list[Token] = []
        for m in _TOKEN.finditer(norm):
            w = m.group()
            if w == "." and m.start() > 0 and norm[m.start() - 1].isdigit() and \
                    norm[m.end():m.end() + 2].strip()[:1].islower():
                continue  # «10. etasje», «24. november»: an ordinal, not a full stop
            if w[0] in _BOUNDARY_CHARS:
                if out and not out[-1].boundary:
                    out.append(Token(w, m.start(), m.end(), boundary=True))
                continue
            emoji = norm.startswith(_EMOJI_MARK, m.end())
            for a, b, part in self._split(w, m.start()):
                t = Token(part, a, b, elems=self._token_elems(part), emoji=emoji)
                t.filler = self.in_group(t, FILLER)
                t.writer = part == "jeg" or self.spellings.get(part) == "jeg"
                t.negation = self.in_group(t, NEGATION)
                out.append(t)
        if self.fuzzy and self.lexicon.lemmatise:
            self._english_typos(out)
        return out

    def _split(self, word: str, at: int) -> list[tuple[int, int, str]]:
        """Two words typed without the space between («jegvil», «ikkeleve»): a word no
        dictionary knows, that no rule word matches, made of a short word the reader knows
        (jeg, ikke, vil ...) and a rest a rule word matches."""
        whole = [(at, at + len(word), word)]
        if len(word) < 5 or not self.lexicon.lemmatise:
            return whole
        cut = self._joins.get(word)
        if cut is None:
            cut = 0
            if not self._token_elems(word) and not self.lexicon.known(word):
                for k in range(2, min(6, len(word) - 2) + 1):
                    if word[:k] in self._join_heads and self._token_elems(word[k:]):
                        cut = k
                        break
            if len(self._joins) < 65536 and len(word) <= KEPT_WORD:
                self._joins[word] = cut
        if not cut:
            return whole
        return [(at, at + cut, word[:cut]), (at + cut, at + len(word), word[cut:])]

    def _english_typos(self, tokens: list[Token]) -> None:
        """In a Norwegian message, a word only the English dictionary knows is most likely a
        typing mistake («iller» for «piller», «lere» for «leve»): it may be corrected too."""
        english = [t for t in tokens if not t.boundary and len(t.text) >= MIN_FUZZY + 1
                   and t.text.isalpha() and not self.lexicon.known(t.text, NORDIC)
                   and self.lexicon.known(t.text)]
        if not english:
            return
        nordic = sum(1 for t in tokens if not t.boundary and t.text.isalpha()
                     and self.lexicon.known(t.text, NORDIC))
        if nordic <= len(tokens) // 2 or nordic <= 2 * len(english):
            return
        for t in english:
            t.elems = t.elems | self._nordic_elems(t.text)

    def forms(self, word: str) -> set[str]:
        """The forms a written word is known by: as written, with stretched letters
        shortened, its dictionary forms, and «10+» for a number of ten or more."""
        forms = {word, _RUN3.sub(r"\1\1", word), _RUN2.sub(r"\1", word)}
        std = {self.spellings[f] for f in forms if f in self.spellings}
        forms |= std
        for f in (word, _RUN3.sub(r"\1\1", word), *std):
            forms.update(self.lexicon.lemmas(f))
        if word.isascii() and word.isdigit() and len(word) < 6 and int(word) >= 10:
            forms.add(NUMBER)
        return forms

    def corrections(self, word: str, langs: tuple[str, ...] | None = None) -> set[str]:
        """Rule words this word may be a misspelling of (it is in no dictionary of `langs`):
        one mistake, two in long words; a three-letter word only with a letter left out."""
        if not self.fuzzy or len(word) < MIN_FUZZY or word.isdigit():
            return set()
        w = _RUN3.sub(r"\1\1", word)
        if w in self._index or w in self.spellings or self.lexicon.known(w, langs):
            return set()
        from rapidfuzz.distance import OSA

        cutoff = 2 if len(w) >= LONG_FUZZY else 1
        near: set[str] = set()
        # a rule word within `cutoff` mistakes is at most `cutoff` letters shorter; a longer
        # word (4,000 letters without a space) would make millions of deletes for nothing
        if len(w) - cutoff <= self._longest:
            for d in _deletes(w, cutoff):
                near |= self._deletes.get(d, set())
        found = {c for c in near if OSA.distance(w, c, score_cutoff=cutoff) <= cutoff}
        if len(w) < MIN_FUZZY + 1:  # three letters: only a letter left out («lve», «ikk»)
            found = {c for c in found if len(c) == len(w) + 1 and _subsequence(w, c)}
        for n in {m + k for m in self._prefix_lengths for k in (-1, 0, 1)}:
            if n > len(w):
                continue
            head = w[:n]
            for d in _deletes(head, 1):
                for p in self._prefix_deletes.get(d, ()):
                    if not w.startswith(p) and OSA.distance(head, p, score_cutoff=1) <= 1:
                        found.add(p + "*")
        return found

    def _corrected(self, word: str) -> frozenset[int]:
        """The rule words a word may be a misspelling of, by the Norwegian dictionaries only."""
        ids: set[int] = set()
        for c in self.corrections(word, NORDIC):
            if c.endswith("*"):
                ids |= self._starts.get(c[:-1], set())
            else:
                ids |= self._index.get(c, frozenset())
        return frozenset(ids)

    def _elems_of(self, word: str) -> frozenset[int]:
        """The ids of the rule words a written word matches."""
        ids: set[int] = set()
        forms = self.forms(word)
        for f in forms:
            ids |= self._index.get(f, frozenset())
        for f in (word, _RUN3.sub(r"\1\1", word), _RUN2.sub(r"\1", word),
                  self.spellings.get(word, "")):
            ids |= self._exact.get(f, frozenset())
        for f in forms:
            for n in self._start_lengths:
                if n > len(f):
                    break
                ids |= self._starts.get(f[:n], set())
            for n in self._end_lengths:
                if n > len(f):
                    break
                ids |= self._ends_with.get(f[-n:], set())
        for c in self.corrections(word):
            if c.endswith("*"):
                ids |= self._starts.get(c[:-1], set())
            else:
                ids |= self._index.get(c, frozenset())
        return frozenset(ids)

    def in_group(self, token: Token, group: str) -> bool:
        return self._in_group(token.text, group)

    def _text_in_group(self, text: str, group: str) -> bool:
        words = self._group_sets.get(group)
        if not words:
            return False
        if text in words or _RUN2.sub(r"\1", text) in words or \
                self.spellings.get(text) in words:
            return True
        starts = self._group_starts.get(group, ())
        return bool(starts) and text.startswith(starts)  # «bror*»: broren, brorsan

    # -- matching -----------------------------------------------------------------------------

    def _find(self, rule: Rule, sentences: Sequence[Sequence[Token]],
              where: Mapping[int, Sequence[tuple[int, int]]], negation_in_gaps: bool = False
              ) -> Iterator[tuple[int, int, int]]:
        """(sentence, start, end) of each place the rule matches, left to right, not
        overlapping. Only the places where its first word stands are tried."""
        a = self._anchors[id(rule)]
        first = rule.elems[a]
        assert isinstance(first, Word)
        done = (-1, -1)  # (sentence, end) of the last match
        for si, i in where.get(first.id, ()):
            sent = sentences[si]
            if sent[i].masked or (a and i != 0) or (si == done[0] and i < done[1]):
                continue
            end = self._match(rule.elems, a + 1, sent, i + 1, negation_in_gaps)
            if end >= 0:
                done = (si, end)
                yield si, i, end

    def _match(self, elems: Sequence[Elem], e: int, sent: Sequence[Token], i: int,
               negation_ok: bool = False) -> int:
        """The end of a match of elems[e:] from sent[i], or -1."""
        if e == len(elems):
            return i
        el = elems[e]
        if isinstance(el, Word):
            # a filler word («altså», «bare»), a word an exception took out, or «jeg» (and
            # what `spellings` reads as «jeg») may stand between two words of a rule:
            # «ingen vits [altså] å leve», «i går kuttet [jeg] meg» (the verb before the
            # subject after an adverb)
            # (at most MAX_GAP of them: «jeg jeg jeg …» over 4,000 letters made every start
            # scan to the end of the message, seconds for one message)
            skipped = 0
            while i < len(sent) and not (not sent[i].masked and el.id in sent[i].elems):
                if not (sent[i].masked or sent[i].filler or sent[i].writer) or \
                        skipped == MAX_GAP:
                    return -1
                i += 1
                skipped += 1
            if i < len(sent):
                return self._match(elems, e + 1, sent, i + 1, negation_ok)
            return -1
        if el.kind == END:
            return (self._match(elems, e + 1, sent, i, negation_ok) if self._ends(sent, i)
                    else -1)
        if el.kind == GAP:  # up to MAX_GAP words, none a negation; words taken out are free
            k, counted = 0, 0
            while counted <= MAX_GAP:
                if k:
                    if i + k - 1 >= len(sent):
                        return -1
                    t = sent[i + k - 1]
                    if not t.masked:
                        if not negation_ok and t.negation:
                            return -1
                        counted += 1
                        if counted > MAX_GAP:
                            return -1
                end = self._match(elems, e + 1, sent, i + k, negation_ok)
                if end >= 0:
                    return end
                k += 1
            return -1
        return self._match(elems, e + 1, sent, i, negation_ok)  # START: checked by _find

    def _together(self, rule: Rule, sentences: Sequence[Sequence[Token]],
                  where: Mapping[int, Sequence[tuple[int, int]]]) -> Hit | None:
        """A `together` rule: each of its words somewhere in the message, not taken out by an
        exception, not negated and not about another person (as a one-word match would be)."""
        places: list[Token] = []
        for el in rule.elems:
            assert isinstance(el, Word)
            spot = next((sentences[si][i] for si, i in where.get(el.id, ())
                         if not sentences[si][i].masked and not self._negated(sentences[si], i)
                         and self._why_not(rule, sentences[si], i, i + 1) is None), None)
            if spot is None or any(spot is p for p in places):
                return None
            places.append(spot)
        places.sort(key=lambda t: t.start)
        return Hit(rule, " + ".join(t.text for t in places), places[0].start, places[-1].end)

    def _negated(self, sent: Sequence[Token], i: int) -> bool:
        """A negation stands earlier in the sentence («har ikke lyst til å dø, ...»), other
        than «vet ikke» and «ikke mer»."""
        for j in range(i):
            if self.in_group(sent[j], NEGATION) and not (
                    (j > 0 and self.in_group(sent[j - 1], KNOW)) or
                    (j + 1 < len(sent) and self.in_group(sent[j + 1], MORE))):
                return True
        return False

    def _covered(self, rule: Rule, sent: Sequence[Token], s: int, e: int) -> list[Token]:
        """The words a `not` phrase takes out: all it matched but its [context] words."""
        context = [el.id for el in rule.elems if isinstance(el, Word) and el.context]
        if not context:
            return list(sent[s:e])
        return [t for t in sent[s:e] if not any(c in t.elems for c in context)]

    def _ends(self, sent: Sequence[Token], i: int) -> bool:
        """The sentence ends at i: nothing but filler words («nå», «lenger») or emoji follow,
        or a new clause about the writer starts («... og jeg», «... jeg vil»)."""
        rest = sent[i:]
        if all(t.emoji or self.in_group(t, FILLER) for t in rest) or rest[0].masked:
            return True
        if not self.in_group(rest[0], CLAUSE):
            return False
        if self.in_group(rest[0], SELF):  # «... jeg vil bare dø»
            return True
        return len(rest) > 1 and (self.in_group(rest[1], SELF) or rest[1].masked)

    def _starts_clause(self, sent: Sequence[Token], j: int) -> bool:
        """Whether the writer's «jeg» at j starts a new clause with no punctuation before it
        («jeg orker ikke jeg vil dø»): not after a word that joins it to what came before
        («ikke sånn at jeg …», «vet ikke om jeg …») nor in «ikke jeg som …»."""
        after = sent[j + 1].text if j + 1 < len(sent) else ""
        return not (j > 0 and self.in_group(sent[j - 1], JOINED)) and \
            after not in ("som", "who", "that")

    def _why_not(self, rule: Rule, sent: Sequence[Token], s: int, e: int) -> str | None:
        """Why a match does not count, or None when it does."""
        about_others = rule.section == "danger" or rule.names(self._self_words)
        if not about_others:
            for t in sent[s:e]:
                if self.in_group(t, OTHERS) and not self._named(rule, t):
                    return f"«{t.text}» er en annen person enn den som skriver"
        if not rule.asks_negation:
            counted, j = 0, s
            while counted < LOOK_BACK and j > 0:
                j -= 1
                t = sent[j]
                if t.masked or (self.in_group(t, CLAUSE) and not self.in_group(t, SELF)):
                    break
                if self.in_group(t, SELF) and self._starts_clause(sent, j):
                    break
                # «har aldri tenkt på å ta livet mitt»: a wish or thought word ({vil}) and
                # «på», «å» do not use up the look-back
                if not (self.in_group(t, WISH) or t.text in _LIGHT):
                    counted += 1
                if self.in_group(t, NEGATION):
                    before = sent[j - 1] if j > 0 else None
                    after = sent[j + 1] if j + 1 < len(sent) else None
                    knows = (before is not None and self.in_group(before, KNOW)) or (
                        j > 1 and self.in_group(sent[j - 1], SELF)
                        and self.in_group(sent[j - 2], KNOW))  # «vet jeg ikke om ...»
                    if knows or (after is not None and self.in_group(after, MORE)):
                        continue
                    return f"«{t.text}» står foran (en nekting)"
        if not about_others:
            subject = self._subject_before(sent, s)
            if subject is not None and not self.in_group(subject, SELF):
                return f"det handler om en annen («{subject.text}»)"
        return None

    def _person(self, t: Token) -> bool:
        return (self.in_group(t, SELF) or self.in_group(t, OTHERS)
                or self.in_group(t, PEOPLE))

    def _subject_before(self, sent: Sequence[Token], s: int) -> Token | None:
        """The person just before a match (within four words: «søstra mi slet med
        selvskading»), or, when the match starts a clause with no subject of its own («... og
        kommer snart til å dø»), the nearest person in the clause before it. The writer right
        after the match's first word is its subject («etter at mamma dro, tok jeg ...»)."""
        if s + 1 < len(sent) and sent[s + 1].writer:
            return sent[s + 1]
        j = s - 1
        for _ in range(SUBJECT_BACK):
            if j < 0 or sent[j].masked:
                return None
            t = sent[j]
            if self._person(t):
                return t
            if self.in_group(t, CLAUSE):
                break
            j -= 1
        if j < 0 or j != s - 1 or not self.in_group(sent[j], CLAUSE):
            return None
        for k in range(j - 1, max(-1, j - 1 - CARRY_BACK), -1):
            t = sent[k]
            if t.masked:
                return None
            if self._person(t):
                return t
        return None

    def _named(self, rule: Rule, token: Token) -> bool:
        """The rule itself names this word (so it is no stranger in the match)."""
        return any(isinstance(el, Word) and el.id in token.elems for el in rule.elems)

    def _hit(self, rule: Rule, sent: Sequence[Token], s: int, e: int) -> Hit:
        return Hit(rule, " ".join(t.text for t in sent[s:e]), sent[s].start, sent[e - 1].end)


def _deletes(word: str, n: int) -> set[str]:
    """The word with up to n letters left out."""
    out, frontier = {word}, {word}
    for _ in range(n):
        frontier = {f[:i] + f[i + 1:] for f in frontier for i in range(len(f))}
        out |= frontier
    return out


def _subsequence(short: str, long: str) -> bool:
    it = iter(long)
    return all(ch in it for ch in short)


def _sentences(tokens: Sequence[Token]) -> list[list[Token]]:
    out: list[list[Token]] = [[]]
    for t in tokens:
        if t.boundary:
            if out[-1]:
                out.append([])
        else:
            out[-1].append(t)
    return [s for s in out if s]


# A crisis message written to the veileder goes to the work phone with this in front, so the
# veileder sees it even when a long text is shortened (the urgent notice comes too, in hours).
FORWARD_MARK = "(Kan bety krise. Veivis har gitt krisenumrene.) "

# Answers to the check-in question that count as a yes besides «ja»: not sure is a yes.
MAYBE = ("kanskje", "kansje", "kanskje det", "vet ikke", "vet ikkje", "veit ikkje", "veit ikke",
         "vet ik", "aner ikke", "usikker", "litt", "noen ganger", "nokre gonger", "av og til",
         "innimellom", "tja", "mulig", "tror det", "trur det", "maybe", "idk", "not sure",
         "sometimes", "a bit", "kind of", "i dont know", "i think so")

# The name the loader and the engine used when the file held a plain word list.
CrisisWords = CrisisRules


def says_yes_to_check_in(text: str, maybe: Iterable[str]) -> bool:
    """A «not sure» to the check-in question («kanskje», «vet ikke») counts as a yes."""
    norm = " ".join(w for w in _TOKEN.findall(text.casefold()) if w[0] not in _BOUNDARY_CHARS)
    return any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", norm) for w in maybe)


SECTION_NAMES = {"phrases": "tydelige tegn", "danger": "fare fra andre",
                 "possible": "mulige tegn", "together": "mulige tegn sammen", "not": "unntak"}


def _where(rule: Rule) -> str:
    return f"{rule.pos} (under «{rule.section}», {SECTION_NAMES.get(rule.section, '')})"


def explain(verdict: Verdict, model: NgramModel | None = None) -> list[str]:
    """What `veivis krise test` tells a coordinator, in Norwegian: whether the message
    triggers, which tier, which rule and words decided, and what was excluded or did not
    count. For the learned model: its score, the threshold and the letter groups that
    pulled the score up most."""
    out: list[str] = []
    if verdict.tier == CLEAR:
        out.append("Utløser: JA – tydelig tegn. Brukeren får krisenumrene med en gang "
                   "(flyten «crisis»), og den som er på jobb hos NAV, får beskjed.")
    elif verdict.tier == POSSIBLE:
        out.append("Utløser: JA – mulig tegn. Brukeren får et kort spørsmål med numrene: "
                   "tenker du på å skade deg selv? Svarer de ja, får de krisenumrene.")
    else:
        out.append("Utløser: NEI. Meldingen blir lest som vanlig.")
    if verdict.hit is not None and verdict.hit.rule.section == MODEL:
        limit = f"; grensen er {model.threshold:.2f}" if model is not None else ""
        out.append(f"Ingen regel traff, men den lærte modellen ({verdict.hit.rule.pos.path}) "
                   f"ga {verdict.score or 0:.2f} poeng{limit}.")
        if model is not None:
            out.append("Ordbitene som trakk mest: " + ", ".join(
                f"«{f}» ({w:+.1f})" for f, w in model.reasons(verdict.hit.span)))
        out.append("Modellen gir aldri mer enn spørsmålet (mulig tegn). Er dette feil, legg "
                   "uttrykket som et unntak under «not» i krise.yaml.")
    elif verdict.hit is not None:
        out.append(f"Regel: «{verdict.hit.rule.text}» – {_where(verdict.hit.rule)}")
        out.append(f"Traff: «{verdict.hit.span}»")
        if verdict.hit.across:
            out.append("Treffet går over et komma, så det regnes bare som et mulig tegn.")
    others = [h for h in verdict.hits if h is not verdict.hit]
    if others:
        out.append("Andre regler som også traff:")
        out.extend(f"  «{h.rule.text}» traff «{h.span}» – {h.rule.pos}" for h in others)
    if verdict.excluded:
        out.append("Unntak som tok ord ut (de teller ikke):")
        out.extend(f"  «{h.rule.text}» tok «{h.span}» – {h.rule.pos}" for h in verdict.excluded)
    if verdict.cancelled:
        out.append("Traff, men teller ikke:")
        out.extend(f"  «{h.rule.text}» traff «{h.span}», men {why} – {h.rule.pos}"
                   for h, why in verdict.cancelled)
    if verdict.tier is None and not verdict.excluded and not verdict.cancelled:
        out.append("Ingen regel traff. Skal slike meldinger gi krisenumrene, legg til et "
                   "uttrykk i krise.yaml (se flows/README.md, «Krise»).")
    return out
