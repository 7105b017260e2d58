"""Offline baselines hit their budget and do what their papers say."""

from __future__ import annotations

import numpy as np
import pytest

from curation.offline import (BASELINES, ClipScoreTopK, DensityPruning, HierarchicalKMeansSampling,
                              NotFittedError, RandomSubset, SemDeDup, SSLPrototypes, balanced_quota,
                              default_args, joint_matrix, make)


def blobs(rng: np.random.Generator, sizes, spreads, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around orthogonal centres; returns points and blob labels."""
    centers = np.eye(dim)[:len(sizes)] * 4
    label = np.repeat(np.arange(len(sizes)), sizes)
    x = centers[label] + np.asarray(spreads)[label, None] * rng.normal(size=(label.size, dim))
    return x, label


def pairs(rng: np.random.Generator, n: int = 300, dim: int = 16) -> dict[str, np.ndarray]:
    image = rng.normal(size=(n, dim))
    return {"image": image, "text": image + 0.5 * rng.normal(size=(n, dim))}


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("budget,expected", [(75, 75), (0.4, 120)])
def test_every_baseline_hits_its_budget(name, budget, expected):
    kwargs = {} if name in ("random", "clip_score") else {"seed": 0}
    if name == "hierarchical_kmeans":
        kwargs["n_clusters"] = (12, 3)
    elif name not in ("random", "clip_score"):
        kwargs["n_clusters"] = 8
    chosen = BASELINES[name](**kwargs).fit(pairs(np.random.default_rng(0))).select(budget)
    assert chosen.size == expected == np.unique(chosen).size
    assert chosen.min() >= 0 and chosen.max() < 300 and np.all(np.diff(chosen) > 0)


def test_make_by_name_passes_accepted_hyperparameters():
    assert make("semdedup", seed=3, eps=0.1).seed == 3 and make("semdedup", eps=0.1).eps == 0.1
    assert isinstance(make("clip_score", seed=3), ClipScoreTopK)  # no seed to take
    assert not RandomSubset.needs_embeddings
    with pytest.raises(ValueError, match="valid: random, semdedup"):
        make("nope")


def test_make_refuses_a_hyperparameter_the_baseline_does_not_take():
    with pytest.raises(TypeError, match="'semdedup' has no hyper-parameter epsilon; valid: eps, "
                                        "n_clusters, seed"):
        make("semdedup", epsilon=0.5)  # was dropped: eps stayed 0.05
    with pytest.raises(TypeError, match="no hyper-parameter n_clusters; valid: none"):
        make("clip_score", n_clusters=4)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_default_args_are_the_constructor_defaults(name):
    """config.schedule.offline_args holds them: a run with untouched args selects as before."""
    assert vars(make(name, seed=2, **default_args()[name])) == vars(make(name, seed=2))
    assert "seed" not in default_args()[name]
    assert default_args()["semdedup"] == {"eps": 0.05, "n_clusters": 100}


def test_numpy_fractions_and_counts_are_budgets():
    model = RandomSubset().fit(pairs(np.random.default_rng(0)))
    np.testing.assert_array_equal(model.select(np.float32(0.25)), model.select(75))
    np.testing.assert_array_equal(model.select(np.int16(75)), model.select(75))
    with pytest.raises(ValueError, match="fraction"):
        model.select(np.bool_(True))


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_select_before_fit_says_not_fitted(name):
    with pytest.raises(NotFittedError, match=f"this {BASELINES[name].__name__} is not fitted yet"):
        BASELINES[name]().select(10)


def test_budget_errors_are_clear():
    model = RandomSubset().fit(pairs(np.random.default_rng(0)))
    with pytest.raises(ValueError, match="only 300"):
        model.select(301)
    with pytest.raises(ValueError, match="fraction"):
        model.select(1.5)


def test_random_subset_is_seeded():
    x = pairs(np.random.default_rng(0))
    a, b = RandomSubset(seed=1).fit(x).select(50), RandomSubset(seed=1).fit(x).select(50)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, RandomSubset(seed=2).fit(x).select(50))


def test_semdedup_removes_planted_duplicates():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(200, 16))
    originals = rng.choice(200, 40, replace=False)
    copies = base[originals] + 1e-3 * rng.normal(size=(40, 16))
    x = np.concatenate([base, copies])
    model = SemDeDup(eps=0.01, n_clusters=6, seed=0).fit(x)
    assert model.duplicate_.sum() == 40
    chosen = model.select(200)
    # exactly one of each (original, copy) pair survives, and every other row does
    groups = np.arange(240)
    groups[200:] = originals
    assert np.unique(groups[chosen]).size == 200


def test_clip_score_keeps_agreeing_pairs():
    rng = np.random.default_rng(0)
    x = pairs(rng, 200)
    mismatched = rng.choice(200, 60, replace=False)
    x["text"][mismatched] = rng.normal(size=(60, 16))
    chosen = ClipScoreTopK().fit(x).select(140)
    np.testing.assert_array_equal(chosen, np.setdiff1d(np.arange(200), mismatched))
    with pytest.raises(TypeError, match="image"):
        ClipScoreTopK().fit(x["image"])


def test_ssl_prototypes_keep_hard_or_easy():
    rng = np.random.default_rng(0)
    x, _ = blobs(rng, [100, 100, 100], [0.5, 0.5, 0.5])
    hard = SSLPrototypes(n_clusters=3, keep="hard").fit(x)
    easy = SSLPrototypes(n_clusters=3, keep="easy").fit(x)
    d = hard.difficulty_
    chosen_hard, chosen_easy = hard.select(60), easy.select(60)
    assert d[chosen_hard].min() >= np.sort(d)[-60] - 1e-12
    assert d[chosen_easy].max() <= np.sort(d)[59] + 1e-12


def test_density_pruning_gives_complex_clusters_more():
    rng = np.random.default_rng(0)
    x, label = blobs(rng, [150, 150], [0.1, 1.0])
    model = DensityPruning(n_clusters=2, tau=0.1, seed=0).fit(x)
    chosen = model.select(100)
    per_blob = np.bincount(label[chosen], minlength=2)
    assert per_blob.sum() == 100 and per_blob[1] > per_blob[0]
    # inside a cluster the far-from-centroid members are kept
    diffuse = model.labels_ == model.labels_[label == 1][0]
    kept_d = model.distance_[np.intersect1d(chosen, np.flatnonzero(diffuse))]
    assert kept_d.min() >= np.sort(model.distance_[diffuse])[-per_blob[1]] - 1e-12


def test_hierarchical_kmeans_balances_concepts():
    rng = np.random.default_rng(0)
    x, label = blobs(rng, [900, 25, 25, 25, 25], [0.3] * 5)
    chosen = HierarchicalKMeansSampling(n_clusters=(20, 5), seed=0).fit(x).select(100)
    per_blob = np.bincount(label[chosen], minlength=5)
    assert per_blob.sum() == 100
    assert per_blob[1:].min() >= 15  # a random 100 would hold ~2.5 of each small blob


def test_balanced_quota_caps_and_sums():
    np.testing.assert_array_equal(balanced_quota(10, np.array([2, 50, 50])), [2, 4, 4])
    q = balanced_quota(7, np.array([3, 3, 3]), np.array([0.6, 0.3, 0.1]))
    assert q.sum() == 7 and np.all(q <= 3) and q[0] == 3
    np.testing.assert_array_equal(balanced_quota(100, np.array([3, 4])), [3, 4])


def test_joint_matrix_is_unit_and_validates():
    x = joint_matrix(pairs(np.random.default_rng(0), 10, 4))
    assert x.shape == (10, 8)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0)
    with pytest.raises(ValueError, match="shape"):
        joint_matrix(np.zeros((2, 3, 4)))
