"""Downstream metrics against scikit-learn, hand-computed values and known report pairs."""

from __future__ import annotations

import re

import numpy as np
import pytest
from nltk.translate.bleu_score import corpus_bleu
from sklearn.metrics import f1_score, roc_auc_score

from chexficient import findings
from downstream import metrics


def test_auroc_matches_sklearn_and_hand_value():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    assert metrics.auroc(y, s) == pytest.approx(0.75)  # 3 of 4 positive-negative pairs ordered
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 200), rng.normal(size=200)
    assert metrics.auroc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_auroc_single_class_is_nan():
    assert np.isnan(metrics.auroc(np.ones(5), np.arange(5.0)))


def test_bootstrap_ci_brackets_estimate_and_is_deterministic():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = y + rng.normal(scale=1.0, size=300)
    stat = lambda idx: metrics.auroc(y[idx], s[idx])  # noqa: E731
    low, high = metrics.bootstrap_ci(stat, 300, n_resamples=200, seed=3)
    assert low < metrics.auroc(y, s) < high
    assert 0.5 < low and high < 1.0
    assert (low, high) == metrics.bootstrap_ci(stat, 300, n_resamples=200, seed=3)
    assert (low, high) != metrics.bootstrap_ci(stat, 300, n_resamples=200, seed=4)


def test_bootstrap_ci_vector_statistic_and_all_nan_entry():
    x = np.arange(100.0)
    stat = lambda idx: np.array([x[idx].mean(), np.nan])  # noqa: E731
    low, high = metrics.bootstrap_ci(stat, 100, n_resamples=300, seed=0, level=0.9)
    assert low.shape == high.shape == (2,)
    assert low[0] < 49.5 < high[0]
    # the standard error of the mean is ~2.9: a 90% interval spans about 2 * 1.645 * 2.9
    assert 7 < high[0] - low[0] < 12
    assert np.isnan(low[1]) and np.isnan(high[1])


def test_merge_duplicates_keeps_first_seen_order():
    unique, inverse = metrics.merge_duplicates(["b", "a", "b", "c", "a"])
    assert unique == ["b", "a", "c"]
    assert inverse.tolist() == [0, 1, 0, 2, 1]


def test_first_relevant_rank_hand_computed():
    scores = np.array([[0.9, 0.5, 0.1],
                       [0.9, 0.5, 0.1],
                       [0.2, 0.2, 0.2]])
    relevant = np.array([[1, 0, 0],
                         [0, 0, 1],
                         [0, 1, 0]], dtype=bool)
    # Row 2: a constant scorer gets the worst rank (ties count against the query).
    assert metrics.first_relevant_rank(scores, relevant).tolist() == [1, 3, 3]
    # Two relevant candidates (a merged duplicate): the better-scored one counts.
    both = np.array([[0, 1, 1]], dtype=bool)
    assert metrics.first_relevant_rank(scores[:1], both).tolist() == [2]
    with pytest.raises(ValueError, match="relevant"):
        metrics.first_relevant_rank(scores[:1], np.zeros((1, 3), bool))


def test_recall_at_k():
    r = metrics.recall_at_k(np.array([1, 2, 5, 11]), (1, 5, 10))
    assert r == {1: 0.25, 5: 0.75, 10: 0.75}


def test_dice_per_image_hand_computed_and_empty_convention():
    pred = np.zeros((3, 4, 4), np.uint8)
    target = np.zeros((3, 4, 4), np.uint8)
    pred[0, :2] = 1            # 8 pixels
    target[0, :1] = 1          # 4 pixels, all inside the prediction
    target[1, 0, 0] = 1        # empty prediction, non-empty target
    # image 2: both empty
    np.testing.assert_allclose(metrics.dice_per_image(pred, target), [2 * 4 / 12, 0.0, 1.0])


