"""CheXficient's prototype rule: quantile regions, central cap, Sinkhorn, EMA, k-means, warm-up."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curation.base import compact, segment_rank
from curation.prototypes import (PrototypeConfig, ema_update, hard_assignment, kmeans, sinkhorn)
from curation.quantile_rule import (CENTRAL, OUTLIER, SUPPORT, chexficient, chexficient_capacity,
                                    farthest_point_sampling, quantile_regions)


def clustered_pairs(rng: np.random.Generator, batch: int, dim: int = 64, topics: int = 6,
                    spread: float = 0.6) -> dict[str, jax.Array]:
    """Image/text embeddings of pairs drawn from `topics` unequal latent topics, text a noisy view."""
    centers = np.random.default_rng(123).normal(size=(topics, dim))
    topic = rng.choice(topics, batch, p=np.linspace(2, 1, topics) / np.linspace(2, 1, topics).sum())
    image = centers[topic] + spread * rng.normal(size=(batch, dim))
    text = image + 0.5 * spread * rng.normal(size=(batch, dim))
    return {"image": jnp.asarray(image, jnp.float32), "text": jnp.asarray(text, jnp.float32)}


def pairs_around(direction: np.ndarray, radii: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit vectors at chord distance ~ growing with `radii` from a unit direction."""
    noise = rng.normal(size=(len(radii), direction.size))
    noise -= (noise @ direction)[:, None] * direction[None]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    v = direction[None] + radii[:, None] * noise
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def initialized_state(curator, embeddings, prototypes):
    """A curator state whose prototypes are set by hand (joint space = [u, u] / sqrt 2)."""
    state = curator.init(jax.random.key(0), embeddings)
    joint = np.concatenate([prototypes, prototypes], axis=1) / np.sqrt(2)
    return state._replace(prototypes=jnp.asarray(joint, jnp.float32), initialized=jnp.asarray(True))


def test_segment_rank_orders_within_segments():
    segment = jnp.array([1, 0, 1, 0, 2, 1])
    value = jnp.array([0.5, 0.2, 0.1, 0.1, 9.0, 0.5])
    rank, counts = segment_rank(segment, value, 3)
    np.testing.assert_array_equal(rank, [1, 1, 0, 0, 0, 2])  # tie (rows 0, 5) broken by row
    np.testing.assert_array_equal(counts, [2, 3, 1])


@pytest.mark.parametrize("n", [1, 2, 7, 20, 41, 100, 333])
def test_quantile_regions_match_jnp_quantile(n):
    rng = np.random.default_rng(n)
    distance = jnp.asarray(rng.permutation(n) + rng.random(n) * 0.1, jnp.float32)
    cluster = jnp.zeros((n,), jnp.int32)
    region = quantile_regions(distance, cluster, jnp.ones((n,), bool), 1, 0.85, 0.95)
    q85, q95 = jnp.quantile(distance, 0.85), jnp.quantile(distance, 0.95)
    expected = jnp.where(distance <= q85, CENTRAL, jnp.where(distance <= q95, SUPPORT, OUTLIER))
    np.testing.assert_array_equal(region, expected)


def test_quantile_regions_ignore_invalid_rows():
    distance = jnp.arange(10, dtype=jnp.float32)
    valid = jnp.arange(10) < 5
    region = quantile_regions(distance, jnp.zeros((10,), jnp.int32), valid, 1, 0.5, 0.75)
    np.testing.assert_array_equal(region, [0, 0, 0, 1, 2, -1, -1, -1, -1, -1])


