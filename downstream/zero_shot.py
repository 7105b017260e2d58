"""Zero-shot classification, the CheXzero protocol: a positive and a negative prompt per finding.

Each finding's positive and negative prompts (ensembles, embeddings averaged) are scored
against every image; a 2-way softmax over the two similarities is the finding's probability.
By default the prompts name each finding as reports do (`RADIOLOGY_PROMPTS`: "The heart is
enlarged." / "Heart size is normal."), since the label names themselves ("Enlarged
Cardiomediastinum") are rarely written in a report; explicit templates ("{Finding}." / "No
{finding}.", CheXzero's) apply to every label instead. A supervised reference answers with its
own head. Reports AUROC per finding, the mean, the mean over rare findings and over the
CheXpert five, with bootstrap CIs, and keeps the scores for paired tests between checkpoints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import ml_collections
import numpy as np

from chexficient.findings import FINDINGS
from chexficient.io import save_arrays
from downstream import metrics
from downstream.data import BenchData, finding_names, warn_one_class
from downstream.encoders import Encoders


PROMPTS: tuple[tuple[str, str], ...] = (("{Finding}.", "No {finding}."),)
"""(positive, negative) templates for any label name: CheXzero's pair, cased like the reports."""

RADIOLOGY_PROMPTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "Enlarged Cardiomediastinum": (
        ("The mediastinum is widened.", "Widened mediastinum.", "Enlarged cardiomediastinal silhouette."),
        ("The mediastinum is not widened.", "No mediastinal widening.")),
    "Cardiomegaly": (
        ("Cardiomegaly.", "The heart is enlarged.", "Moderate cardiomegaly."),
        ("No cardiomegaly.", "Heart size is normal.", "The heart is not enlarged.")),
    "Lung Opacity": (
        ("Patchy opacity.", "There is an opacity in the right lower lobe.", "Ill-defined opacities."),
        ("No focal opacity.",)),
    "Lung Lesion": (
        ("There is a pulmonary nodule.", "Lung mass.", "A 2 cm nodule in the right upper lobe."),
        ("No suspicious pulmonary nodule.", "No pulmonary nodules or masses.")),
    "Edema": (
        ("Pulmonary edema.", "Moderate pulmonary edema.", "Interstitial edema."),
        ("No pulmonary edema.",)),
    "Consolidation": (
        ("Consolidation.", "Dense consolidation in the left lower lobe.", "Focal consolidation."),
        ("No focal consolidation.", "No consolidation.")),
    "Pneumonia": (
        ("Pneumonia.", "Findings are consistent with pneumonia.", "Right lower lobe pneumonia."),
        ("No evidence of pneumonia.", "No pneumonia.")),
    "Atelectasis": (
        ("Atelectasis.", "Bibasilar atelectasis.", "Plate-like atelectasis."),
        ("No atelectasis.",)),
    "Pneumothorax": (
        ("Pneumothorax.", "There is a small right pneumothorax.", "Large left pneumothorax."),
        ("No pneumothorax.",)),
    "Pleural Effusion": (
        ("Pleural effusion.", "Small bilateral pleural effusions.", "Moderate right pleural effusion."),
        ("No pleural effusion.", "No effusion.")),
    "Pleural Other": (
        ("Pleural thickening.", "Right pleural thickening.", "Left apical pleural thickening."),
        ("No pleural thickening.",)),
    "Fracture": (
        ("Rib fracture.", "Acute fracture of the right rib.", "Displaced rib fracture."),
        ("No acute fracture.", "No rib fracture.")),
    "Support Devices": (
        ("Endotracheal tube.", "Central venous catheter with tip in the SVC.",
         "Nasogastric tube in the stomach.", "Pacemaker."),
        ("No lines or tubes.", "No support devices.")),
}
"""The bench's default prompts: each finding as radiology reports word it, stated and negated.

Written once from common report phrasing (the CheXpert labeler's mention and negation
phrases), never tuned on a test split."""


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _lower_keeping_acronyms(name: str) -> str:
    """`name` lower-cased but for its acronyms (words with two or more capitals, e.g. ARDS,
    COVID-19), which a case-sensitive tokenizer must see as written."""
    return re.sub(r"\S+", lambda m: m[0] if sum(c.isupper() for c in m[0]) > 1 else m[0].lower(),
                  name)


def finding_prompts(name: str, templates: Sequence[tuple[str, str]] | None = None
                    ) -> tuple[list[str], list[str]]:
    """(positive texts, negative texts) of one finding: `templates` formatted with its name
    (`{finding}` "pleural effusion", `{Finding}` "Pleural effusion"; acronyms such as ARDS stay
    as written: the tokenizer is case-sensitive) or, without templates, its RADIOLOGY_PROMPTS
    (the name matched in any case; else CheXzero's pair)."""
    known = {finding.lower(): prompts for finding, prompts in RADIOLOGY_PROMPTS.items()}
    if not templates and name.lower() in known:
        positives, negatives = known[name.lower()]
        return list(positives), list(negatives)
    lower = _lower_keeping_acronyms(name)
    fill = lambda t: t.format(finding=lower, Finding=lower[:1].upper() + lower[1:])  # noqa: E731
    pairs = templates or PROMPTS
    return [fill(p) for p, _ in pairs], [fill(n) for _, n in pairs]


def prompt_embeddings(encoders: Encoders, names: Sequence[str],
                      prompts: Sequence[tuple[str, str]] | None = None) -> np.ndarray:
    """[F, 2, D] unit embeddings of each finding's (positive, negative) prompt ensemble: the
    mean of the unit embeddings of its texts (`finding_prompts`), normalised again."""
    groups = [text for name in names for text in finding_prompts(name, prompts)]
    emb = _unit(encoders.embed_texts([t for group in groups for t in group]))  # one pass
    ends = np.cumsum([len(group) for group in groups])
    means = [_unit(emb[end - len(group):end].mean(0)) for group, end in zip(groups, ends)]
    return np.asarray(means, np.float32).reshape(len(names), 2, -1)


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


def scores(encoders: Encoders, images: np.ndarray, names: Sequence[str],
           prompts: Sequence[tuple[str, str]] | None = None) -> np.ndarray:
    """[n, F] probability of each named finding per image: prompts, or a supervised head."""
    if encoders.supervised:
        return encoders.classify(images)[:, [FINDINGS.index(n) for n in names]]
    return probabilities(encoders.embed_images(images), prompt_embeddings(encoders, names, prompts))


def run(encoders: Encoders, data: BenchData, config: ml_collections.ConfigDict) -> dict[str, float]:
    """Zero-shot AUROCs on every eval split, keys `<split>/auroc/...`; with `config.out_dir`,
    the scores too (`zero_shot_scores_<split>.npz`: scores, targets, ids, names)."""
    data.require("zero_shot", ("image", "labels"), data.eval_splits)
    names = finding_names(config.findings)
    prompts = [tuple(p) for p in config.prompts] or None
    out = {}
    for split_name in data.eval_splits:
        split = data.split(split_name)
        probs = scores(encoders, split.images, names, prompts)
        y = split.targets(names, config.uncertain_as)
        warn_one_class("zero_shot", data.name, split_name, y, names)
        summary = auroc_summary(y, probs, names, n_resamples=config.bootstrap.n_resamples,
                                seed=config.seed, level=config.bootstrap.level)
        out.update({f"{split_name}/{k}": v for k, v in summary.items()})
        if config.get("out_dir"):
            save_arrays(os.path.join(config.out_dir, f"zero_shot_scores_{split_name}.npz"),
                        scores=probs, targets=y, ids=np.asarray(split.ids), names=np.asarray(names))
    return out
