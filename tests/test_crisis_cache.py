"""The engine remembers the crisis reader's verdict for short messages (`crisis_tier`): it must
give exactly the verdict the reader gives, for every message of the crisis corpus, the first
time and every time after."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from bot.engine import UserText, step
from bot.engine.crisis import CLEAR, CrisisRules
from bot.engine.model import FlowSet
from bot.engine.runtime import TIER_CACHE_TEXT, State, crisis_tier

from .conftest import NOW

CORPUS = Path(__file__).resolve().parent.parent / "bench" / "crisis_corpus"


def corpus() -> list[str]:
    texts = []
    for path in sorted(CORPUS.glob("*.tsv")):
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            if line.strip():
                texts.append(line.split("\t", 2)[2])
    return texts


def test_the_remembered_tier_is_the_readers_on_the_whole_corpus(flows: FlowSet) -> None:
    reader = flows.crisis
    texts = corpus()
    assert len(texts) > 2000
    short = [t for t in texts if len(t) <= TIER_CACHE_TEXT]
    assert len(short) > 1000  # most of the corpus goes through the cache
    fresh = [reader.check(t).tier for t in texts]
    assert any(fresh) and not all(fresh)
    for _ in range(2):  # the first time (read) and again (remembered)
        assert [crisis_tier(reader, t) for t in texts] == fresh
    # the variants real traffic sends: cases, spaces, punctuation, emoji
    for t in texts[:300]:
        for v in (t.upper(), f" {t} ", f"{t}!!", f"{t} 😢", t.replace(" ", "  ")):
            assert crisis_tier(reader, v) == reader.check(v).tier, v


def test_every_message_is_read_in_every_state_with_the_cache(flows: FlowSet) -> None:
    """The step's answer to a crisis message is the same whether the verdict is remembered
    or not (a message seen before, as «ja» and «1» are)."""
    for text in ("jeg vil dø", "orker ikke mer", "ja", "jeg vil dø"):
        first = step(flows, State(consent=True), UserText(text), NOW, {})
        again = step(flows, State(consent=True), UserText(text), NOW, {})
        assert first == again


def test_the_cache_does_not_keep_an_old_reader_alive(flows: FlowSet) -> None:
    reader = CrisisRules()  # no rules: reads nothing as crisis
    ref = weakref.ref(reader)
    assert crisis_tier(reader, "jeg vil dø") is None
    del reader
    gc.collect()
    assert ref() is None


def test_a_reader_without_weak_references_is_read_every_time() -> None:
    class Reader:
        __slots__ = ("calls",)

        def __init__(self) -> None:
            self.calls = 0

        def check(self, text: str) -> object:
            self.calls += 1
            return type("V", (), {"tier": None})()

    r = Reader()
    assert crisis_tier(r, "ja") is None and crisis_tier(r, "ja") is None
    assert r.calls == 2



def test_long_words_are_not_kept_by_the_reader(flows: FlowSet) -> None:
    """An attacker who sends long made-up words, each new, must not make the process keep
    them: the reader's word caches held every word whole (a 4,096-letter word five times
    over; up to ~0.9 GB with the caches full). Measured as the memory still held after the
    messages have been read."""
    import random
    import tracemalloc

    reader = flows.crisis
    assert reader is not None
    rnd = random.Random(7)
    letters = "abcdefghijklmnoprstuvyæøå"
    words = ["".join(rnd.choice(letters) for _ in range(3000)) for _ in range(101)]
    reader.check(f"hei {words.pop()} jeg vil dø")  # what a reader loads once, on first use
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for w in words:
            assert reader.check(f"hei {w} jeg vil dø").tier == CLEAR  # still read
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 100_000, f"{kept:,} bytes kept after 300,000 letters of new words"


def test_the_lemmatiser_without_its_cache_is_simplemmas() -> None:
    """The reader calls simplemma's lemmatiser without simplemma's own word cache: every
    word of the crisis corpus gets the same dictionary forms as from `simplemma.lemmatize`."""
    import re

    import simplemma

    from bot.engine.crisis import _lemmatiser

    words = sorted({w for t in corpus() for w in re.findall(r"\w+", t.lower())})
    assert len(words) > 1000
    for lang in ("nb", "nn", "en"):
        assert [_lemmatiser().lemmatize(w, lang) for w in words] == [
            simplemma.lemmatize(w, lang=lang) for w in words]