@pytest.mark.parametrize("sampler", ["farthest", "density", "random"])
def test_rule_on_hand_built_clusters(sampler):
    """Two clusters of 40 at known distances: outliers dropped, support kept, central capped."""
    rng = np.random.default_rng(0)
    dim, per, cap = 16, 40, 5
    protos = np.eye(dim)[:2]
    radii = np.linspace(0.05, 0.6, per)
    rows = np.concatenate([pairs_around(p, radii, rng) for p in protos])
    order = rng.permutation(len(rows))  # shuffle rows so positions say nothing
    rows, rank = rows[order], np.tile(np.arange(per), 2)[order]
    embeddings = {"image": jnp.asarray(rows, jnp.float32), "text": jnp.asarray(rows, jnp.float32)}
    curator = chexficient(PrototypeConfig(num_prototypes=2), max_per_cluster=cap, central_sampler=sampler)
    state = initialized_state(curator, embeddings, protos)
    keep, info = jax.jit(curator.select)(state, embeddings, {}, jax.random.key(1))
    keep, region = np.asarray(keep), np.asarray(info["region"])
    # n = 40: central ranks 0..33 (floor(.85*39)), support 34..37, outliers 38, 39.
    expected = np.where(rank <= 33, CENTRAL, np.where(rank <= 37, SUPPORT, OUTLIER))
    np.testing.assert_array_equal(region, expected)
    assert not keep[rank >= 38].any()
    assert keep[(rank >= 34) & (rank <= 37)].all()
    for k in range(2):
        in_k = np.asarray(info["cluster"]) == k
        assert np.sum(keep & in_k & (rank <= 33)) == cap
    assert int(info["n_kept"]) == 2 * (4 + cap) and int(info["n_outlier"]) == 4
    kept_rows = np.asarray(info["indices"])[np.asarray(info["weights"]) > 0]
    np.testing.assert_array_equal(np.sort(kept_rows), np.flatnonzero(keep))


def test_farthest_point_sampling_spreads():
    rng = np.random.default_rng(0)
    clumps = rng.normal(size=(12, 8)) * 3
    x = clumps[rng.integers(0, 12, 300)] + 0.3 * rng.normal(size=(300, 8))
    m = 10

    def min_pairwise(rows):
        d = np.linalg.norm(x[rows][:, None] - x[rows][None], axis=-1)
        return d[np.triu_indices(len(rows), 1)].min()

    taken = farthest_point_sampling(jnp.asarray(x, jnp.float32), jnp.ones((1, 300), bool),
                                    jnp.array([0]), m)[0]
    chosen = np.flatnonzero(taken)
    assert chosen.size == m
    random_best = max(min_pairwise(rng.choice(300, m, replace=False)) for _ in range(50))
    assert min_pairwise(chosen) >= random_best


def test_farthest_point_sampling_stops_when_candidates_run_out():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(20, 4)), jnp.float32)
    candidates = jnp.zeros((2, 20), bool).at[0, :3].set(True)
    taken = farthest_point_sampling(x, candidates, jnp.array([1, 0]), 6)
    np.testing.assert_array_equal(taken[0], candidates[0])
    assert not taken[1].any()


def test_sinkhorn_balances_skewed_scores():
    rng = np.random.default_rng(0)
    b, k = 600, 4
    scores = rng.normal(scale=0.1, size=(b, k))
    scores[:, 0] += 0.4  # prototype 0 wins almost every row on raw scores
    scores = jnp.asarray(scores, jnp.float32)
    mask = jnp.ones((b,), bool).at[-100:].set(False)
    plan = sinkhorn(scores, mask, iterations=3, epsilon=0.05)
    members = int(mask.sum())
    np.testing.assert_allclose(plan[:-100].sum(1), 1.0, rtol=1e-5)
    assert float(jnp.abs(plan[-100:]).max()) == 0.0
    column = np.asarray(plan.sum(0))
    np.testing.assert_allclose(column, members / k, rtol=0.1)
    raw = np.bincount(np.asarray(jnp.argmax(scores[:-100], 1)), minlength=k)
    hard = np.asarray(hard_assignment(plan, mask).sum(0))
    assert raw.max() > 0.9 * members
    assert hard.max() - hard.min() < 0.5 * (raw.max() - raw.min())


def test_ema_update_math_is_exact():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(3, 5))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    x = rng.normal(size=(6, 5))
    assignment = np.array([0, 0, 1, 1, 1, 0])
    onehot = np.eye(3)[assignment]
    onehot[5] = 0  # not a member (not kept)
    out = np.asarray(ema_update(jnp.asarray(p, jnp.float32), jnp.asarray(x, jnp.float32),
                                jnp.asarray(onehot, jnp.float32), 0.9))
    expected = p.copy()
    for k, rows in ((0, [0, 1]), (1, [2, 3, 4])):
        v = 0.9 * p[k] + 0.1 * x[rows].mean(0)
        expected[k] = v / np.linalg.norm(v)
    np.testing.assert_allclose(out, expected, atol=1e-6)  # prototype 2: no members, unchanged


def test_kmeans_finds_separated_clusters_deterministically():
    rng = np.random.default_rng(0)
    centers = np.eye(8)[:4] * 5
    labels = rng.integers(0, 4, 400)
    x = jnp.asarray(centers[labels] + 0.2 * rng.normal(size=(400, 8)), jnp.float32)
    a = kmeans(x, 4, 20, jax.random.key(0))
    b = kmeans(x, 4, 20, jax.random.key(0))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-6)
    # each true centre direction has a prototype within a small angle
    assert np.all((np.eye(8)[:4] @ np.asarray(a).T).max(axis=1) > 0.99)


