"""The metrics of the downstream protocols (docs/benchmark.md), as the field computes them.

Pure functions on numpy arrays and strings: AUROC with bootstrap CIs, retrieval ranks with
duplicate texts merged, Dice per image, clinical-efficacy F1, BLEU-1..4 and ROUGE-L. Every
score is a fraction in [0, 1] (BLEU and ROUGE-L too, not percentages); ranks are 1-based.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Sequence

import numpy as np
from rouge_score import rouge_scorer, scoring, tokenizers
from scipy.stats import rankdata
from sacrebleu.metrics import BLEU
from sklearn.metrics import f1_score, roc_auc_score

from chexficient import findings, labeler


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve; NaN when `y_true` holds a single class (AUROC is undefined)."""
    y_true = np.asarray(y_true)
    if np.unique(y_true).size < 2:
        return float("nan")
    return float(roc_auc_score(y_true, scores))


def column_aurocs(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of every column of [n, F] 0/1 labels and scores at once (NaN where a column has
    one class): the Mann-Whitney rank sum with ties averaged, which is roc_auc_score's value,
    vectorised so that bootstrap resamples cost microseconds instead of milliseconds."""
    y = np.asarray(y_true).astype(bool)
    ranks = rankdata(np.asarray(scores, np.float64), axis=0)
    n_pos = y.sum(axis=0)
    n_neg = len(y) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (np.sum(ranks * y, axis=0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), value, np.nan)


def finding_aurocs(y: np.ndarray, scores: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """[F + 3]: AUROC per finding (columns of y/scores), then their mean, the mean over the
    rare findings and the mean over the five CheXpert competition findings (TOP5_FINDINGS).

    Findings with one class only are NaN and left out of the means.
    """
    per = column_aurocs(y, scores)
    rare = np.array([name in findings.RARE_FINDINGS for name in names], dtype=bool)
    top5 = np.array([name in findings.TOP5_FINDINGS for name in names], dtype=bool)
    return np.concatenate([per, [_nanmean(per), _nanmean(per[rare]), _nanmean(per[top5])]])


def finding_auroc_keys(names: Sequence[str]) -> list[str]:
    """Result keys matching `finding_aurocs`."""
    return [f"auroc/{name}" for name in names] + [
        "auroc/mean", "auroc/mean_rare", "auroc/mean_top5"]


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def resampled(statistic: Callable[[np.ndarray], float | np.ndarray], n: int, *,
              n_resamples: int, seed: int) -> np.ndarray:
    """[n_resamples, ...] values of `statistic(indices)`, each on `n` of the `n` examples drawn
    with replacement (the draws of `seed`, in order)."""
    rng = np.random.default_rng(seed)
    return np.array([np.asarray(statistic(rng.integers(0, n, n)), np.float64)
                     for _ in range(n_resamples)])


def bootstrap_ci(statistic: Callable[[np.ndarray], float | np.ndarray], n: int, *,
                 n_resamples: int, seed: int, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of `statistic(indices)` over `n` examples resampled with replacement.

    `statistic` receives an index array (so it can resample several aligned arrays at once)
    and returns a scalar or a vector (one CI per entry). NaN resamples (e.g. one class only)
    are dropped per entry; an entry NaN in every resample gets a NaN interval, and so does
    every entry when `n_resamples` is 0.
    """
    if n_resamples < 1:  # no interval asked for
        nan = np.full(np.shape(statistic(np.arange(n))), np.nan)
        return nan, nan
    values = resampled(statistic, n, n_resamples=n_resamples, seed=seed)
    tail = 100 * (1 - level) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN entries -> NaN, as documented
        low, high = np.nanpercentile(values, [tail, 100 - tail], axis=0)
    return low, high


def paired_bootstrap(statistic_a: Callable[[np.ndarray], float],
                     statistic_b: Callable[[np.ndarray], float], n: int, *, n_resamples: int,
                     seed: int, level: float = 0.95) -> dict[str, float]:
    """Paired bootstrap of a difference between two models scored on the same `n` examples.

    Each resample draws the examples once and evaluates both statistics on it (they receive
    the same index array), so what the examples share cancels out. Returns the observed
    difference a - b, its percentile CI, a two-sided p-value: twice the smaller share of
    resampled differences on either side of zero (capped at 1; no resample on the other side
    gives p < 1 / n_resamples, reported as 0: `format_p`) and `n_resamples`, the resamples
    counted. Resamples where a statistic is NaN are dropped.
    """
    difference = lambda rows: statistic_a(rows) - statistic_b(rows)  # noqa: E731
    observed = float(difference(np.arange(n)))
    diffs = resampled(difference, n, n_resamples=n_resamples, seed=seed)
    diffs = diffs[~np.isnan(diffs)]
    if not diffs.size:
        return dict(diff=observed, ci_low=float("nan"), ci_high=float("nan"), p=float("nan"),
                    n_resamples=0)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(diffs, [tail, 100 - tail])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return dict(diff=observed, ci_low=float(low), ci_high=float(high), p=float(p),
                n_resamples=int(diffs.size))


def format_p(p: float, n_resamples: int) -> str:
    """A bootstrap p-value for a table: 3 decimals, but `<0.001` (`<1/n_resamples`) for a p
    of 0, which only says that no resample fell on the other side of zero."""
    if p == 0 and n_resamples > 0:
        return f"<{1 / n_resamples:.2g}"
    return f"{p:.3f}" if not 0 < p < 0.0005 else f"{p:.2g}"


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values of a family of tests (same order as given): a test
    is significant at level a with the family-wise error at most a where its adjusted p < a.
    NaN p-values stay NaN and do not count in the family."""
    p = np.asarray(p_values, np.float64)
    out = np.full(p.shape, np.nan)
    defined = np.flatnonzero(~np.isnan(p))
    order = defined[np.argsort(p[defined], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    return out


def merge_duplicates(keys: Sequence[Hashable]) -> tuple[list, np.ndarray]:
    """Unique keys (texts, token strings) in first-seen order and, per input, the position of
    its unique key."""
    positions: dict[Hashable, int] = {}
    inverse = np.array([positions.setdefault(k, len(positions)) for k in keys], dtype=np.int64)
    return list(positions), inverse


def first_relevant_rank(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """1-based rank of the best-scored relevant candidate, per query row.

    scores, relevant: [queries, candidates]; every row needs a relevant candidate. Ties count
    against the query (an irrelevant candidate scoring equal to it ranks above), so a
    constant scorer earns the worst rank, never the best.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if not relevant.any(axis=1).all():
        raise ValueError("every query needs at least one relevant candidate")
    best = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)
    return 1 + np.sum((scores >= best) & ~relevant, axis=1)


