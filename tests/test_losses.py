"""Contrastive losses against plain numpy references that drop weight-0 rows by subsetting."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pretrain.losses import sigmoid_contrastive, softmax_contrastive

B, D = 9, 6
SCALE, BIAS = np.log(10.0), -3.0


def unit_rows(rng: np.random.Generator) -> np.ndarray:
    x = rng.normal(size=(B, D))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return np.squeeze(m, axis) + np.log(np.exp(x - m).sum(axis=axis))


def reference(kind: str, img, txt, weights):
    """Loss on the kept rows only (a plain sub-batch), scattered back; float64."""
    w = np.ones(B) if weights is None else np.asarray(weights, np.float64)
    kept = np.flatnonzero(w > 0)
    logits = np.exp(SCALE) * img[kept].astype(np.float64) @ txt[kept].astype(np.float64).T
    if kind == 'softmax':
        diag = np.diag(logits)
        kept_loss = 0.5 * ((logsumexp(logits, 1) - diag) + (logsumexp(logits, 0) - diag))
    else:
        kept_loss = np.zeros(len(kept))
        for a in range(len(kept)):
            for b in range(len(kept)):
                z = 1.0 if a == b else -1.0
                pair = np.logaddexp(0.0, -z * (logits[a, b] + BIAS))  # -log sigmoid(z * x)
                kept_loss[a] += 0.5 * pair
                kept_loss[b] += 0.5 * pair
    per_example = np.zeros(B)
    per_example[kept] = kept_loss
    return (per_example * w).sum() / w.sum(), per_example


def loss(kind: str, img, txt, weights=None):
    if kind == 'softmax':
        return softmax_contrastive(img, txt, SCALE, weights)
    return sigmoid_contrastive(img, txt, SCALE, BIAS, weights)


WEIGHTS = {
    'none': None,
    'keep_mask': np.array([1, 0, 1, 1, 0, 1, 1, 1, 0], np.float32),
    'float': np.array([0.5, 2.0, 0.0, 1.0, 1.5, 0.0, 0.25, 1.0, 3.0], np.float32),
}


@pytest.mark.parametrize('kind', ['softmax', 'sigmoid'])
@pytest.mark.parametrize('weights', list(WEIGHTS))
@pytest.mark.parametrize('seed', [0, 1])
def test_matches_numpy_reference(kind, weights, seed):
    rng = np.random.default_rng(seed)
    img, txt = unit_rows(rng), unit_rows(rng)
    mean, per_example = jax.jit(loss, static_argnums=0)(kind, img, txt, WEIGHTS[weights])
    ref_mean, ref_per_example = reference(kind, img, txt, WEIGHTS[weights])
    assert mean.dtype == per_example.dtype == jnp.float32
    np.testing.assert_allclose(per_example, ref_per_example, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-5)


@pytest.mark.parametrize('kind', ['softmax', 'sigmoid'])
def test_dropped_rows_are_neither_positive_nor_negative(kind):
    rng = np.random.default_rng(2)
    img, txt = unit_rows(rng), unit_rows(rng)
    weights = WEIGHTS['keep_mask']
    dropped = weights == 0
    other_img, other_txt = img.copy(), txt.copy()
    other_img[dropped], other_txt[dropped] = unit_rows(rng)[dropped], unit_rows(rng)[dropped]
    mean, per_example = loss(kind, img, txt, weights)
    other_mean, other_per_example = loss(kind, other_img, other_txt, weights)
    np.testing.assert_allclose(mean, other_mean, rtol=1e-6)
    np.testing.assert_allclose(per_example, other_per_example, rtol=1e-6)
    assert np.all(np.asarray(per_example)[dropped] == 0)
    grads = jax.grad(lambda i, t: loss(kind, i, t, weights)[0], argnums=(0, 1))(img, txt)
    for grad in grads:
        assert np.all(np.asarray(grad)[dropped] == 0)
        assert np.abs(np.asarray(grad)[~dropped]).sum() > 0


@pytest.mark.parametrize('kind', ['softmax', 'sigmoid'])
def test_all_dropped_is_zero_and_finite(kind):
    rng = np.random.default_rng(3)
    img, txt = unit_rows(rng), unit_rows(rng)
    weights = np.zeros(B, np.float32)
    mean, per_example = loss(kind, img, txt, weights)
    assert float(mean) == 0.0 and np.all(np.asarray(per_example) == 0)
    grad = jax.grad(lambda i: loss(kind, i, txt, weights)[0])(img)
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad) == 0)


def test_softmax_prefers_matched_pairs():
    rng = np.random.default_rng(4)
    img = unit_rows(rng)
    matched = softmax_contrastive(img, img, SCALE)[0]
    shuffled = softmax_contrastive(img, img[::-1], SCALE)[0]
    assert matched < shuffled


@pytest.mark.parametrize('kind', ['softmax', 'sigmoid'])
def test_rejects_bad_shapes(kind):
    rng = np.random.default_rng(5)
    img, txt = unit_rows(rng), unit_rows(rng)
    with pytest.raises(ValueError, match='img and txt'):
        loss(kind, img, txt[:, :3])
    with pytest.raises(ValueError, match='weights must have shape'):
        loss(kind, img, txt, np.ones(B + 1, np.float32))