def test_warmup_then_kmeans_and_single_compilation():
    rng = np.random.default_rng(0)
    batch, warmup = 96, 3
    curator = chexficient(PrototypeConfig(num_prototypes=4, warmup_batches=warmup), max_per_cluster=4)
    state = curator.init(jax.random.key(0), clustered_pairs(rng, batch))
    select, update = jax.jit(curator.select), jax.jit(curator.update)
    for step in range(warmup + 3):
        embeddings = clustered_pairs(rng, batch)
        keep, info = select(state, embeddings, {}, jax.random.key(step))
        assert bool(info["warmup"]) == (step < warmup)
        if step < warmup:
            assert int(keep.sum()) == curator.capacity(batch)
        state = update(state, embeddings, keep)
        assert bool(state.initialized) == (step >= warmup - 1)
    np.testing.assert_allclose(np.linalg.norm(state.prototypes, axis=1), 1.0, atol=1e-5)
    assert float(jnp.abs(state.buffer).max()) == 0.0 and float(state.drift) > 0
    assert int(state.step) == warmup + 3
    assert select._cache_size() == 1 and update._cache_size() == 1


def test_default_config_keeps_about_the_papers_share():
    """B=480, K=6, cap=10 on clustered pairs: ~48 support + 60 central = ~22.5% kept."""
    rng = np.random.default_rng(0)
    batch = 480
    curator = chexficient()
    state = curator.init(jax.random.key(0), clustered_pairs(rng, batch))
    select, update = jax.jit(curator.select), jax.jit(curator.update)
    fractions = []
    for step in range(15):
        embeddings = clustered_pairs(rng, batch)
        keep, info = select(state, embeddings, {}, jax.random.key(step))
        state = update(state, embeddings, keep)
        if not info["warmup"]:
            fractions.append(float(info["kept_fraction"]))
            assert int(info["n_kept"]) <= curator.capacity(batch) == 114
    assert len(fractions) == 5
    assert 0.20 <= np.mean(fractions) <= 0.235, fractions


def test_capacity_bounds_every_batch():
    rng = np.random.default_rng(1)
    for batch, k, cap in [(50, 6, 10), (333, 3, 2), (480, 12, 5)]:
        curator = chexficient(PrototypeConfig(num_prototypes=k), max_per_cluster=cap)
        embeddings = clustered_pairs(rng, batch, topics=k)
        protos = kmeans(jnp.concatenate([embeddings["image"], embeddings["text"]], 1), k, 5,
                        jax.random.key(0))
        state = curator.init(jax.random.key(0), embeddings)._replace(prototypes=protos,
                                                                      initialized=jnp.asarray(True))
        assert chexficient_capacity(batch, k, 0.85, 0.95, cap) == curator.capacity(batch)
        keep, info = jax.jit(curator.select)(state, embeddings, {}, jax.random.key(0))
        assert int(np.sum(np.asarray(info["region"]) == SUPPORT)) + int(info["n_central_kept"]) \
            == int(keep.sum()) <= curator.capacity(batch)


def test_nothing_kept_falls_back_to_random_rows():
    rng = np.random.default_rng(0)
    curator = chexficient(PrototypeConfig(num_prototypes=2), q_support=0.9, q_outlier=0.9,
                          max_per_cluster=0)
    embeddings = clustered_pairs(rng, 64)
    state = initialized_state(curator, embeddings, np.eye(64)[:2])
    keep, info = jax.jit(curator.select)(state, embeddings, {}, jax.random.key(0))
    assert int(info["n_support"]) == 0 and int(keep.sum()) == curator.capacity(64) == 2


def test_compact_pads_with_valid_rows_and_zero_weights():
    keep = jnp.array([False, True, False, True, False, False])
    keep2, indices, weights = compact(keep, 4)
    np.testing.assert_array_equal(indices, [1, 3, 0, 2])
    np.testing.assert_array_equal(weights, [1, 1, 0, 0])
    np.testing.assert_array_equal(keep2, keep)
    trimmed, indices, weights = compact(jnp.ones((5,), bool), 3)
    np.testing.assert_array_equal(trimmed, [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(weights, [1, 1, 1])
