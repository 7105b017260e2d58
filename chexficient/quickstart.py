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
from absl import logging

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ARMS = ("full", "chexficient", "random", "learnability", "combined")
ARM_CONFIGS = {"full": "pretrain", "chexficient": "chexficient", "random": "offline",
               "learnability": "learnability", "combined": "curated"}
SIZES = {
    # The README's main command: minutes on a 2-core CPU.
    "default": dict(dataset="synthetic_cxr/tiny", preset="tiny,batch_size=64,epochs=8",
                    reference="tiny,batch_size=64,epochs=8",
                    bench="quick,seg_steps=60,rg_steps=100,n_resamples=200,reference=0"),
    # The CI test: the micro world, a couple of epochs, a trimmed benchmark.
    "ci": dict(dataset="synthetic_cxr/micro", preset="tiny,batch_size=64,epochs=2",
               reference="tiny,batch_size=32,epochs=2",
               bench="quick,max_train=128,max_eval=64,seg_steps=10,rg_steps=10,n_resamples=10,"
                     "reference=0"),
}
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


def load_config(name: str, arg: str) -> ml_collections.ConfigDict:
    """`configs/<name>.py:get_config(arg)`, as `--config=configs/<name>.py:arg` would load it."""
    spec = importlib.util.spec_from_file_location(f"configs.{name}", CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def arm_config(arm: str, size: dict, *, data_dir: str, seed: int, reference: str,
               subset_size: int = 0) -> ml_collections.ConfigDict:
    """The config of one arm: its configs/ file at the size's preset, on the size's dataset."""
    arg = size["preset"] + (f",budget={subset_size}" if arm == "random" else "")
    config = load_config(ARM_CONFIGS[arm], arg)
    config.data.name, config.data.data_dir, config.seed = size["dataset"], data_dir, seed
    if arm in ("learnability", "combined"):
        config.curator.loss.score = "learnability"
        config.reference.path = reference
    return config


def reference_config(size: dict, *, data_dir: str, seed: int) -> ml_collections.ConfigDict:
    """RHO-LOSS's irreducible-loss model: the same architecture trained on the held-out split."""
    config = load_config("pretrain", size["reference"])
    config.data.update(name=size["dataset"], data_dir=data_dir, train_split="validation")
    config.eval.every_steps = 0
    config.seed = seed
    return config


def train_once(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains unless workdir already holds a finished run; returns its summary."""
    from pretrain.train import train

    done = os.path.join(workdir, "summary.json")
    if os.path.exists(done):
        with open(done) as f:
            summary = json.load(f)
        if not summary.get("stopped_early"):
            logging.info("reusing finished run %s", workdir)
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


def plot_auroc_vs_compute(table: dict[str, dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for arm, row in table.items():
        ax.scatter(row["compute fraction"], row["zero-shot AUROC"], s=40)
        ax.annotate(arm, (row["compute fraction"], row["zero-shot AUROC"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("compute (fraction of full-data training)")
    ax.set_ylabel("zero-shot mean AUROC (test)")
    ax.set_xlim(0, 1.1)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def run_quickstart(out: str, *, size: str = "default", data_dir: str | None = None,
                   seed: int = 0) -> dict[str, dict]:
    """Runs every arm and the benchmark; writes quickstart.{json,md} and a plot into `out`."""
    from chexficient.data import registry
    from downstream.config import bench_config
    from downstream.suite import run_bench

    if size not in SIZES:
        raise ValueError(f"unknown quickstart size {size!r}; valid: {', '.join(SIZES)}")
    spec = SIZES[size]
    t0 = time.time()
    data_dir = registry.resolve_data_dir(data_dir)
    print(f"[quickstart] dataset {spec['dataset']} in {data_dir} (built once, then cached)")
    registry.prepare(spec["dataset"], data_dir)

    reference = os.path.join(out, "reference")
    print("[quickstart] reference model on the held-out split (for learnability)")
    train_once(reference_config(spec, data_dir=data_dir, seed=seed), reference)

    summaries: dict[str, dict] = {}
    for arm in ARMS:
        subset = 0
        if arm == "random":  # the same number of records the CheXficient arm trained on
            subset = int(round(summaries["chexficient"]["data_fraction"] *
                               summaries["chexficient"]["pool_size"]))
        print(f"[quickstart] arm {arm}")
        config = arm_config(arm, spec, data_dir=data_dir, seed=seed, reference=reference,
                            subset_size=subset)
        summaries[arm] = train_once(config, os.path.join(out, "arms", arm))

    print("[quickstart] benchmark suite on all arms")
    results = run_bench([os.path.join(out, "arms", arm) for arm in ARMS],
                        bench_config(spec["bench"]), os.path.join(out, "bench"))
    table = build_table(summaries, {arm: results["results"].get(arm, {}) for arm in ARMS})
    _write(out, table, time.time() - t0)
    return table


def _write(out: str, table: dict[str, dict], seconds: float) -> None:
    markdown = to_markdown(table)
    with open(os.path.join(out, "quickstart.md.tmp"), "w") as f:
        f.write(markdown + f"\nTotal wall time: {seconds:.0f} s\n")
    os.replace(os.path.join(out, "quickstart.md.tmp"), os.path.join(out, "quickstart.md"))
    with open(os.path.join(out, "quickstart.json.tmp"), "w") as f:
        json.dump({"table": table, "wall_time_s": seconds}, f, indent=2,
                  default=lambda v: None if isinstance(v, float) and not np.isfinite(v) else v)
    os.replace(os.path.join(out, "quickstart.json.tmp"), os.path.join(out, "quickstart.json"))
    plot_auroc_vs_compute(table, os.path.join(out, "auroc_vs_compute.png"))
    print(markdown)
    print(f"[quickstart] done in {seconds:.0f} s; table, plot and runs in {out}")
