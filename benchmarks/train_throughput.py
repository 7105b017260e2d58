"""Train-step throughput (pairs/s) and model FLOP utilisation of the pretrainer.

FLOPs per step come from XLA's cost analysis of the compiled step; the machine's peak is
measured in the same process by a large matmul in the step's dtype, so MFU = achieved /
measured peak.
Batches are random arrays already in memory: this measures the step, not the input
pipeline (benchmarks/pipeline_throughput.py measures that).

    python benchmarks/train_throughput.py --preset tiny --batch 128
    python benchmarks/train_throughput.py --preset tiny --batch 128 --open_clip_python /path/to/python

The defaults (`--stem patch --pool cls`) are open_clip's ViT, so the side-by-side figure
compares the same architecture; `--stem conv --pool map` is our training default.
The last line is `pairs_per_s=<float> mfu=<float>`, comparable across implementations.
`--token_alignment W` times the step with that loss term, and the plain step before it in the
same process: the term's cost as a ratio.
Like the `chexficient` command, the script restarts itself with huge pages for malloc
(chexficient/allocator.py) and the open_clip child inherits them, so both sides run with the
same allocator; `--glibc_defaults` measures both with glibc's defaults instead.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
from pathlib import Path

import jax

from chexficient import allocator
from chexficient.machine import matmul_peak_flops
from pretrain import standalone
from pretrain.config import base_config
from pretrain.flops import compiled_flops


def build_step(preset: str, batch: int, dtype: str, stem: str, pool: str = "cls",
               token_alignment: float = 0.0):
    """The jitted full-data train step of `preset` at `batch`, its initial state and config."""
    config = base_config(f"{preset},batch_size={batch},token_alignment={token_alignment}")
    config.model.text.vocab_size = 4000
    config.model.dtype = dtype
    config.model.image.update(stem=stem, pool=pool)
    built = standalone.build(config, pool_size=batch)
    return built.steps["full"], built.state, config


def measure(preset: str, batch: int, steps: int, dtype: str, stem: str, pool: str,
            token_alignment: float = 0.0) -> dict[str, float]:
    step, state, config = build_step(preset, batch, dtype, stem, pool, token_alignment)
    b = standalone.random_batch(config)
    compiled = step.lower(state, b).compile()
    flops = compiled_flops(compiled)
    _, state = standalone.seconds_per_call(compiled, state, b, 3, warmup=0)  # warm-up
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    seconds, state = standalone.seconds_per_call(compiled, state, b, steps, warmup=0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    peak = matmul_peak_flops(dtype=dtype)  # bfloat16 steps against the bfloat16 peak
    return {"pairs_per_s": batch / seconds, "step_ms": 1e3 * seconds, "flops_per_step": flops,
            "achieved_flops": flops / seconds, "peak_flops": peak, "mfu": flops / seconds / peak,
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "page_faults_per_step": faults / steps}


def open_clip_pairs_per_s(python: str, preset: str, batch: int, steps: int) -> float:
    """Runs benchmarks/open_clip_baseline.py under another interpreter (one with open_clip),
    in this process's environment (so with the same malloc tunables)."""
    script = Path(__file__).with_name("open_clip_baseline.py")
    out = subprocess.run([python, str(script), "--preset", preset, "--batch", str(batch),
                          "--steps", str(steps)], check=True, capture_output=True, text=True)
    last = out.stdout.strip().splitlines()[-1]
    return float(dict(kv.split("=") for kv in last.split())["pairs_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--stem", default="patch", choices=("patch", "conv"),
                        help="patch: the same architecture as open_clip's ViT (the comparison)")
    parser.add_argument("--pool", default="cls", choices=("cls", "mean", "map"),
                        help="cls: open_clip's pooling (the comparison); map: our default")
    parser.add_argument("--open_clip_python", default="", help="python with open_clip + torch")
    parser.add_argument("--token_alignment", type=float, default=0.0,
                        help="> 0: time the step with the token alignment term at this weight")
    parser.add_argument("--glibc_defaults", action="store_true",
                        help="both sides without huge pages for malloc (chexficient/allocator.py)")
    args = parser.parse_args()
    if not args.glibc_defaults:
        allocator.reexec_with_huge_pages()
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    print(f"devices: {jax.devices()}, GLIBC_TUNABLES={tunables!r}", file=sys.stderr)
    if args.token_alignment:
        plain = measure(args.preset, args.batch, args.steps, args.dtype, args.stem, args.pool)
        print(f"plain_pairs_per_s: {plain['pairs_per_s']:.4g}")
    r = measure(args.preset, args.batch, args.steps, args.dtype, args.stem, args.pool,
                args.token_alignment)
    for k, v in r.items():
        print(f"{k}: {v:.4g}")
    if args.token_alignment:
        print(f"time_vs_plain: {plain['pairs_per_s'] / r['pairs_per_s']:.3f} "
              f"flops_vs_plain: {r['flops_per_step'] / plain['flops_per_step']:.3f}")
    if args.open_clip_python:
        baseline = open_clip_pairs_per_s(args.open_clip_python, args.preset, args.batch,
                                         args.steps)
        print(f"open_clip_pairs_per_s: {baseline:.4g}")
        print(f"speedup_vs_open_clip: {r['pairs_per_s'] / baseline:.3f}")
    print(f"pairs_per_s={r['pairs_per_s']:.2f} mfu={r['mfu']:.4f}")


if __name__ == "__main__":
    main()
