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
from typing import TYPE_CHECKING

import ml_collections
import numpy as np

if TYPE_CHECKING:  # front-door module: the packages load when a command needs them
    from downstream.data import BenchData
    from downstream.encoders import Encoders

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ARMS = ("full", "chexficient", "random", "learnability", "combined", "supervised")
ARM_CONFIGS = {"full": "pretrain", "chexficient": "chexficient", "random": "offline",
               "learnability": "learnability", "combined": "curated", "supervised": "supervised"}
EQUAL = "full@equal-compute"
"""The full-data run read at the compute the CheXficient arm spent (its nearest milestone)."""
FLOOR = "random init"
"""The same architecture untrained: what every trained encoder must beat."""
ROWS = ("full", EQUAL, "chexficient", "random", "learnability", "combined", "supervised", FLOOR)
TABLE = (  # (column, where: an adapter of the bench results or the train summary, key)
    ("zero-shot AUROC", "zero_shot", "test/auroc/mean"),
    ("CheXpert-5 AUROC", "zero_shot", "test/auroc/mean_top5"),
    ("rare AUROC", "zero_shot", "test/auroc/mean_rare"),
    ("retrieval R@5", "retrieval", "test/i2t/R@5"),
    ("probe AUROC 1%", "linear_probe", "test/1%/auroc/mean"),
    ("data fraction", "summary", "data_fraction"),
    ("compute fraction", "summary", "compute_fraction"),
    ("wall time (s)", "summary", "wall_time_s"),
)
COMPARED = (("random", "random subset of the same size"), (EQUAL, "full data at equal compute"))
"""What the CheXficient arm is tested against (paired bootstrap over test images)."""
MARKS = {"random": "†", EQUAL: "‡"}
CURVES = "curves.json"
"""A seed's learning-curve points by the digest of their inputs: a resumed quickstart reuses them."""


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
               reference: str, subset_size: int = 0, flops: float = 0.0) -> ml_collections.ConfigDict:
    """The config of one arm: its configs/ file at the experiment's preset and dataset, with
    the arm's `spec.overrides` (nested config keys), keeping milestones (`spec.milestones` of
    full-data compute) for the equal-compute arm and the curves; the supervised reference
    trains for `flops`, the full-data arm's FLOPs."""
    arg = spec.preset + (f",budget={subset_size}" if arm == "random" else "")
    config = load_config(ARM_CONFIGS[arm], arg)
    config.lock()  # a locked ConfigDict's update refuses keys it does not have
    config.update(spec.get("overrides", {}).get(arm, {}))
    config.unlock()
    config.data.name, config.data.data_dir, config.seed = spec.dataset, data_dir, seed
    config.checkpoint.milestones = spec.get("milestones", 0.0)
    if arm in ("learnability", "combined"):
        config.curator.loss.score = "learnability"
        config.reference.path = reference
    if arm == "supervised":
        config.total_flops = flops
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
    from pretrain.train import absolute_paths, resolve

    with open(os.path.join(workdir, "config.json")) as f:
        saved = json.load(f)
    absolute_paths(saved)  # a run recorded before paths were made absolute
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


def equal_compute(full_dir: str, full_summary: dict, target: float) -> tuple[str, dict]:
    """The full-data run's milestone whose compute fraction is nearest `target`: its path
    (`.../milestones@STEP`) and a summary row (data fraction: the share of the pool seen)."""
    from chexficient import checkpoint

    found = checkpoint.milestones(full_dir)
    if not found:
        raise ValueError(f"{full_dir} kept no milestones: set the experiment's `milestones`")
    best = min(found, key=lambda m: abs(m["compute_fraction"] - target))
    with open(os.path.join(full_dir, "config.json")) as f:
        batch = json.load(f)["batch_size"]
    return best["path"], dict(
        compute_fraction=best["compute_fraction"], step=best["step"],
        data_fraction=min(1.0, best["step"] * batch / full_summary["pool_size"]),
        wall_time_s=full_summary["wall_time_s"] * best["step"] / full_summary["step"])


def build_table(summaries: dict[str, dict], bench: dict[str, dict]) -> dict[str, dict]:
    """{row: {column: value}} from the train summaries and the bench results (NaN if absent),
    plus `collapsed`: 1 where the run ended in the collapsed state (pretrain/collapse.py)."""
    table = {}
    for row, summary in summaries.items():
        sections = dict(bench.get(row, {}), summary=summary)
        table[row] = {column: float(sections.get(where, {}).get(key, math.nan))
                      for column, where, key in TABLE}
        table[row]["collapsed"] = float(summary.get("collapsed", False))
    return table