def test_dice_per_channel_and_shape_check():
    pred = np.zeros((1, 2, 2, 2), bool)
    target = np.zeros((1, 2, 2, 2), bool)
    pred[..., 0] = target[..., 0] = True
    target[0, 0, 0, 1] = True
    np.testing.assert_allclose(metrics.dice_per_image(pred, target), [[1.0, 0.0]])
    with pytest.raises(ValueError, match="shape"):
        metrics.dice_per_image(pred, target[..., :1])


def test_clinical_f1_counts_uncertain_as_positive():
    true = np.full((2, 14), findings.NEGATIVE, np.int8)
    pred = true.copy()
    edema, cardio = findings.index("Edema"), findings.index("Cardiomegaly")
    true[0, edema] = findings.POSITIVE
    pred[0, edema] = findings.UNCERTAIN          # uncertain counts as 1: a true positive
    true[1, cardio] = findings.POSITIVE          # missed: a false negative
    pred[1, findings.index("Fracture")] = findings.POSITIVE  # outside top 5: false positive
    out = metrics.clinical_f1(pred, true)
    # top5: tp=1, fn=1, fp=0 -> micro F1 = 2/3; macro over the two occurring: edema 1, cardio 0
    assert out["f1_top5_micro"] == pytest.approx(2 / 3)
    assert out["f1_top5_macro"] == pytest.approx(0.5)
    # all14: tp=1, fn=1, fp=1 -> 0.5; macro over edema 1, cardiomegaly 0, fracture 0
    assert out["f1_all14_micro"] == pytest.approx(0.5)
    assert out["f1_all14_macro"] == pytest.approx(1 / 3)
    # sklearn's per-finding F1 on the findings that occur, computed apart
    occurring = [edema, cardio, findings.index("Fracture")]
    assert out["f1_all14_macro"] == pytest.approx(np.mean(f1_score(
        findings.binarize(true, 1)[:, occurring], findings.binarize(pred, 1)[:, occurring],
        average=None)))


def test_clinical_f1_of_a_perfect_generator_is_one_whatever_findings_are_absent():
    true = np.full((3, 14), findings.NEGATIVE, np.int8)
    true[0, findings.index("Edema")] = findings.POSITIVE
    true[1, findings.index("Fracture")] = findings.UNCERTAIN
    out = metrics.clinical_f1(true, true)
    assert out == {"f1_top5_micro": 1.0, "f1_top5_macro": 1.0,
                   "f1_all14_micro": 1.0, "f1_all14_macro": 1.0}
    nothing = metrics.clinical_f1(true[2:], true[2:])  # no finding on either side: undefined
    assert all(np.isnan(v) for v in nothing.values()), nothing


def test_report_metrics_on_known_pairs():
    refs = ["the heart is enlarged . small left pleural effusion .",
            "no pneumothorax . lungs are clear ."]
    perfect = metrics.report_metrics(refs, refs)
    for key in ("bleu1", "bleu2", "bleu3", "bleu4", "rougeL", "f1_all14_micro"):
        assert perfect[key] == pytest.approx(1.0), key
    unrelated = metrics.report_metrics(["xyz qrs", "uvw"], refs)
    assert unrelated["bleu1"] == 0.0 and unrelated["rougeL"] == 0.0
    # Half the words right: P = 1, R = 3/6; pycocoevalcap's F weighs recall by beta = 1.2.
    assert metrics.rouge_l(["lungs are clear"], ["no pneumothorax lungs are clear today"]) == \
        pytest.approx((1 + 1.2 ** 2) * 1 * 0.5 / (0.5 + 1.2 ** 2 * 1))
    with pytest.raises(ValueError, match="references"):
        metrics.report_metrics(refs[:1], refs)


def test_report_metrics_of_no_reports_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one generated/reference pair"):
        metrics.report_metrics([], [])


def test_bleu_hand_computed():
    # hyp 6 tokens, ref 6 tokens, 5/6 unigrams and 3/5 bigrams match -> BLEU-2 = sqrt(5/6 * 3/5)
    out = metrics.bleu(["the cat sat on the mat"], ["the cat sat on a mat"])
    assert out["bleu1"] == pytest.approx(5 / 6)
    assert out["bleu2"] == pytest.approx(np.sqrt(5 / 6 * 3 / 5))


