"""Curators and non-finite inputs: a NaN/inf score or embedding is never kept and never enters
the prototypes; the finite rows are selected as if the bad ones were not candidates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from curation.base import top_k_keep
from curation.combined import combined
from curation.jest import jest
from curation.loss_scores import loss_curator
from curation.prototypes import PrototypeConfig, init_state, kmeans, update_state
from curation.quantile_rule import chexficient

B = 64
BAD = np.array([0, 5, 7])  # rows made non-finite


def pairs(rng: np.random.Generator, batch: int = B, dim: int = 16) -> dict[str, jax.Array]:
    image = rng.normal(size=(batch, dim))
    return {"image": jnp.asarray(image, jnp.float32),
            "text": jnp.asarray(image + 0.3 * rng.normal(size=image.shape), jnp.float32)}


def spoiled(x: jax.Array) -> jax.Array:
    """x with rows BAD set to NaN, inf and -inf."""
    values = jnp.array([jnp.nan, jnp.inf, -jnp.inf])
    return x.at[BAD].set(values.reshape((-1,) + (1,) * (x.ndim - 1)) * jnp.ones_like(x[BAD]))


def others() -> jax.Array:
    """Candidates: every row but BAD."""
    return jnp.ones((B,), bool).at[BAD].set(False)


def test_top_k_never_keeps_non_finite_scores():
    score = spoiled(jnp.arange(B, dtype=jnp.float32))
    keep = np.asarray(top_k_keep(score, 4, jnp.ones((B,), bool)))
    np.testing.assert_array_equal(np.flatnonzero(keep), [60, 61, 62, 63])  # not the NaN and +inf rows
    sampled = top_k_keep(score, B - 1, jnp.ones((B,), bool), jax.random.key(0), temperature=1.0)
    assert int(sampled.sum()) == B - len(BAD) and not np.asarray(sampled)[BAD].any()


@pytest.mark.parametrize("sampler", ["topk", "sample"])
def test_loss_curator_keeps_the_finite_rows_it_would_keep_anyway(sampler):
    rng = np.random.default_rng(0)
    learner = jnp.asarray(rng.normal(size=B), jnp.float32)
    curator = loss_curator(score="learner", keep_fraction=0.25, sampler=sampler)
    embeddings = pairs(rng)
    keep, info = curator.select(None, embeddings, {"learner": spoiled(learner)}, jax.random.key(1))
    clean, _ = curator.select(None, embeddings, {"learner": learner}, jax.random.key(1),
                              candidates=others())
    np.testing.assert_array_equal(keep, clean)
    assert int(keep.sum()) == curator.capacity(B) and np.isfinite(float(info["mean_score_kept"]))


def test_combined_ignores_a_nan_loss_and_a_nan_embedding():
    rng = np.random.default_rng(0)
    embeddings = pairs(rng)
    losses = {"learner": jnp.asarray(rng.normal(size=B), jnp.float32),
              "reference": jnp.asarray(rng.normal(size=B), jnp.float32)}
    curator = combined(PrototypeConfig(num_prototypes=3, warmup_batches=0))
    state = curator.init(None, embeddings)
    bad_loss = dict(losses, learner=spoiled(losses["learner"]))
    bad_image = dict(embeddings, image=spoiled(embeddings["image"]))
    for (emb, loss), select in zip([(embeddings, bad_loss), (bad_image, losses)] * 2,
                                   [curator.select] * 2 + [jax.jit(curator.select)] * 2):
        clean, clean_info = select(state, embeddings, losses, jax.random.key(0),
                                   candidates=others())
        keep, info = select(state, emb, loss, jax.random.key(0))
        np.testing.assert_array_equal(keep, clean)
        np.testing.assert_array_equal(np.delete(np.asarray(info["score"]), BAD),
                                      np.delete(np.asarray(clean_info["score"]), BAD))


def test_jest_never_keeps_a_pair_with_a_nan_embedding():
    rng = np.random.default_rng(0)
    embeddings = pairs(rng)
    curator = jest(filter_ratio=0.5)
    bad = dict(embeddings, text=spoiled(embeddings["text"]))
    keep, info = curator.select(None, bad, None, jax.random.key(0))
    assert int(keep.sum()) == curator.capacity(B) and not np.asarray(keep)[BAD].any()
    assert np.isfinite(float(info["learnability_kept"]))


@pytest.mark.parametrize("sampler", ["farthest", "density", "random"])
def test_chexficient_nan_pair_is_not_kept_and_leaves_the_prototypes_alone(sampler):
    rng = np.random.default_rng(0)
    embeddings = pairs(rng)
    curator = chexficient(PrototypeConfig(num_prototypes=3, warmup_batches=0), max_per_cluster=4,
                          central_sampler=sampler)
    state = curator.init(None, embeddings)
    bad = dict(embeddings, image=spoiled(embeddings["image"]))
    keep, _ = curator.select(state, bad, None, jax.random.key(0))
    clean, _ = curator.select(state, embeddings, None, jax.random.key(0), candidates=others())
    np.testing.assert_array_equal(keep, clean)
    # the NaN rows, even kept by the caller, are no members: the prototypes move as without them
    forced = keep.at[BAD].set(True)
    np.testing.assert_array_equal(curator.update(state, bad, forced).prototypes,
                                  curator.update(state, embeddings, keep).prototypes)


def test_warmup_buffer_skips_nan_rows_and_kmeans_ignores_them():
    rng = np.random.default_rng(0)
    centers = np.eye(16)[:4] * 5
    x = centers[rng.integers(0, 4, B)] + 0.1 * rng.normal(size=(B, 16))
    joint = spoiled(jnp.asarray(x, jnp.float32))
    config = PrototypeConfig(num_prototypes=4, warmup_batches=2)
    state = init_state(config, joint)
    for _ in range(2):
        state = update_state(config, state, joint, jnp.ones((B,), bool))
    prototypes = np.asarray(state.prototypes)
    assert bool(state.initialized) and np.isfinite(prototypes).all()
    assert np.all((np.eye(16)[:4] @ prototypes.T).max(axis=1) > 0.99)  # every centre found
    nothing = kmeans(jnp.full((8, 16), jnp.nan), 2, 3, jax.random.key(0))
    np.testing.assert_array_equal(nothing, 0.0)  # no finite row: no centroid, but no NaN


def test_an_update_of_another_batch_size_than_init_is_refused():
    rng = np.random.default_rng(0)
    curator = chexficient(PrototypeConfig(num_prototypes=3, warmup_batches=2))
    state = curator.init(None, pairs(rng, 8))
    with pytest.raises(ValueError, match="sized by init for 2 batches of 8"):
        curator.update(state, pairs(rng, 64), jnp.ones((64,), bool))
    with pytest.raises(ValueError, match="batch of 4 rows"):
        jax.jit(curator.update)(state, pairs(rng, 4), jnp.ones((4,), bool))