def recall_at_k(ranks: np.ndarray, ks: Sequence[int]) -> dict[int, float]:
    """Fraction of queries whose first relevant candidate ranks within the top k."""
    ranks = np.asarray(ranks)
    return {k: float(np.mean(ranks <= k)) for k in ks}


def dice_per_image(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Dice of binary masks per image (and channel): [N, H, W, ...] -> [N, ...].

    An empty prediction on an empty target scores 1 (the SIIM convention).
    """
    pred = np.asarray(pred).astype(bool)
    target = np.asarray(target).astype(bool)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} != target shape {target.shape}")
    spatial = (1, 2)
    inter = np.sum(pred & target, axis=spatial)
    total = np.sum(pred, axis=spatial) + np.sum(target, axis=spatial)
    return np.where(total == 0, 1.0, 2 * inter / np.maximum(total, 1))


def clinical_f1(pred_labels: np.ndarray, true_labels: np.ndarray) -> dict[str, float]:
    """Clinical-efficacy F1 of label arrays [n, 14]: micro and macro, top-5 and all 14.

    Labels use the record encoding; positive and uncertain count as 1, negative and blank as 0.
    The macro mean is over the findings positive in a reference or a generated report: F1 is
    undefined for the others (scored 0, they kept a perfect generator below 1); with none,
    micro and macro F1 are NaN.
    """
    pred = findings.binarize(pred_labels, uncertain_as=1).astype(bool)
    true = findings.binarize(true_labels, uncertain_as=1).astype(bool)
    top5 = [findings.index(name) for name in findings.TOP5_FINDINGS]
    out = {}
    for subset, cols in (("top5", top5), ("all14", list(range(findings.NUM_FINDINGS)))):
        p, t = pred[:, cols], true[:, cols]
        out[f"f1_{subset}_micro"] = float(f1_score(t, p, average="micro", zero_division=np.nan))
        occurring = (p | t).any(axis=0)
        out[f"f1_{subset}_macro"] = float(f1_score(
            t[:, occurring], p[:, occurring], average="macro")) if occurring.any() else float("nan")
    return out


def clinical_efficacy(generated: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Clinical-efficacy F1 of generated vs reference reports, both labelled by our labeler."""
    return clinical_f1(labeler.label(list(generated)), labeler.label(list(references)))


_WORDS = tokenizers.DefaultTokenizer(use_stemmer=False)


def words(text: str) -> str:
    """`text` as report-generation papers score it: lower-cased words, punctuation dropped
    (rouge-score's tokenisation; pycocoevalcap's, R2Gen's, drops punctuation too), space-joined.
    Kept, the periods of every sentence would match for free and inflate BLEU."""
    return " ".join(_WORDS.tokenize(text))


def bleu(generated: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU-1..4 (sacrebleu, exp smoothing) on `words`: lower-cased, no punctuation."""
    refs = [[words(r) for r in references]]
    hyps = [words(g) for g in generated]
    return {f"bleu{n}": BLEU(max_ngram_order=n, tokenize="none").corpus_score(hyps, refs).score
            / 100 for n in range(1, 5)}


ROUGE_BETA = 1.2
"""ROUGE-L's recall weight in report-generation papers (pycocoevalcap's `Rouge`)."""


def rouge_l(generated: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L over pairs as pycocoevalcap scores it: the F-measure with recall weighted by
    ROUGE_BETA, from rouge-score's LCS precision and recall on `words` (its F1 reads 0.011
    higher on outputs shorter than their references)."""
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    scores = [_f_beta(scorer.score(ref, gen)["rougeL"]) for gen, ref in zip(generated, references)]
    return float(np.mean(scores)) if scores else float("nan")


def _f_beta(score: scoring.Score) -> float:
    p, r, b2 = score.precision, score.recall, ROUGE_BETA ** 2
    return (1 + b2) * p * r / (r + b2 * p) if p > 0 and r > 0 else 0.0


def report_metrics(generated: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """All report-generation metrics: BLEU-1..4, ROUGE-L and clinical-efficacy F1."""
    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated reports for {len(references)} references")
    if not generated:
        raise ValueError("report_metrics needs at least one generated/reference pair, got none")
    return {**bleu(generated, references), "rougeL": rouge_l(generated, references),
            **clinical_efficacy(generated, references)}
