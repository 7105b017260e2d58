"""Loss-based, JEST, combined and chained curators, and make_curator's registry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from curation import make_curator
from curation.base import joint_embedding
from curation.combined import combined, masked_zscore
from curation.jest import chunk_sizes as jest_chunk_sizes, jest
from curation.loss_scores import loss_curator
from curation.prototypes import PrototypeConfig, assign
from curation.quantile_rule import OUTLIER, quantile_regions

B = 200


def planted_losses(rng: np.random.Generator) -> tuple[dict[str, jax.Array], np.ndarray, np.ndarray]:
    """Rows 0..39 learnable (learner high, reference low), 40..79 noise (both high), rest easy."""
    learner = rng.uniform(0.0, 1.0, B)
    reference = rng.uniform(0.0, 1.0, B)
    learner[:80] += 3.0
    reference[40:80] += 3.0
    perm = rng.permutation(B)
    losses = {"learner": jnp.asarray(learner[perm], jnp.float32),
              "reference": jnp.asarray(reference[perm], jnp.float32)}
    inverse = np.argsort(perm)
    return losses, inverse[:40], inverse[40:80]


def random_embeddings(rng: np.random.Generator, batch: int = B, dim: int = 16) -> dict[str, jax.Array]:
    x = rng.normal(size=(batch, dim))
    text = x + 0.3 * rng.normal(size=x.shape)
    return {"image": jnp.asarray(x, jnp.float32), "text": jnp.asarray(text, jnp.float32)}


def test_learnability_topk_finds_planted_pairs():
    rng = np.random.default_rng(0)
    losses, learnable, noise = planted_losses(rng)
    curator = loss_curator("learnability", keep_fraction=0.2)
    keep, info = jax.jit(curator.select)(curator.init(None, {}), random_embeddings(rng), losses,
                                         jax.random.key(0))
    assert curator.capacity(B) == 40
    np.testing.assert_array_equal(np.flatnonzero(keep), np.sort(learnable))
    np.testing.assert_array_equal(np.sort(np.asarray(info["indices"])), np.sort(learnable))
    # the hard-learner score cannot tell learnable from noise
    keep_hard, _ = loss_curator("learner", keep_fraction=0.2).select(None, random_embeddings(rng), losses,
                                                                    jax.random.key(0))
    assert np.isin(np.flatnonzero(keep_hard), noise).sum() > 10


def test_temperature_sampling_mostly_learnable_and_seeded():
    rng = np.random.default_rng(1)
    losses, learnable, _ = planted_losses(rng)
    curator = loss_curator("rho", super_batch_ratio=5.0, sampler="sample", temperature=0.3)
    embeddings = random_embeddings(rng)
    keep_a, _ = curator.select(None, embeddings, losses, jax.random.key(3))
    keep_b, _ = curator.select(None, embeddings, losses, jax.random.key(3))
    keep_c, _ = curator.select(None, embeddings, losses, jax.random.key(4))
    np.testing.assert_array_equal(keep_a, keep_b)
    assert not np.array_equal(keep_a, keep_c)
    assert int(keep_a.sum()) == 40 and np.isin(np.flatnonzero(keep_a), learnable).mean() > 0.8


def test_missing_reference_loss_is_a_clear_error():
    curator = loss_curator("learnability")
    with pytest.raises(KeyError, match="reference"):
        curator.select(None, random_embeddings(np.random.default_rng(0)),
                       {"learner": jnp.zeros((B,))}, jax.random.key(0))


def jest_world(rng: np.random.Generator, dim: int = 32):
    """Learnable pairs: learner mismatched, reference matched; noise: both mismatched; easy: both matched."""
    image = rng.normal(size=(B, dim))
    other = rng.normal(size=(B, dim))
    kind = rng.permutation(np.repeat([0, 1, 2], [40, 40, 120]))  # 0 learnable, 1 noise, 2 easy
    learner_text = np.where((kind == 2)[:, None], image, other)
    ref_text = np.where((kind == 1)[:, None], other, image)
    as_f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return {"image": as_f32(image), "text": as_f32(learner_text), "ref_image": as_f32(image),
            "ref_text": as_f32(ref_text)}, kind


@pytest.mark.parametrize("temperature,min_share", [(0.0, 0.95), (1.0, 0.8)])
def test_jest_prefers_learnable_pairs(temperature, min_share):
    embeddings, kind = jest_world(np.random.default_rng(0))
    curator = jest(filter_ratio=0.8, n_chunks=4, temperature=temperature)
    keep, info = jax.jit(curator.select)(curator.init(None, embeddings), embeddings, {}, jax.random.key(0))
    assert int(keep.sum()) == curator.capacity(B) == 40
    assert (kind[np.asarray(keep)] == 0).mean() >= min_share
    assert float(info["learnability_kept"]) > 0


@pytest.mark.parametrize("batch", [8, 16, 32, 64, 100, 128])
def test_jest_keeps_its_share_of_every_batch_size(batch):
    embeddings = random_embeddings(np.random.default_rng(batch), batch)
    curator = jest(filter_ratio=0.8, n_chunks=16, temperature=1.0)
    keep, _ = jax.jit(curator.select)(None, embeddings, {}, jax.random.key(0))
    assert int(keep.sum()) == curator.capacity(batch) == max(1, round(0.2 * batch))
    assert jest_chunk_sizes(13, 16) == [1] * 13 and jest_chunk_sizes(20, 16) == [2] * 4 + [1] * 12


def test_jest_without_reference_is_hard_learner_selection():
    embeddings, kind = jest_world(np.random.default_rng(0))
    learner_only = {k: embeddings[k] for k in ("image", "text")}
    keep, _ = jest(n_chunks=4, temperature=0.0).select(None, learner_only, {}, jax.random.key(0))
    assert (kind[np.asarray(keep)] == 2).mean() < 0.1  # matched (easy) pairs are not chosen


def test_combined_weights_switch_between_loss_and_rarity():
    rng = np.random.default_rng(0)
    losses, learnable, _ = planted_losses(rng)
    embeddings = random_embeddings(rng)
    protos = PrototypeConfig(num_prototypes=3, warmup_batches=0)
    loss_only = combined(protos, w_loss=1.0, w_rarity=0.0, drop_outliers=False)
    state = loss_only.init(None, embeddings)
    keep, _ = jax.jit(loss_only.select)(state, embeddings, losses, jax.random.key(0))
    np.testing.assert_array_equal(np.flatnonzero(keep), np.sort(learnable))

    rarity_only = combined(protos, w_loss=0.0, w_rarity=1.0, keep_fraction=0.3)
    keep, info = jax.jit(rarity_only.select)(state, embeddings, losses, jax.random.key(0))
    cluster, distance = assign(state.prototypes, joint_embedding(embeddings))
    everyone = jnp.ones((B,), bool)
    rarity = np.asarray(masked_zscore(distance, cluster, everyone, 3))
    outlier = np.asarray(quantile_regions(distance, cluster, everyone, 3, 0.0, 0.95) == OUTLIER)
    expected = np.sort(np.argsort(-np.where(outlier, -np.inf, rarity))[:rarity_only.capacity(B)])
    assert int(info["n_outlier"]) == outlier.sum() > 0
    np.testing.assert_array_equal(np.flatnonzero(keep), expected)


def test_combined_warmup_uses_loss_only():
    rng = np.random.default_rng(0)
    losses, learnable, _ = planted_losses(rng)
    curator = combined(PrototypeConfig(num_prototypes=3, warmup_batches=2))
    embeddings = random_embeddings(rng)
    state = curator.init(None, embeddings)
    keep, info = jax.jit(curator.select)(state, embeddings, losses, jax.random.key(0))
    assert bool(info["warmup"]) and (np.asarray(info["cluster"]) == -1).all()
    np.testing.assert_array_equal(np.flatnonzero(keep), np.sort(learnable))


def config(**curator) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict({"curator": curator})


def test_make_curator_by_name_with_overrides():
    rng = np.random.default_rng(0)
    embeddings = random_embeddings(rng, 480)
    assert make_curator(config(name="none")).capacity(480) == 480
    assert make_curator(config(name="chexficient")).capacity(480) == 114
    assert make_curator(config(name="chexficient", chexficient={"max_per_cluster": 5})).capacity(480) == 84
    assert make_curator(config(name="loss", loss={"super_batch_ratio": 4.0})).capacity(480) == 120
    assert make_curator(config(name="jest")).capacity(480) == 96
    assert make_curator(config(name="combined")).capacity(480) == 96
    keep, info = make_curator(config(name="none")).select(None, embeddings, {}, jax.random.key(0))
    assert bool(keep.all()) and float(info["weights"].sum()) == 480
    with pytest.raises(ValueError, match="valid: none, chexficient"):
        make_curator(config(name="nope"))
    with pytest.raises(ValueError, match="central sampler"):
        make_curator(config(name="chexficient", chexficient={"central_sampler": "nearest"}))
    with pytest.raises(ValueError, match="max_per_cluster must be >= 0"):  # capacity 7 before
        make_curator(config(name="chexficient", chexficient={"max_per_cluster": -1}))


def test_chain_selects_within_previous_stage():
    rng = np.random.default_rng(0)
    losses, learnable, noise = planted_losses(rng)
    embeddings = random_embeddings(rng)
    curator = make_curator(config(name="chain", chain=("loss", "chexficient"),
                                  loss={"score": "learner", "keep_fraction": 0.4},
                                  prototypes={"num_prototypes": 2, "warmup_batches": 0},
                                  chexficient={"max_per_cluster": 5}))
    state = curator.init(jax.random.key(0), embeddings)
    keep, info = jax.jit(curator.select)(state, embeddings, losses, jax.random.key(0))
    first_stage = np.isin(np.arange(B), np.concatenate([learnable, noise]))
    keep = np.asarray(keep)
    assert keep.any() and not keep[~first_stage].any()
    assert int(info["stage0/n_kept"]) == 80 and int(info["n_kept"]) == keep.sum()
    assert curator.capacity(B) == min(80, 2 * 5 + 20 + 2)
    assert (np.asarray(info["cluster"])[first_stage] >= 0).all()
    state = jax.jit(curator.update)(state, embeddings, jnp.asarray(keep))
    assert int(state[0].step) == 1 and int(state[1].step) == 1
