"""Seconds to load each milestone of a run (`chexficient.checkpoint.load_model`), as the
quickstart's learning curves and the benchmark suite load them.

Loads every milestone of --run twice, alternating, in one process: as `load_model` does (the
model's architecture traced once per process, the parameters restored per checkpoint) and,
as the baseline, with the architecture traced again for each checkpoint (its cache cleared
before every load). Prints the mean seconds per load of each and their ratio.

    python benchmarks/checkpoint_load.py --run runs/quickstart/arms/full [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

from chexficient import checkpoint


def seconds_per_load(paths: list[str], retrace: bool) -> float:
    """Mean seconds of `load_model` over `paths`; `retrace` clears the architecture cache first."""
    start = time.perf_counter()
    for path in paths:
        if retrace:
            checkpoint._abstract_model.cache_clear()
        checkpoint.load_model(path)
    return (time.perf_counter() - start) / len(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a run directory with milestones/")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    paths = [m["path"] for m in checkpoint.milestones(args.run)]
    if not paths:
        raise SystemExit(f"{args.run} has no milestones (train with --config.checkpoint.milestones)")
    checkpoint.load_model(paths[0])  # imports and the first trace, out of both timings
    cached, retraced = [], []
    for _ in range(args.rounds):
        retraced.append(seconds_per_load(paths, retrace=True))
        cached.append(seconds_per_load(paths, retrace=False))
    print(f"milestones={len(paths)}")
    print(f"load_s={min(cached):.3f}")
    print(f"load_retraced_s={min(retraced):.3f}")
    print(f"ratio={min(retraced) / min(cached):.2f}")


if __name__ == "__main__":
    main()
