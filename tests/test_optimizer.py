"""AdamW pieces of the pretrainer: decay mask, frozen towers, tower multipliers, LR schedule."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from chexficient.models import build_model
from pretrain import optimizer
from pretrain.config import base_config


def _model_params(**optim):
    config = base_config("tiny")
    config.model.text.vocab_size = 50
    config.model.image.update(width=32, heads=2, depth=1, feature_layers=(1,))
    config.model.text.update(width=32, heads=2, depth=1)
    config.model.embed_dim = 16
    config.optim.update(optim)
    params = nnx.state(build_model(config.model, nnx.Rngs(0)), nnx.Param)
    return config, params


def _step(config, params):
    tx = optimizer.make_optimizer(config.optim, params)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = tx.update(grads, tx.init(params), params)
    return updates


def _by_path(tree):
    return {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_decay_mask_spares_norms_biases_and_scalars():
    _, params = _model_params()
    mask = _by_path(jax.tree_util.tree_map_with_path(optimizer.decays, params))
    assert not any(v for k, v in mask.items() if "norm" in k or "bias" in k or "logit" in k)
    assert any(v for k, v in mask.items() if "kernel" in k)


def test_weight_decay_moves_matrices_only():
    # With zero gradients only the decoupled decay acts: kernels move, biases/scales do not.
    config, params = _model_params(weight_decay=0.5, clip_norm=1e9)
    tx = optimizer.make_optimizer(config.optim, params)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates = _by_path(tx.update(zeros, tx.init(params), params)[0])
    values = _by_path(params)
    mask = _by_path(jax.tree_util.tree_map_with_path(optimizer.decays, params))
    assert sum(mask.values()) >= 8
    for key, u in updates.items():
        expected = 0.5 * values[key] if mask[key] else 0 * values[key]
        np.testing.assert_allclose(u, expected, rtol=1e-6, atol=1e-7, err_msg=key)


def test_frozen_tower_gets_no_update_and_multiplier_scales():
    config, params = _model_params(freeze="image", lr_mult=dict(image=1.0, text=0.5))
    updates = _by_path(_step(config, params))
    image = [v for k, v in updates.items() if k.startswith("['image']")]
    text = [v for k, v in updates.items() if k.startswith("['text']") and "kernel" in k]
    shared = [v for k, v in updates.items() if k.startswith("['text_proj']")]
    assert image and all(float(jnp.abs(v).max()) == 0 for v in image)
    # Adam's first step on a constant gradient has magnitude ~1 before the multiplier.
    assert all(float(jnp.abs(v).max()) < 0.6 for v in text)
    assert all(float(jnp.abs(v).max()) > 0.9 for v in shared)


def test_unknown_frozen_tower_is_an_error():
    config, params = _model_params(freeze="vision")
    with pytest.raises(ValueError, match="optim.freeze='vision'"):
        optimizer.make_optimizer(config.optim, params)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = ml_collections.ConfigDict(dict(lr=1e-3, warmup_frac=0.1, end_lr_factor=0.1))
    lr = [float(optimizer.learning_rate(cfg, s, 100)) for s in range(100)]
    assert lr[0] == pytest.approx(1e-4)  # (step + 1) / warmup
    assert lr[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))  # monotone cosine decay
    assert lr[-1] == pytest.approx(1e-4, rel=1e-2)
    assert float(optimizer.learning_rate(cfg, 55, 100)) == pytest.approx(1e-4 + 0.5 * 9e-4, rel=1e-2)


def test_short_runs_warm_up_over_at_least_min_warmup_steps():
    cfg = ml_collections.ConfigDict(dict(lr=1e-3, warmup_frac=0.05, min_warmup_steps=8,
                                         end_lr_factor=0.1))
    # 5% of a 32-step run is 2 steps; the floor makes it 8, the peak reached at step 7.
    assert float(optimizer.warmup_steps(cfg, 32)) == 8
    lr = [float(optimizer.learning_rate(cfg, s, 32)) for s in range(32)]
    assert lr[0] == pytest.approx(1e-3 / 8)
    assert lr[7] == pytest.approx(1e-3) and max(lr) == pytest.approx(1e-3)
    # Long runs keep their share; the floor never takes more than half a run.
    assert float(optimizer.warmup_steps(cfg, 800)) == 40
    assert float(optimizer.warmup_steps(cfg, 6)) == 3
    assert float(optimizer.warmup_steps(cfg, 1)) == 1
