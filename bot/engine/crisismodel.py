"""A small learned second opinion for the crisis reader: naive Bayes over letter groups. Pure.

The rules in krise.yaml decide first. Only when no rule matched does this model look at the
message; when its score reaches its threshold, the message gets the gentle check-in (the
`possible` tier), never the crisis flow at once. Letter groups (three to five letters of the
lower-cased message, word edges included) and whole words carry over to spellings, dialect
and wordings the rules have never seen («ska ta livt mitt», «orkr ikke»).

The weights are trained by `bench/crisis_model.py --write` on the tuning side of the corpus
only, and written to a plain text file (flows/krise_modell.tsv) that krise.yaml names under
`model`; the threshold in that file was chosen by cross-validation on the tuning side. The
file is read when the flows are loaded; scoring is arithmetic on a dictionary: the same
message always gets the same score.

Score: the mean, over the message's letter groups and words, of each one's log-odds (crisis
against ordinary talk), plus the prior; letter groups the model never saw count as zero.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

FORMAT = "veivis-krise-modell 1"


def features(text: str, chars: tuple[int, int], words: int) -> Counter[str]:
    """Letter groups (prefixed «c») and words or word pairs (prefixed «w») of a text that is
    already lower-cased."""
    low = " ".join(text.split())
    padded = f" {low} "
    out: Counter[str] = Counter()
    lo, hi = chars
    for n in range(lo, hi + 1):
        for i in range(len(padded) - n + 1):
            out["c" + padded[i:i + n]] += 1
    toks = ["".join(ch for ch in w if ch.isalnum()) or w for w in low.split()]
    for n in range(1, words + 1):
        for i in range(len(toks) - n + 1):
            out["w" + " ".join(toks[i:i + n])] += 1
    return out


@dataclass(frozen=True)
class NgramModel:
    weights: Mapping[str, float]
    prior: float
    threshold: float
    chars: tuple[int, int] = (3, 5)
    words: int = 1
    path: str = ""
    note: str = ""  # how it was trained (from the file's header)

    def score(self, text: str) -> float:
        x = features(text, self.chars, self.words)
        n = sum(x.values()) or 1
        return (self.prior + sum(self.weights.get(f, 0.0) * c for f, c in x.items())) / n

    def says(self, text: str) -> bool:
        return bool(text.strip()) and self.score(text) >= self.threshold

    def reasons(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        """The letter groups and words that pulled the score up most (for krise test)."""
        x = features(text, self.chars, self.words)
        got = sorted(((f[1:], self.weights.get(f, 0.0) * c) for f, c in x.items()),
                     key=lambda p: (-p[1], p[0]))
        return [(f, w) for f, w in got[:k] if w > 0]


def parse(text: str, path: str) -> tuple[NgramModel | None, list[tuple[int, str]]]:
    """A model file: a header line, `key<TAB>value` settings, then `feature<TAB>weight`.
    Returns the model, or None and (line, Norwegian message) for each problem."""
    problems: list[tuple[int, str]] = []
    lines = text.splitlines()
    if not lines or lines[0].strip() != FORMAT:
        return None, [(1, f"første linje må være «{FORMAT}»")]
    settings: dict[str, str] = {}
    weights: dict[str, float] = {}
    notes: list[str] = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if line.startswith("#"):
            notes.append(line[1:].strip())
            continue
        key, sep, value = line.rpartition("\t")
        if not sep:
            problems.append((n, "hver linje må ha et navn, et tabulatortegn og et tall"))
            continue
        if key.startswith("=") and key[1:] in ("prior", "threshold", "chars", "words"):
            settings[key[1:]] = value
            continue
        try:
            w = float(value)
        except ValueError:
            problems.append((n, f"«{value}» er ikke et tall"))
            continue
        if w != w or abs(w) > 1e6:  # NaN or absurd
            problems.append((n, f"«{value}» er ikke en gyldig vekt"))
            continue
        weights[key] = w
    try:
        prior = float(settings["prior"])
        threshold = float(settings["threshold"])
        lo, hi = (int(v) for v in settings.get("chars", "3 5").split())
        words = int(settings.get("words", "1"))
    except (KeyError, ValueError):
        problems.append((1, "fila må ha =prior, =threshold, =chars og =words med tall"))
        return None, problems
    if not (1 <= lo <= hi <= 8 and 0 <= words <= 3):
        problems.append((1, "=chars må være to tall fra 1 til 8 og =words fra 0 til 3"))
    if problems:
        return None, problems
    return NgramModel(weights, prior, threshold, (lo, hi), words, path, " ".join(notes)), []
