"""Paired tests between benchmarked checkpoints, from the scores the adapters keep.

The zero-shot adapter keeps each image's scores and the retrieval adapter each query's rank
(`<bench>/<column>/<adapter>/*.npz`). Two checkpoints scored on the same test images are
compared by a paired bootstrap over those images; with several seeds per arm, each resample
scores every seed's model on the same images and averages over seeds ("seeds pooled").
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from chexficient import findings
from downstream import metrics

METRICS = ("zero-shot AUROC", "CheXpert-5 AUROC", "rare AUROC", "retrieval R@5")
"""What `paired_test` compares: the mean zero-shot AUROCs (all, the five CheXpert competition
findings, the rare ones) and image-to-text Recall@5."""


def _load(path: str) -> dict[str, np.ndarray]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: run the bench with an out_dir")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def load_scores(bench_dir: str, column: str, split: str = "test") -> dict[str, np.ndarray]:
    """One bench column's kept arrays: zero-shot `scores`, `targets`, `names`, `ids` and the
    retrieval `i2t` ranks (with `i2t_ids`) when that adapter ran."""
    out = _load(os.path.join(bench_dir, column, "zero_shot", f"zero_shot_scores_{split}.npz"))
    ranks = os.path.join(bench_dir, column, "retrieval", f"retrieval_ranks_{split}.npz")
    if os.path.exists(ranks):
        kept = _load(ranks)
        out.update(i2t=kept["i2t"], i2t_ids=kept["ids"])
    return out


def _statistic(metric: str, seeds: Sequence[dict[str, np.ndarray]]) -> Callable[[np.ndarray], float]:
    """rows -> the metric averaged over the seeds' models, all scored on the same rows."""
    names = [str(n) for n in seeds[0]["names"]]
    subset = {"zero-shot AUROC": names,
              "CheXpert-5 AUROC": [n for n in names if n in findings.TOP5_FINDINGS],
              "rare AUROC": [n for n in names if n in findings.RARE_FINDINGS]}
    if metric == "retrieval R@5":
        return lambda rows: float(np.mean([np.mean(s["i2t"][rows] <= 5) for s in seeds]))
    columns = [names.index(n) for n in subset[metric]]

    def mean_auroc(rows: np.ndarray) -> float:
        values = [np.nanmean(metrics.column_aurocs(s["targets"][rows][:, columns],
                                                   s["scores"][rows][:, columns])) for s in seeds]
        return float(np.mean(values))
    return mean_auroc


_WHAT = {"ids": "examples", "i2t_ids": "examples", "names": "findings", "targets": "labels"}


def _aligned(a: Sequence[dict], b: Sequence[dict], key: str) -> None:
    reference = a[0][key]
    for s in (*a, *b):
        if not np.array_equal(s[key], reference):
            raise ValueError(f"paired test: the compared columns were not scored on the same "
                             f"{_WHAT[key]} ({key} differ): bench them on the same data, findings "
                             "and uncertain_as")


def adjust_family(tests: dict[str, dict[str, dict[str, float]]]) -> None:
    """Adds `p_holm` to every test of {comparison: {metric: test}}: Holm's adjustment over all
    of them, the family one table's marks come from. Per-test p < 0.05 over 8 tests marks at
    least one by chance in up to a third of tables where nothing differs; Holm's p does not."""
    flat = [t for by_metric in tests.values() for t in by_metric.values()]
    for t, p in zip(flat, metrics.holm([t["p"] for t in flat])):
        t["p_holm"] = float(p)


def paired_test(a: Sequence[dict[str, np.ndarray]], b: Sequence[dict[str, np.ndarray]], *,
                n_resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, float]]:
    """{metric: {diff, ci_low, ci_high, p}} of arm a against arm b (each a list of per-seed
    `load_scores` results on the same split), by paired bootstrap over the test examples."""
    for key in ("ids", "names", "targets"):  # the same images, findings and labels
        _aligned(a, b, key)
    out = {}
    for metric in METRICS:
        if metric == "retrieval R@5":
            if not all("i2t" in s for s in (*a, *b)):
                continue
            _aligned(a, b, "i2t_ids")
            n = len(a[0]["i2t"])
        else:
            n = len(a[0]["targets"])
        out[metric] = metrics.paired_bootstrap(_statistic(metric, a), _statistic(metric, b), n,
                                               n_resamples=n_resamples, seed=seed)
    return out
