"""`chexficient quickstart --out=DIR`: test CheXficient's headline claim on this machine.

Pretrains `tiny` models on one synthetic pool with (a) all data, (b) CheXficient's rule and
schedule, (c) a random subset of (b)'s size, (d) learnability selection (learner minus a
reference model trained on held-out data, RHO-LOSS style) and (e) the combined score; runs
the benchmark suite on all five and writes a table and a plot of AUROC against compute.
Like `cli.py` it is a front door: it sees every package. Finished arms are reused, so an
interrupted quickstart resumes where it stopped.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from pathlib import Path

import ml_collections
import numpy as np

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ARMS = ("full", "chexficient", "random", "learnability", "combined")
ARM_CONFIGS = {"full": "pretrain", "chexficient": "chexficient", "random": "offline",
               "learnability": "learnability", "combined": "curated"}
TABLE = (  # (column, where: an adapter of the bench results or the train summary, key)
    ("zero-shot AUROC", "zero_shot", "test/auroc/mean"),
    ("rare AUROC", "zero_shot", "test/auroc/mean_rare"),
    ("retrieval R@5", "retrieval", "test/i2t/R@5"),
    ("probe AUROC 1%", "linear_probe", "test/1%/auroc/mean"),
    ("Dice", "segmentation", "test/100%/dice/mean"),
    ("report F1", "report_generation", "test/greedy/f1_all14_micro"),
    ("data fraction", "summary", "data_fraction"),
    ("compute fraction", "summary", "compute_fraction"),
    ("wall time (s)", "summary", "wall_time_s"),
)


def experiment_names() -> list[str]:
    """The experiments of configs/experiments/ (quickstart, ci, small, large)."""
    return sorted(p.stem for p in (CONFIGS / "experiments").glob("*.py"))


def load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """`configs/<name>.py:get_config(arg)`, as `--config=configs/<name>.py:arg` would load it."""
    if not (CONFIGS / f"{name}.py").exists():
        raise ValueError(f"no config file configs/{name}.py")
    spec = importlib.util.spec_from_file_location(f"configs.{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def arm_config(arm: str, spec: ml_collections.ConfigDict, *, data_dir: str, seed: int,
               reference: str, subset_size: int = 0) -> ml_collections.ConfigDict:
    """The config of one arm: its configs/ file at the experiment's preset and dataset."""
    arg = spec.preset + (f",budget={subset_size}" if arm == "random" else "")
    config = load_config(ARM_CONFIGS[arm], arg)
    config.data.name, config.data.data_dir, config.seed = spec.dataset, data_dir, seed
    if arm in ("learnability", "combined"):
        config.curator.loss.score = "learnability"
        config.reference.path = reference
    return config


def reference_config(spec: ml_collections.ConfigDict, *, data_dir: str, seed: int
                     ) -> ml_collections.ConfigDict:
    """RHO-LOSS's irreducible-loss model: the same architecture trained on the held-out split."""
    config = load_config("pretrain", spec.reference)
    config.data.update(name=spec.dataset, data_dir=data_dir, train_split="validation")
    config.eval.every_steps = 0
    config.seed = seed
    return config


def check_same_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Raises ValueError naming every key where the run in `workdir` (its config.json) differs
    from `config`, so that a run of another experiment is never taken for this one's."""
    from chexficient.checkpoint import config_diff
    from pretrain.train import resolve

    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    differences = config_diff(saved, json.loads(resolve(config)[0].to_json()),
                              names=("the run", "this experiment"))
    if differences:
        raise ValueError(
            f"{workdir} holds a run of another config:\n  " + "\n  ".join(differences)
            + f"\nUse another --out, or delete {workdir} to train it again.")