def collapsed_note(table: dict[str, dict], seeds: int) -> str:
    """A line naming the rows whose runs ended collapsed (empty if none): their metrics
    measure that state, not what their data taught."""
    rows = [f"{row} ({round(values['collapsed'] * seeds)} of {seeds} seeds)" if seeds > 1 else row
            for row, values in table.items() if values.get("collapsed", 0.0) > 0]
    if not rows:
        return ""
    return ("\nEnded in the collapsed state (training loss at log(rows), gradients near zero; "
            "docs/pretraining.md#warm-up-and-the-collapsed-state): " + ", ".join(rows) + ".\n")


def _cell(column: str, value: float, mark: str = "") -> str:
    if not math.isfinite(value):
        return "–"
    return (f"{value:.0f}" if column.startswith("wall") else f"{value:.3f}") + mark


def to_markdown(table: dict[str, dict], marks: dict[str, dict[str, str]] | None = None) -> str:
    """The table as markdown; `marks[row][column]` is appended to a cell (significance)."""
    columns = [column for column, _, _ in TABLE]
    lines = ["| arm | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row, values in table.items():
        row_marks = (marks or {}).get(row, {})
        cells = [_cell(c, values[c], row_marks.get(c, "")) for c in columns]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tests_markdown(tests: dict[str, dict[str, dict]]) -> str:
    """The paired tests as a table: difference, 95% CI and p per metric and comparison (a p
    of 0 as `<0.001`: below one over the resamples)."""
    from downstream.metrics import format_p

    lines = ["| CheXficient against | metric | difference | 95% CI | p |", "|---|---|---|---|---|"]
    for other, label in COMPARED:
        for metric, t in tests.get(other, {}).items():
            lines.append(f"| {label} | {metric} | {t['diff']:+.3f} | "
                         f"[{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] | "
                         f"{format_p(t['p'], t['n_resamples'])} |")
    return "\n".join(lines) + "\n"


def holm_note(tests: dict[str, dict[str, dict]], level: float = 0.05) -> str:
    """A line saying that the marks are per test and which differences stay significant over
    the whole family of tests (Holm's adjustment, `p_holm`)."""
    kept = [f"{metric} against {label}" for other, label in COMPARED
            for metric, t in tests.get(other, {}).items() if t["p_holm"] < level]
    n = sum(len(by_metric) for by_metric in tests.values())
    return (f"\nThe marks and p are per test, not corrected for the {n} tests; with Holm's "
            f"adjustment over them (`p_holm` in quickstart.json), p < {level} holds for "
            + (", ".join(kept) if kept else "none") + ".\n")


def significance_marks(tests: dict[str, dict[str, dict]], level: float = 0.05
                       ) -> dict[str, dict[str, str]]:
    """{'chexficient': {column: '†‡'}}: † where the CheXficient arm differs from the random
    subset, ‡ where it differs from full data at equal compute (paired test, p < level)."""
    marks: dict[str, str] = {}
    for other, _ in COMPARED:
        for metric, t in tests.get(other, {}).items():
            if t["p"] < level:
                marks[metric] = marks.get(metric, "") + MARKS[other]
    return {"chexficient": marks}


def learning_curves(runs: dict[str, str], bench: ml_collections.ConfigDict,
                    data_dir: str | None = None, cache: str | None = None) -> dict[str, list[dict]]:
    """Zero-shot AUROC (all findings and the CheXpert five) at every milestone of each run:
    {arm: [{compute_fraction, zero-shot AUROC, CheXpert-5 AUROC}]}, in compute order; the
    full-data run's points add image-to-text Recall@5 (how retrieval grows with compute).

    Every arm is scored on the first arm's dataset and test images, each at its own image size;
    an arm pretrained on another dataset is refused. With `cache` (a JSON file), a point whose
    inputs (weights, data, config: `suite.cell_digest`) are unchanged is reused, not recomputed.
    """
    from chexficient import checkpoint
    from chexficient.io import write_json_atomic
    from downstream import retrieval, suite, zero_shot
    from downstream.encoders import Encoders

    cfg = ml_collections.ConfigDict(bench.zero_shot.to_dict())
    cfg.update(seed=bench.seed, out_dir="")
    cfg.bootstrap.n_resamples = 0
    kept = _read_points(cache)
    datasets: dict[int, BenchData] = {}
    curves, points = {}, {}
    for arm, workdir in runs.items():
        curves[arm] = []
        for milestone in checkpoint.milestones(workdir):
            encoders = Encoders.from_checkpoint(milestone["path"], batch_size=bench.batch_size)
            data = _curve_data(arm, encoders, datasets, bench, data_dir)
            what = ml_collections.ConfigDict(dict(zero_shot=cfg.to_dict(), retrieval=arm == "full",
                                                  compute_fraction=milestone["compute_fraction"]))
            digest = suite.cell_digest("learning_curve", what, data, suite.encoder_digest(encoders))
            point = kept.get(digest)
            if point is None:
                res = zero_shot.run(encoders, data, cfg)
                point = {"compute_fraction": milestone["compute_fraction"],
                         "zero-shot AUROC": res["test/auroc/mean"],
                         "CheXpert-5 AUROC": res["test/auroc/mean_top5"]}
                if arm == "full":
                    point["retrieval R@5"] = retrieval.run(encoders, data, ml_collections.ConfigDict(
                        dict(ks=(5,), out_dir="")))["test/i2t/R@5"]
            curves[arm].append(point)
            points[digest] = point
        if cache:  # after each arm: an interrupted run keeps the arms it finished
            write_json_atomic(cache, points)
    return curves


def _read_points(cache: str | None) -> dict[str, dict]:
    """The curve points an earlier run kept in `cache`, by digest ({} if none or unreadable)."""
    try:
        with open(cache or "") as f:
            return dict(json.load(f))
    except (OSError, ValueError, TypeError):
        return {}


def _curve_data(arm: str, encoders: Encoders, datasets: dict[int, BenchData],
                bench: ml_collections.ConfigDict, data_dir: str | None) -> BenchData:
    """The test images an arm's milestone is scored on: the first arm's dataset at this
    encoder's image size (ids aligned across sizes); ValueError naming an arm pretrained on
    another dataset, whose curve would measure other images."""
    from downstream.data import BenchData

    name = encoders.config.data.name
    if datasets and name != next(iter(datasets.values())).name:
        first = next(iter(datasets.values())).name
        raise ValueError(f"learning curves: arm {arm!r} was pretrained on {name!r}, the first "
                         f"arm on {first!r}; curves on other test images are not comparable: "
                         "plot the arms of one dataset together")
    if encoders.image_size not in datasets:
        first = next(iter(datasets.values()), None)
        d = ml_collections.ConfigDict((first.config if first else encoders.config.data).to_dict())
        d.data_dir = data_dir or d.get("data_dir", "")
        datasets[encoders.image_size] = BenchData(
            d, image_size=encoders.image_size, eval_splits=("test",),
            max_examples=dict(bench.data.max_examples), seed=bench.seed)
    return datasets[encoders.image_size]


def plot_auroc_vs_compute(table: dict[str, dict], path: str,
                          spread: dict[str, dict] | None = None,
                          curves: dict[str, list[dict]] | None = None,
                          column: str = "CheXpert-5 AUROC") -> None:
    """`column` against compute fraction: a curve per arm through its milestones (when given)
    ending at the arm's final point (error bars: one population standard deviation over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for k, (row, values) in enumerate(table.items()):
        x, y = values["compute fraction"], values[column]
        if not (math.isfinite(x) and math.isfinite(y)):
            continue
        color = f"C{k}"
        points = (curves or {}).get(row, [])
        if points:
            ax.plot([p["compute_fraction"] for p in points], [p[column] for p in points],
                    "-", color=color, alpha=0.6, lw=1.2)
        err = spread[row][column] if spread else None
        ax.errorbar(x, y, yerr=err, fmt="o", ms=6, capsize=3, color=color, label=row)
    ax.set_xlabel("compute (fraction of full-data training)")
    ax.set_ylabel(f"{column} (test)")
    ax.set_xlim(-0.02, 1.1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def experiment_arms(spec: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The experiment's arms (`spec.arms`, default all), in ARMS order; full and chexficient
    always run (every comparison is against them)."""
    arms = tuple(spec.get("arms", ARMS))
    unknown = set(arms) - set(ARMS)
    if unknown:
        raise ValueError(f"unknown arms {sorted(unknown)}; valid: {', '.join(ARMS)}")
    return tuple(a for a in ARMS if a in arms or a in ("full", "chexficient"))


def run_arms(out: str, spec: ml_collections.ConfigDict, *, data_dir: str, seed: int) -> dict:
    """Trains every arm of one seed into `out` (and the reference model the loss-based arms
    score with); their summaries."""
    arms = experiment_arms(spec)
    reference = os.path.join(out, "reference")
    if {"learnability", "combined"} & set(arms):
        print(f"[quickstart] seed {seed}: reference model on the held-out split (for learnability)")
        train_once(reference_config(spec, data_dir=data_dir, seed=seed), reference)
    summaries: dict[str, dict] = {}
    for arm in arms:
        subset = 0
        if arm == "random":  # the same number of records the CheXficient arm trained on
            subset = int(round(summaries["chexficient"]["data_fraction"] *
                               summaries["chexficient"]["pool_size"]))
        print(f"[quickstart] seed {seed}: arm {arm}")
        config = arm_config(arm, spec, data_dir=data_dir, seed=seed, reference=reference,
                            subset_size=subset, flops=summaries["full"]["flops_spent"]
                            if arm == "supervised" else 0.0)
        summaries[arm] = train_once(config, os.path.join(out, "arms", arm))
    full = summaries["full"]
    for arm in arms[1:]:  # every compute fraction relative to the same full-data run
        summaries[arm] = dict(summaries[arm],
                              compute_fraction=summaries[arm]["flops_spent"] / full["flops_full_data"])
    return summaries


def run_seed(out: str, spec: ml_collections.ConfigDict, *, data_dir: str, seed: int
             ) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    """One seed: the arms, the equal-compute row, the bench and the curves; (table, curves)."""
    from downstream.config import bench_config
    from downstream.suite import run_bench

    summaries = run_arms(out, spec, data_dir=data_dir, seed=seed)
    arms, where = experiment_arms(spec), os.path.join(out, "arms")
    equal_path, summaries[EQUAL] = equal_compute(
        os.path.join(where, "full"), summaries["full"], summaries["chexficient"]["compute_fraction"])
    summaries[FLOOR] = dict(data_fraction=0.0, compute_fraction=0.0, wall_time_s=0.0)
    print(f"[quickstart] seed {seed}: benchmark suite on every arm")
    start = time.time()
    bench = bench_config(spec.bench)
    bench.reference = True
    paths = [os.path.join(where, arm) for arm in arms]
    results = run_bench(paths[:1] + [equal_path] + paths[1:], bench, os.path.join(out, "bench"),
                        names=["full", EQUAL, *arms[1:]], reference_name=FLOOR)["results"]
    rows = [row for row in ROWS if row in summaries]
    table = build_table({row: summaries[row] for row in rows},
                        {row: results.get(row, {}) for row in rows})
    print(f"[quickstart] seed {seed}: benchmark done in {time.time() - start:.0f} s; zero-shot "
          "learning curves over the milestones")
    start = time.time()
    curves = learning_curves({arm: os.path.join(where, arm) for arm in arms}, bench, data_dir,
                             cache=os.path.join(out, CURVES))
    print(f"[quickstart] seed {seed}: curves done in {time.time() - start:.0f} s")
    return table, curves


def load_experiment(experiment: str) -> ml_collections.ConfigDict:
    """The spec of `configs/experiments/<name>.py` for "name" or "name:arg" (`small:clean`)."""
    name, _, arg = experiment.partition(":")
    if name not in experiment_names():
        raise ValueError(f"unknown experiment {name!r}; valid: {', '.join(experiment_names())}")
    return load_config(f"experiments/{name}", arg or None)


def run_quickstart(out: str, *, experiment: str = "quickstart", data_dir: str | None = None,
                   ) -> dict[str, dict]:
    """Runs every arm of every seed of `configs/experiments/<experiment>.py`, the benchmark,
    the learning curves and the paired tests; `experiment` may carry an argument for its
    get_config, as in `small:clean`. Writes quickstart.{json,md} (mean, and spread over
    seeds) and a plot into `out`; returns the table {row: {column: mean}}."""
    from chexficient.data import registry

    spec = load_experiment(experiment)
    t0 = time.time()
    data_dir = registry.resolve_data_dir(data_dir)
    print(f"[quickstart] dataset {spec.dataset} in {data_dir} (built once, then cached)")
    registry.prepare(spec.dataset, data_dir)
    from chexficient import preflight
    print(f"[quickstart] {preflight.estimate(spec, data_dir=data_dir).line()}")
    tables, curves, bench_dirs = [], [], []
    for seed in spec.seeds:
        seed_out = out if len(spec.seeds) == 1 else os.path.join(out, f"seed{seed}")
        table, curve = run_seed(seed_out, spec, data_dir=data_dir, seed=seed)
        tables.append(table)
        curves.append(curve)
        bench_dirs.append(os.path.join(seed_out, "bench"))
    table, spread = aggregate(tables)
    tests = paired_tests(bench_dirs)
    curve = mean_curves(curves, spec.get("milestones", 0.0))
    _write(out, table, spread, tests, curve, time.time() - t0, len(tables))
    return table


def paired_tests(bench_dirs: list[str], n_resamples: int = 1000) -> dict[str, dict[str, dict]]:
    """{compared row: {metric: test}}: the CheXficient arm against each row of COMPARED, every
    seed's bench pooled (downstream/compare.py), each test with its Holm-adjusted `p_holm`
    over all of them."""
    from downstream import compare

    load = lambda column: [compare.load_scores(d, column) for d in bench_dirs]  # noqa: E731
    tests = {other: compare.paired_test(load("chexficient"), load(other), n_resamples=n_resamples)
             for other, _ in COMPARED}
    compare.adjust_family(tests)
    return tests


def mean_curves(curves: list[dict[str, list[dict]]], spacing: float) -> dict[str, list[dict]]:
    """Curves averaged over seeds at each milestone (multiple of `spacing` of full-data compute)
    every seed's run reached: a seed whose step crossed two milestones at once kept only the
    later, and a curated arm's seeds end at different computes, so points are matched by
    milestone, not by position."""
    def by_milestone(points: list[dict]) -> dict[int, dict]:
        return {math.floor(p["compute_fraction"] / spacing + 1e-9): p for p in points}

    out = {}
    for arm in curves[0]:
        seeds = [by_milestone(c[arm]) for c in curves]
        shared = sorted(set.intersection(*(set(s) for s in seeds)))
        out[arm] = [{k: float(np.mean([s[m][k] for s in seeds])) for k in seeds[0][m]}
                    for m in shared]
    return out


def aggregate(tables: list[dict[str, dict]]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Mean and population standard deviation (ddof 0) over seeds of every cell."""
    mean, spread = {}, {}
    for arm in tables[0]:
        mean[arm] = {c: float(np.mean([t[arm][c] for t in tables])) for c in tables[0][arm]}
        spread[arm] = {c: float(np.std([t[arm][c] for t in tables])) for c in tables[0][arm]}
    return mean, spread


def _write(out: str, table: dict[str, dict], spread: dict[str, dict], tests: dict,
           curves: dict[str, list[dict]], seconds: float, seeds: int) -> None:
    from chexficient.io import write_atomic, write_json_atomic

    markdown = to_markdown(table, significance_marks(tests)) + collapsed_note(table, seeds)
    if seeds > 1:
        markdown += f"\nMean over {seeds} seeds; population standard deviation (ddof 0):\n\n" + to_markdown(spread)
    markdown += ("\n† differs from the random subset, ‡ from full data at equal compute "
                 "(paired bootstrap over test images, seeds pooled, p < 0.05):\n\n"
                 + tests_markdown(tests) + holm_note(tests))
    write_atomic(os.path.join(out, "quickstart.md"), markdown + f"\nTotal wall time: {seconds:.0f} s\n")
    finite = lambda t: {a: {c: (v if np.isfinite(v) else None) for c, v in row.items()}  # noqa: E731
                        for a, row in t.items()}
    write_json_atomic(os.path.join(out, "quickstart.json"),
                      {"table": finite(table), "std": finite(spread), "seeds": seeds,
                       "paired_tests": tests, "curves": curves, "wall_time_s": seconds})
    plot_auroc_vs_compute(table, os.path.join(out, "auroc_vs_compute.png"),
                          spread if seeds > 1 else None, curves)
    print(markdown)
    print(f"[quickstart] done in {seconds:.0f} s; table, plot and runs in {out}")
