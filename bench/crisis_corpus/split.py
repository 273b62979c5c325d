"""Split the crisis corpus ONCE into a tuning part and a held-out part (issue 14).

Run once, when the corpus was written and before the detector was tuned:

    python bench/crisis_corpus/split.py

It reads all.tsv (label, kind, text), shuffles each label's rows with a fixed seed and puts
half of them in heldout.tsv, the rest in tuning.tsv. It refuses to run again once the parts
exist: the held-out part must stay unseen by whoever tunes the detector. Labels: `krise`
(clear signal), `mulig` (possible signal: a check-in), `ikke` (ordinary talk that looks alike).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 14  # the number; fixed so the split can be checked


def main() -> int:
    tuning, heldout = HERE / "tuning.tsv", HERE / "heldout.tsv"
    if tuning.exists() or heldout.exists():
        print("the corpus is already split; never split it again", file=sys.stderr)
        return 1
    lines = (HERE / "all.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], [ln for ln in lines[1:] if ln.strip()]
    rng = random.Random(SEED)
    parts: dict[str, list[str]] = {"tuning": [], "heldout": []}
    for label in ("krise", "mulig", "ikke"):
        mine = [r for r in rows if r.split("\t", 1)[0] == label]
        rng.shuffle(mine)
        half = len(mine) // 2
        parts["heldout"] += mine[:half]
        parts["tuning"] += mine[half:]
    for name, got in parts.items():
        (HERE / f"{name}.tsv").write_text("\n".join([header, *got]) + "\n", encoding="utf-8")
        print(f"{name}: {len(got)} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