def train_once(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (or resumes) unless workdir already holds the finished run; returns its summary.
    A run of another config in workdir is an error (`check_same_config`), never reused."""
    from pretrain.train import train

    if os.path.exists(os.path.join(workdir, "config.json")):
        check_same_config(config, workdir)
    done = os.path.join(workdir, "summary.json")
    if os.path.exists(done):
        with open(done) as f:
            summary = json.load(f)
        if not summary.get("stopped_early"):
            print(f"[quickstart] reusing the finished run {workdir}")
            return summary
    return train(config, workdir)


def build_table(summaries: dict[str, dict], bench: dict[str, dict]) -> dict[str, dict]:
    """{arm: {column: value}} from the train summaries and the bench results (NaN if absent)."""
    table = {}
    for arm, summary in summaries.items():
        sections = dict(bench.get(arm, {}), summary=summary)
        table[arm] = {column: float(sections.get(where, {}).get(key, math.nan))
                      for column, where, key in TABLE}
    return table


def to_markdown(table: dict[str, dict]) -> str:
    columns = [column for column, _, _ in TABLE]
    lines = ["| arm | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for arm, row in table.items():
        cells = [f"{row[c]:.0f}" if c.startswith("wall") else f"{row[c]:.3f}" for c in columns]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_auroc_vs_compute(table: dict[str, dict], path: str,
                          spread: dict[str, dict] | None = None) -> None:
    """Zero-shot AUROC against compute fraction, one point per arm (error bars: one standard
    deviation over seeds, when `spread` is given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for k, (arm, row) in enumerate(table.items()):
        x, y = row["compute fraction"], row["zero-shot AUROC"]
        err = spread[arm]["zero-shot AUROC"] if spread else None
        ax.errorbar(x, y, yerr=err, fmt="o", ms=6, capsize=3)
        ax.annotate(arm, (x, y), fontsize=8, xytext=(5, 4 if k % 2 else -10),
                    textcoords="offset points")
    ax.set_xlabel("compute (fraction of full-data training)")
    ax.set_ylabel("zero-shot mean AUROC (test)")
    ax.set_xlim(0, 1.1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def run_arms(out: str, spec: ml_collections.ConfigDict, *, data_dir: str, seed: int) -> dict:
    """Trains the reference model and the five arms of one seed into `out`; their summaries."""
    reference = os.path.join(out, "reference")
    print(f"[quickstart] seed {seed}: reference model on the held-out split (for learnability)")
    train_once(reference_config(spec, data_dir=data_dir, seed=seed), reference)
    summaries: dict[str, dict] = {}
    for arm in ARMS:
        subset = 0
        if arm == "random":  # the same number of records the CheXficient arm trained on
            subset = int(round(summaries["chexficient"]["data_fraction"] *
                               summaries["chexficient"]["pool_size"]))
        print(f"[quickstart] seed {seed}: arm {arm}")
        config = arm_config(arm, spec, data_dir=data_dir, seed=seed, reference=reference,
                            subset_size=subset)
        summaries[arm] = train_once(config, os.path.join(out, "arms", arm))
    return summaries


def run_quickstart(out: str, *, experiment: str = "quickstart", data_dir: str | None = None,
                   ) -> dict[str, dict]:
    """Runs every arm of every seed of `configs/experiments/<experiment>.py` and the benchmark;
    `experiment` may carry an argument for its get_config, as in `small:clean`. Writes
    quickstart.{json,md} (mean, and spread over seeds) and a plot into `out`."""
    from chexficient.data import registry
    from downstream.config import bench_config
    from downstream.suite import run_bench

    name, _, arg = experiment.partition(":")
    if name not in experiment_names():
        raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(experiment_names())}")
    spec = load_config(f"experiments/{name}", arg or None)
    t0 = time.time()
    data_dir = registry.resolve_data_dir(data_dir)
    print(f"[quickstart] dataset {spec.dataset} in {data_dir} (built once, then cached)")
    registry.prepare(spec.dataset, data_dir)
    tables = []
    for seed in spec.seeds:
        seed_out = out if len(spec.seeds) == 1 else os.path.join(out, f"seed{seed}")
        summaries = run_arms(seed_out, spec, data_dir=data_dir, seed=seed)
        print(f"[quickstart] seed {seed}: benchmark suite on all arms")
        results = run_bench([os.path.join(seed_out, "arms", arm) for arm in ARMS],
                            bench_config(spec.bench), os.path.join(seed_out, "bench"))
        tables.append(build_table(summaries, {a: results["results"].get(a, {}) for a in ARMS}))
    table, spread = aggregate(tables)
    _write(out, table, spread, time.time() - t0, len(tables))
    return table


def aggregate(tables: list[dict[str, dict]]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Mean and standard deviation over seeds of every cell."""
    mean, spread = {}, {}
    for arm in tables[0]:
        mean[arm] = {c: float(np.mean([t[arm][c] for t in tables])) for c in tables[0][arm]}
        spread[arm] = {c: float(np.std([t[arm][c] for t in tables])) for c in tables[0][arm]}
    return mean, spread


def _write(out: str, table: dict[str, dict], spread: dict[str, dict], seconds: float,
           seeds: int) -> None:
    from chexficient.io import write_atomic, write_json_atomic

    markdown = to_markdown(table)
    if seeds > 1:
        markdown += f"\nMean over {seeds} seeds; standard deviation:\n\n" + to_markdown(spread)
    write_atomic(os.path.join(out, "quickstart.md"), markdown + f"\nTotal wall time: {seconds:.0f} s\n")
    finite = lambda t: {a: {c: (v if np.isfinite(v) else None) for c, v in row.items()}
                        for a, row in t.items()}
    write_json_atomic(os.path.join(out, "quickstart.json"),
                      {"table": finite(table), "std": finite(spread), "seeds": seeds,
                       "wall_time_s": seconds})
    plot_auroc_vs_compute(table, os.path.join(out, "auroc_vs_compute.png"),
                          spread if seeds > 1 else None)
    print(markdown)
    print(f"[quickstart] done in {seconds:.0f} s; table, plot and runs in {out}")
