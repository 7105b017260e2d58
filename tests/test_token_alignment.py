"""Token alignment: the loss against a plain numpy reference, its masking and weights, the
model's token heads, and a run that trains with it (then loads in the bench and init_from)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from chexficient.checkpoint import load_model
from chexficient.models import build_model
from downstream.encoders import Encoders
from pretrain.losses import token_alignment
from pretrain.train import init_towers_from, train
from tests.conftest import micro_config
from tests.test_models import inputs, tiny_config

B, P, L, E = 4, 6, 5, 8
TEMPERATURE = 0.2


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def tokens(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = np.arange(L)[None] < np.array([[5], [3], [1], [4]])
    return unit(rng.normal(size=(B, P, E))), unit(rng.normal(size=(B, L, E))), mask


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def info_nce(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Cross-entropy of query i against key i among all keys, per query (float64)."""
    logits = queries @ keys.T / TEMPERATURE
    return -np.log(np.diag(softmax(logits)))


def reference(patches, words, mask) -> np.ndarray:
    """Per example, on the real words only (a plain sub-array), float64."""
    out = []
    for p, w, m in zip(patches.astype(np.float64), words.astype(np.float64), mask):
        w = w[m]
        sim = w @ p.T / TEMPERATURE
        word_ctx = unit(softmax(sim) @ p).astype(np.float64)
        patch_ctx = unit(softmax(sim.T) @ w).astype(np.float64)
        out.append(0.5 * (info_nce(w, word_ctx).mean() + info_nce(p, patch_ctx).mean()))
    return np.array(out)


@pytest.mark.parametrize('seed', [0, 1])
def test_matches_numpy_reference_and_ignores_padding(seed):
    patches, words, mask = tokens(seed)
    mean, per_example = jax.jit(token_alignment, static_argnums=3)(patches, words, mask,
                                                                    TEMPERATURE)
    np.testing.assert_allclose(per_example, reference(patches, words, mask), rtol=1e-4)
    np.testing.assert_allclose(mean, per_example.mean(), rtol=1e-6)
    scrambled = words.copy()
    scrambled[~mask] = unit(np.random.default_rng(9).normal(size=(int((~mask).sum()), E)))
    np.testing.assert_allclose(token_alignment(patches, scrambled, mask, TEMPERATURE)[1],
                               per_example, rtol=1e-6)


def test_words_pointing_at_their_own_patches_score_lower_than_shuffled():
    rng = np.random.default_rng(2)
    patches = unit(rng.normal(size=(B, P, E)))
    aligned = patches[:, :L] + 0.1 * rng.normal(size=(B, L, E))  # word i sits on patch i
    mask = np.ones((B, L), bool)
    matched = token_alignment(patches, unit(aligned), mask, TEMPERATURE)[0]
    shuffled = token_alignment(patches, unit(aligned[::-1]), mask, TEMPERATURE)[0]
    assert matched < 0.5 * shuffled


def test_weights_drop_rows_and_weight_the_mean():
    patches, words, mask = tokens(3)
    weights = np.array([1.0, 0.0, 2.0, 0.5], np.float32)
    mean, per_example = token_alignment(patches, words, mask, TEMPERATURE, weights)
    full = np.asarray(token_alignment(patches, words, mask, TEMPERATURE)[1])
    assert per_example[1] == 0.0
    np.testing.assert_allclose(mean, (full * weights).sum() / weights.sum(), rtol=1e-6)
    grad = jax.grad(lambda w: token_alignment(patches, w, mask, TEMPERATURE, weights)[0])(words)
    assert np.all(np.asarray(grad)[1] == 0) and np.all(np.isfinite(grad))


def test_token_heads_leave_the_towers_unchanged_and_get_gradients():
    plain = build_model(tiny_config(), nnx.Rngs(0))
    config = tiny_config()
    config.local_dim = 10
    model = build_model(config, nnx.Rngs(0))
    same = jax.tree.map(np.array_equal, nnx.state(plain.image, nnx.Param),
                        nnx.state(model.image, nnx.Param))
    assert all(jax.tree.leaves(same))  # same seed, same towers: A/B runs differ only in the loss
    images, ids, mask = inputs()
    img, txt, patches, words = model.encode_tokens(images, ids, mask)
    global_img, global_txt = model(images, ids, mask)
    np.testing.assert_allclose(img, global_img, rtol=1e-6)
    np.testing.assert_allclose(txt, global_txt, rtol=1e-6)
    assert patches.shape == (3, 16, 10) and words.shape == (3, 8, 10)
    np.testing.assert_allclose(jnp.linalg.norm(patches, axis=-1), 1.0, rtol=1e-5)
    graphdef, params = nnx.split(model)

    def loss(params):
        return token_alignment(*nnx.merge(graphdef, params).encode_tokens(images, ids, mask)[2:],
                               mask)[0]

    grads = jax.jit(jax.grad(loss))(params)
    for head in ('image_local_proj', 'text_local_proj'):
        assert np.abs(np.asarray(grads[head]['kernel'][...])).sum() > 0
    with pytest.raises(ValueError, match='model.local_dim'):
        plain.encode_tokens(images, ids, mask)


def test_the_term_needs_token_heads(micro, tmp_path):
    config = micro_config(micro)
    config.token_alignment.weight = 1.0
    with pytest.raises(ValueError, match="model.local_dim"):
        train(config, str(tmp_path))


def test_a_run_with_the_term_logs_both_losses_and_the_bench_loads_it(micro, tmp_path):
    config = micro_config(micro, **{"total_epochs": 1.0, "eval.every_steps": 4})
    config.model.local_dim = 32
    config.token_alignment.weight = 0.5
    train(config, str(tmp_path))
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    steps = [r for r in rows if "global_loss" in r]
    assert steps and all(r["loss"] == pytest.approx(r["global_loss"] + 0.5 * r["token_alignment"],
                                                    rel=1e-5) for r in steps)
    assert any("val/token_alignment" in r for r in rows)
    encoders = Encoders.from_checkpoint(str(tmp_path))
    assert encoders.model.image_local_proj is not None
    # init_from copies the chosen tower with its projection and token head, nothing else.
    source, run_config = load_model(str(tmp_path))
    target = build_model(run_config.model, nnx.Rngs(7))
    init_towers_from(target, str(tmp_path), "image")
    for name, copied in (("image", True), ("image_proj", True), ("image_local_proj", True),
                         ("text", False), ("text_local_proj", False)):
        same = jax.tree.map(np.array_equal, nnx.state(getattr(source, name), nnx.Param),
                            nnx.state(getattr(target, name), nnx.Param))
        assert all(jax.tree.leaves(same)) == copied, name
