"""Zero-shot classification, the CheXzero protocol: "{finding}" vs "no {finding}" per finding.

Each finding's positive and negative prompts (an ensemble of templates, embeddings averaged)
are scored against every image; a 2-way softmax over the two similarities is the finding's
probability. Reports AUROC per finding, the mean, the mean over rare findings, and bootstrap CIs.
"""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections
import numpy as np

from downstream import metrics
from downstream.data import BenchData, finding_names
from downstream.encoders import Encoders


PROMPTS: tuple[tuple[str, str], ...] = (("{Finding}.", "No {finding}."),)
"""The bench's (positive, negative) prompt templates: one pair, cased like the reports."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prompt_embeddings(encoders: Encoders, names: Sequence[str],
                      prompts: Sequence[tuple[str, str]]) -> np.ndarray:
    """[F, 2, D] unit embeddings of each finding's (positive, negative) prompt ensemble.

    Templates name the finding as `{finding}` ("pleural effusion") or `{Finding}` ("Pleural
    effusion"): the tokenizer is case-sensitive, so prompts should be cased like the reports.
    """
    texts = [template.format(finding=name.lower(), Finding=name.capitalize())
             for name in names for pair in prompts for template in pair]
    emb = encoders.embed_texts(texts).reshape(len(names), len(prompts), 2, -1)
    return _unit(emb.mean(axis=1))


def probabilities(image_emb: np.ndarray, prompt_emb: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """[n, F] softmax probability of the positive prompt over (positive, negative) similarities."""
    sims = np.einsum("nd,fkd->nfk", image_emb, prompt_emb) * scale
    return 1.0 / (1.0 + np.exp(sims[..., 1] - sims[..., 0]))


def auroc_summary(y: np.ndarray, scores: np.ndarray, names: Sequence[str], *,
                  n_resamples: int, seed: int, level: float = 0.95) -> dict[str, float]:
    """AUROC per finding and its means (all, rare, top 5), each with its bootstrap CI."""
    stat = lambda rows: metrics.finding_aurocs(y[rows], scores[rows], names)  # noqa: E731
    point = stat(np.arange(len(y)))
    low, high = metrics.bootstrap_ci(stat, len(y), n_resamples=n_resamples, seed=seed, level=level)
    n_defined = np.sum(~np.isnan(point[:len(names)]))
    out = {"n_images": float(len(y)), "n_findings_defined": float(n_defined)}
    for key, p, lo, hi in zip(metrics.finding_auroc_keys(names), point, low, high):
        out.update({key: float(p), f"{key}/ci_low": float(lo), f"{key}/ci_high": float(hi)})
    return out


def run(encoders: Encoders, data: BenchData, config: ml_collections.ConfigDict) -> dict[str, float]:
    """Zero-shot AUROCs on every eval split, keys `<split>/auroc/...`."""
    data.require("zero_shot", ("image", "labels"), data.eval_splits)
    names = finding_names(config.findings)
    prompt_emb = prompt_embeddings(encoders, names, [tuple(p) for p in config.prompts])
    out = {}
    for split_name in data.eval_splits:
        split = data.split(split_name)
        scores = probabilities(encoders.embed_images(split.images), prompt_emb)
        y = split.targets(names, config.uncertain_as)
        summary = auroc_summary(y, scores, names, n_resamples=config.bootstrap.n_resamples,
                                seed=config.seed, level=config.bootstrap.level)
        out.update({f"{split_name}/{k}": v for k, v in summary.items()})
    return out
