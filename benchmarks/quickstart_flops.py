"""The quickstart's whole compute in FLOPs: training plus the benchmark suite and learning curves.

Training FLOPs are each arm's and the reference model's `flops_spent` (XLA's count of each
compiled step times its calls, summary.json). Evaluation FLOPs are counted here: the script
reruns the seed's benchmark suite and learning curves over the finished arms in --out (no arm
is trained again: `train_once` reuses them) with every forward pass of the bench's encoders
(image tower, text tower, supervised head) charged XLA's FLOP count of its compiled batch.
Prints the three sums in TFLOP and the evaluation's wall time.

    chexficient quickstart --out=runs/quickstart          # first, once
    python benchmarks/quickstart_flops.py --out=runs/quickstart [--experiment quickstart]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time
from typing import Callable

import jax

from chexficient import allocator, compilation_cache
from chexficient.data import registry
from chexficient.quickstart import load_experiment, run_seed
from downstream import encoders
from pretrain.flops import compiled_flops


class CountedForward:
    """A jitted encoder function that adds XLA's FLOPs of each call to `spent` (one cost
    analysis per graph and input shape)."""

    def __init__(self, jitted: Callable):
        self.jitted, self.spent, self._per_call = jitted, 0.0, {}

    def __call__(self, state, *arrays, **static):
        key = (tuple(sorted(static.items())), tuple((a.shape, a.dtype) for a in arrays))
        if key not in self._per_call:
            self._per_call[key] = compiled_flops(self.jitted.lower(state, *arrays, **static).compile())
        self.spent += self._per_call[key]
        return self.jitted(state, *arrays, **static)


def training_flops(out: str) -> float:
    """FLOPs the finished runs under `out` spent in training (arms and reference model)."""
    total = 0.0
    for path in glob.glob(os.path.join(out, "arms", "*", "summary.json")) + glob.glob(
            os.path.join(out, "reference", "summary.json")):
        with open(path) as f:
            total += json.load(f)["flops_spent"]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="a finished one-seed quickstart's --out")
    parser.add_argument("--experiment", default="quickstart")
    parser.add_argument("--data_dir", default="")
    args = parser.parse_args()
    allocator.reexec_with_huge_pages()
    compilation_cache.enable()
    spec = load_experiment(args.experiment)
    if len(spec.seeds) != 1:
        raise ValueError(f"--experiment {args.experiment} has {len(spec.seeds)} seeds; pass seeds=1")
    data_dir = registry.resolve_data_dir(args.data_dir or None)
    counted = {name: CountedForward(getattr(encoders, name))
               for name in ("_image_outputs", "_text_embed", "_classify")}
    for name, fn in counted.items():
        setattr(encoders, name, fn)
    start = time.time()
    run_seed(args.out, spec, data_dir=data_dir, seed=spec.seeds[0])
    seconds = time.time() - start
    train, evaluation = training_flops(args.out), sum(fn.spent for fn in counted.values())
    print(f"training {train / 1e12:.2f} TFLOP; benchmark suite and learning curves "
          f"{evaluation / 1e12:.2f} TFLOP ({seconds:.0f} s); total {(train + evaluation) / 1e12:.2f} TFLOP "
          f"on {jax.devices()[0].platform}")


if __name__ == "__main__":
    main()