REPORTS = [
    "FINDINGS: No pulmonary edema. IMPRESSION: No acute cardiopulmonary process.",
    "FINDINGS: Portable AP view of the chest. Mild cardiomegaly. No focal consolidation. No "
    "pneumothorax. No pleural effusion. IMPRESSION: Mild enlargement of the cardiac silhouette.",
    "FINDINGS: Single frontal view of the chest. ET tube 4 cm above the carina. Dense "
    "consolidation at the right mid lung. No pneumothorax. IMPRESSION: Right middle lobe pneumonia.",
    "FINDINGS: PA and lateral views of the chest. Small left pleural effusion. No pneumothorax. "
    "IMPRESSION: Small left pleural effusion, unchanged.",
]


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).split()


def test_bleu_scores_words_without_punctuation_as_the_literature_does():
    # Periods and case are not words: kept, "the heart is normal ." matched 4 of 5 tokens.
    assert metrics.bleu(["The heart is enlarged."], ["the heart is normal."])["bleu1"] == \
        pytest.approx(3 / 4)
    assert metrics.bleu(["Lungs: clear!"], ["lungs clear"])["bleu4"] == pytest.approx(
        metrics.bleu(["lungs clear"], ["lungs clear"])["bleu4"])
    # Against nltk's corpus BLEU on the same words (another patient's report as the output).
    generated, references = REPORTS[1:] + REPORTS[:1], REPORTS
    ours = metrics.bleu(generated, references)
    for n in range(1, 5):
        expected = corpus_bleu([[_words(r)] for r in references], [_words(g) for g in generated],
                               weights=[1 / n] * n)
        assert ours[f"bleu{n}"] == pytest.approx(expected), n


def _mean_auroc(y, scores):
    return lambda rows: float(np.nanmean(metrics.column_aurocs(y[rows], scores[rows])))


def test_column_aurocs_equal_sklearn_with_ties_and_nan_for_one_class():
    rng = np.random.default_rng(0)
    y = rng.random((300, 4)) < 0.2
    scores = np.round(rng.random((300, 4)) * 5) / 5  # many ties
    y[:, 3] = False
    got = metrics.column_aurocs(y, scores)
    np.testing.assert_allclose(got[:3], [roc_auc_score(y[:, j], scores[:, j]) for j in range(3)])
    assert np.isnan(got[3])


def test_paired_bootstrap_identical_models_differ_by_nothing():
    rng = np.random.default_rng(1)
    y = rng.random((200, 3)) < 0.3
    scores = rng.random((200, 3)) + y
    out = metrics.paired_bootstrap(_mean_auroc(y, scores), _mean_auroc(y, scores), 200,
                                   n_resamples=200, seed=0)
    assert out == dict(diff=0.0, ci_low=0.0, ci_high=0.0, p=1.0, n_resamples=200)


def test_paired_bootstrap_separates_a_clearly_better_model_and_not_noise():
    rng = np.random.default_rng(2)
    y = rng.random((200, 3)) < 0.3
    good = y + 0.5 * rng.standard_normal((200, 3))   # mean AUROC about 0.92
    chance = rng.standard_normal((200, 3))           # about 0.5
    better = metrics.paired_bootstrap(_mean_auroc(y, good), _mean_auroc(y, chance), 200,
                                      n_resamples=300, seed=0)
    assert better["diff"] > 0.3 and better["ci_low"] > 0 and better["p"] < 0.01
    # the same good model and a copy with tiny noise: no difference to find
    twin = good + 1e-3 * rng.standard_normal((200, 3))
    same = metrics.paired_bootstrap(_mean_auroc(y, good), _mean_auroc(y, twin), 200,
                                    n_resamples=300, seed=0)
    assert same["ci_low"] <= 0 <= same["ci_high"] and same["p"] > 0.05


