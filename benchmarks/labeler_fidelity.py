"""The labeler's F1 per finding on its tuning cases and on its held-out sentences.

A definite positive (1) counts as present; uncertain (-1), negative and unmentioned as
absent, the convention of the real-report evaluation. The tuning cases are those of
tests/test_labeler.py (the rules were written against them); the held-out sentences of
tests/labeler_held_out.py were written before the rules and never used to tune them.

    python benchmarks/labeler_fidelity.py
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from labeler_held_out import HELD_OUT, f1_by_finding  # noqa: E402
from test_labeler import CASES, POSITIVES  # noqa: E402


def main() -> None:
    sets = {"tuning": ([r for r, _ in CASES], POSITIVES),
            "held_out": ([r for r, _ in HELD_OUT], [p for _, p in HELD_OUT])}
    scores = {name: f1_by_finding(*data) for name, data in sets.items()}
    names = sorted(set().union(*scores.values()))
    print(f"{'finding':<28}" + "".join(f"{s + ' F1':>14}" for s in scores))
    for finding in names:
        print(f"{finding:<28}" + "".join(
            f"{s[finding]:>14.3f}" if finding in s else f"{'-':>14}" for s in scores.values()))
    for name, s in scores.items():
        print(f"{name}: n={len(sets[name][0])} macro_f1={sum(s.values()) / len(s):.3f} "
              f"min_f1={min(s.values()):.3f} ({min(s, key=s.get)})")


if __name__ == "__main__":
    main()
