"""Whole training runs against their bare train steps: pairs/s of each, in one process.

For the full-data arm (configs/pretrain.py) and the CheXficient arm (configs/chexficient.py)
at --preset and --batch on --dataset, the script runs `pretrain.train.train` for --steps
steps (0: the preset's epochs) with evaluation off and the preset's periodic checkpoints on
(`--checkpoint_every` sets another interval; 0: only the phases' own saves), twice: first on
an empty persistent compilation cache (`cold`: a fresh machine, every program compiled), then
again (`warm`: as every later run of the `chexficient` command, programs read back from its
cache). Around the warm run it times the same jitted step functions of the same config on one
batch already in memory (pretrain/standalone.py), before and after; the bare figures are the
mean of the two (the machine's speed drifts by several percent). Per arm and run it prints:

- `bare_pairs_per_s`: pairs of the run's steps over the bare steps' time; the CheXficient
  arm's curate and subset steps are timed separately and weighted by their counts in the run;
- `run_pairs_per_s`: the run's pairs over its training time (`perf/train_s` of its
  metrics.jsonl: tracing, compilation or cache reads and the input pipeline included,
  evaluation and the blocking part of checkpoint saves left out; an asynchronous save's writing
  beside the steps counts), and `run_median_pairs_per_s`, the median
  `perf/pairs_per_s` between metric writes (the steady state);
- `ratio`: run_pairs_per_s over bare_pairs_per_s (goal >= 0.90), and `wall_ratio`: the run's
  pairs over its whole wall time (summary.json `wall_time_s`: setup, compilation, checkpoint
  saves and all) over bare_pairs_per_s;
- `step_compile_s` (summary.json): of the run's wall time, the seconds spent tracing, lowering
  and compiling its step programs (or reading them from the cache);

and for the CheXficient arm its compute fraction (summary.json) against the fraction of the
full arm's wall time (summary.json `wall_time_s`: from setup to the last step; the plots and
the curation report written after it are not counted) and of its training time that it took (goal: within 0.05). Like the `chexficient`
command, the script restarts itself with huge pages for malloc (chexficient/allocator.py).

    python benchmarks/run_throughput.py [--preset tiny] [--batch 64] [--steps 0]
        [--dataset synthetic_cxr/tiny] [--data_dir DIR] [--bare_steps 20] [--checkpoint_every N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

import ml_collections

from chexficient import allocator, compilation_cache
from chexficient.data import registry
from chexficient.quickstart import load_config
from chexficient.run_log import read_metrics
from pretrain import standalone
from pretrain.steps import step_input, step_output
from pretrain.train import resolve, train

ARMS = {"full": "pretrain", "chexficient": "chexficient"}
"""Arm -> its config file in configs/."""


def arm_config(arm: str, args: argparse.Namespace, data_dir: str) -> ml_collections.ConfigDict:
    """The arm's config at the preset and batch, on the dataset, for --steps steps, with
    evaluation and the progress bar off (the preset's periodic checkpoints kept)."""
    config = load_config(ARMS[arm], f"{args.preset},batch_size={args.batch}")
    config.data.update(name=args.dataset, data_dir=data_dir)
    config.total_steps = args.steps
    config.eval.every_steps = 0
    config.progress = False
    return config


def whole_run(config: ml_collections.ConfigDict) -> dict[str, float]:
    """Trains `config` in a temporary workdir: its summary, its training seconds and the
    median pairs/s of its metrics."""
    with tempfile.TemporaryDirectory() as workdir:
        summary = train(config, workdir)
        metrics = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    return dict(summary, train_s=float(metrics["perf/train_s"][1][-1]),
                run_median_pairs_per_s=statistics.median(metrics["perf/pairs_per_s"][1]))


def bare_steps(config: ml_collections.ConfigDict, total_steps: int, bare: int) -> dict[str, float]:
    """Pairs/s of the run's steps on one batch in memory: each phase's step timed for `bare`
    calls, weighted by the phase's steps in a run of `total_steps`."""
    config, _, parts, _ = resolve(config)
    pool = sum(part.size for part in parts)
    built = standalone.build(config, pool)
    first = built.plan.phases()[0]
    counts = {first.name: total_steps}
    if first.name == "curate":  # then the subset phase, on the full step
        counts = {"curate": min(first.end_step, total_steps),
                  "subset": total_steps - min(first.end_step, total_steps)}
    state, seconds, pairs, out = built.state, 0.0, 0, {}
    for name, count in counts.items():
        rows = built.plan.phase_batch(name)
        batch = standalone.random_batch(config, rows=rows)
        given = step_input(name, state)  # as the trainer gives it
        compiled = built.steps[name].lower(given, batch).compile()
        per_step, after = standalone.seconds_per_call(compiled, given, batch, bare)
        state = step_output(name, state, after)
        seconds += count * per_step
        pairs += count * rows
        out.update({f"{name}_steps": count, f"{name}_step_ms": 1e3 * per_step})
    return dict(out, pairs=pairs, bare_pairs_per_s=pairs / seconds)


def measure(arm: str, args: argparse.Namespace, data_dir: str) -> dict[str, dict[str, float]]:
    """The arm's whole run on a cold and then a warm compilation cache, then its bare steps,
    in this process."""
    config = arm_config(arm, args, data_dir)
    if args.checkpoint_every >= 0:
        config.checkpoint.every_steps = args.checkpoint_every
    runs = {"cold": whole_run(config)}
    # Bare steps around the warm run, averaged: the machine's speed drifts by several percent.
    before = bare_steps(config, runs["cold"]["step"], args.bare_steps)
    runs["warm"] = whole_run(config)
    after = bare_steps(config, runs["warm"]["step"], args.bare_steps)
    bare = {k: (before[k] + after[k]) / 2 for k in before}
    out = {}
    for cache, run in runs.items():
        rates = dict(run_pairs_per_s=bare["pairs"] / run["train_s"],
                     wall_pairs_per_s=bare["pairs"] / run["wall_time_s"])
        out[cache] = dict(run, **bare, **rates,
                          ratio=rates["run_pairs_per_s"] / bare["bare_pairs_per_s"],
                          wall_ratio=rates["wall_pairs_per_s"] / bare["bare_pairs_per_s"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=0, help="0: the preset's epochs")
    parser.add_argument("--dataset", default="synthetic_cxr/tiny")
    parser.add_argument("--data_dir", default="", help="default: $CHEXFICIENT_DATA_DIR or the cache")
    parser.add_argument("--bare_steps", type=int, default=20)
    parser.add_argument("--checkpoint_every", type=int, default=-1,
                        help="periodic checkpoint interval in steps; -1: the preset's, 0: none")
    args = parser.parse_args()
    allocator.reexec_with_huge_pages()
    data_dir = registry.resolve_data_dir(args.data_dir or None)
    registry.prepare(args.dataset, data_dir)
    with tempfile.TemporaryDirectory() as cache:
        compilation_cache.enable(cache)
        results = {arm: measure(arm, args, data_dir) for arm in ARMS}
    keys = ("step", "bare_pairs_per_s", "run_pairs_per_s", "run_median_pairs_per_s", "ratio",
            "wall_ratio", "wall_time_s", "step_compile_s", "train_s", "full_step_ms", "curate_steps",
            "curate_step_ms", "subset_steps", "subset_step_ms",
            "compute_fraction", "wall_fraction", "train_fraction")
    for cache in ("cold", "warm"):
        full, curated = results["full"][cache], results["chexficient"][cache]
        curated["wall_fraction"] = curated["wall_time_s"] / full["wall_time_s"]
        curated["train_fraction"] = curated["train_s"] / full["train_s"]
        for arm in ARMS:
            r = results[arm][cache]
            print(f"{arm} ({cache}): " + " ".join(f"{k}={r[k]:.4g}" for k in keys if k in r))
        print(f"chexficient ({cache}) compute_fraction {curated['compute_fraction']:.3f} against "
              f"wall_fraction {curated['wall_fraction']:.3f} (gap "
              f"{curated['wall_fraction'] - curated['compute_fraction']:+.3f}) and train_fraction "
              f"{curated['train_fraction']:.3f} (goal: within 0.05)")
    print(json.dumps({arm: {cache: {k: r[k] for k in keys if k in r} for cache, r in by.items()}
                      for arm, by in results.items()}))


if __name__ == "__main__":
    main()