def test_paired_bootstrap_p_matches_a_paired_difference_known_in_closed_form():
    # Two classifiers' per-example correctness: a is right on 120 of 200, b on 100, b's right
    # answers a subset of a's. The statistic is accuracy, the difference 0.1 with a paired
    # standard error sqrt(p(1-p)/n) for the 20 discordant examples, p = 0.1: z = 0.1 / 0.0212.
    a = np.zeros(200); a[:120] = 1
    b = np.zeros(200); b[:100] = 1
    out = metrics.paired_bootstrap(lambda r: a[r].mean(), lambda r: b[r].mean(), 200,
                                   n_resamples=2000, seed=0)
    assert out["diff"] == pytest.approx(0.1)
    se = np.sqrt(0.1 * 0.9 / 200)
    assert out["ci_low"] == pytest.approx(0.1 - 1.96 * se, abs=0.01)
    assert out["ci_high"] == pytest.approx(0.1 + 1.96 * se, abs=0.01)
    assert out["p"] < 1e-3  # z = 4.7
    # No resample on the other side of zero: p is kept as 0 and printed as below 1/2000.
    assert out["p"] == 0 and out["n_resamples"] == 2000
    assert metrics.format_p(out["p"], out["n_resamples"]) == "<0.0005"
    assert metrics.format_p(0.0, 1000) == "<0.001" and metrics.format_p(0.0, 100) == "<0.01"
    assert metrics.format_p(0.046, 1000) == "0.046" and metrics.format_p(1e-4, 10**5) == "0.0001"


def test_holm_adjusts_hand_computed_and_keeps_nan_out_of_the_family():
    # Sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> monotone 0.06.
    got = metrics.holm([0.01, 0.04, 0.03, 0.005, float("nan")])
    np.testing.assert_allclose(got[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(got[4])
    assert metrics.holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # capped at 1


def _kept_scores(rng: np.random.Generator, y: np.ndarray, noise: float) -> dict[str, np.ndarray]:
    names = np.asarray(findings.FINDINGS[1:])  # as the zero-shot adapter keeps them
    return dict(scores=y + noise * rng.standard_normal(y.shape), targets=y, names=names,
                ids=np.asarray([f"p{i}" for i in range(len(y))]))


def test_paired_test_matches_an_independent_sklearn_bootstrap_and_refuses_unpaired_columns():
    from downstream import compare

    rng = np.random.default_rng(3)
    y = (rng.random((80, len(findings.FINDINGS) - 1)) < 0.3).astype(np.int8)
    a, b = _kept_scores(rng, y, 0.8), _kept_scores(rng, y, 1.5)
    got = compare.paired_test([a], [b], n_resamples=50, seed=0)["CheXpert-5 AUROC"]
    top5 = [i for i, n in enumerate(a["names"]) if n in findings.TOP5_FINDINGS]

    def mean_auroc(s: dict, rows: np.ndarray) -> float:
        return np.mean([roc_auc_score(s["targets"][rows, j], s["scores"][rows, j]) for j in top5
                        if len(np.unique(s["targets"][rows, j])) == 2])
    draws = np.random.default_rng(0)
    diffs = np.array([mean_auroc(a, r) - mean_auroc(b, r)
                      for r in (draws.integers(0, 80, 80) for _ in range(50))])
    assert got["diff"] == pytest.approx(mean_auroc(a, np.arange(80)) - mean_auroc(b, np.arange(80)))
    assert [got["ci_low"], got["ci_high"]] == pytest.approx(np.percentile(diffs, [2.5, 97.5]))
    assert got["p"] == pytest.approx(min(1, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0))))

    relabelled = dict(b, targets=np.where(b["targets"] == 0, 1, 0))  # another uncertain_as
    with pytest.raises(ValueError, match="same labels"):
        compare.paired_test([a], [relabelled], n_resamples=5)
    with pytest.raises(ValueError, match="same findings"):
        compare.paired_test([a], [dict(b, names=b["names"][::-1])], n_resamples=5)
