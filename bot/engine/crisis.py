"""Recognising a message that may signal crisis, self-harm or acute danger. Pure.

The phrases live in flows/krise.yaml so coordinators can extend them. A message matches when
one of the phrases appears in it as whole words (any case, punctuation or emoji around), after
the look-alike phrases under `not` («dør av latter») are taken out. It errs on the side of
caution: a false alarm costs the user one message with phone numbers; a miss costs more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .answers import normalise
from .model import Pos

CRISIS_FLOW = "crisis"


@dataclass(frozen=True)
class CrisisWords:
    phrases: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    required_numbers: tuple[str, ...] = ()
    pos: Pos | None = None
    _patterns: tuple[re.Pattern[str] | None, re.Pattern[str] | None] | None = field(
        default=None, compare=False, repr=False)

    def patterns(self) -> tuple[re.Pattern[str] | None, re.Pattern[str] | None]:
        """(phrases, look-alikes), each one compiled alternation of whole-word phrases."""
        if self._patterns is None:
            def compile_(words: tuple[str, ...]) -> re.Pattern[str] | None:
                alts = [re.escape(n) for n in sorted({normalise(w) for w in words},
                                                     key=len, reverse=True) if n]
                return re.compile(rf"(?<!\w)(?:{'|'.join(alts)})(?!\w)") if alts else None
            object.__setattr__(self, "_patterns", (compile_(self.phrases),
                                                   compile_(self.exclude)))
        assert self._patterns is not None
        return self._patterns

    def matches(self, text: str) -> bool:
        phrases, exclude = self.patterns()
        if phrases is None or len(text) > 5000:
            return False
        norm = normalise(text)
        if exclude is not None:
            norm = exclude.sub(" ", norm)
        return phrases.search(norm) is not None
