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
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def pattern(self) -> re.Pattern[str] | None:
        if self._pattern is None and self.phrases:
            alts = "|".join(re.escape(normalise(p)) for p in
                            sorted(self.phrases, key=len, reverse=True) if normalise(p))
            object.__setattr__(self, "_pattern", re.compile(rf"(?<!\w)(?:{alts})(?!\w)"))
        return self._pattern

    def matches(self, text: str) -> bool:
        pat = self.pattern()
        if pat is None or len(text) > 5000:
            return False
        norm = normalise(text)
        for ex in self.exclude:
            n = normalise(ex)
            if n:
                norm = re.sub(rf"(?<!\w){re.escape(n)}(?!\w)", " ", norm)
        return pat.search(norm) is not None
