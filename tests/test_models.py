"""CLIP towers: output shapes, padding invariance, feature maps, bf16 path, float32 scalars."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from chexficient.models import build_model
from pretrain.losses import sigmoid_contrastive

B, S, L = 3, 16, 8


def tiny_config(**image) -> ml_collections.ConfigDict:
    """A few-thousand-parameter CLIP; `image` overrides model.image fields."""
    return ml_collections.ConfigDict(dict(
        dtype='float32', embed_dim=12, temperature_init=0.07, bias_init=-10.0,
        image=dict(image_size=S, patch_size=4, width=16, depth=3, heads=2, mlp_ratio=2.0,
                   pool='map', registers=0, feature_layers=(1, 3)) | image,
        text=dict(vocab_size=50, width=24, depth=2, heads=2, mlp_ratio=2.0, max_len=L,
                  causal=True)))


def inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(B, S, S, 1)).astype(np.float32)
    tokens = rng.integers(1, 50, size=(B, L)).astype(np.int32)
    mask = np.arange(L)[None] < np.array([[3], [L], [1]])
    return images, np.where(mask, tokens, 0), mask


@pytest.mark.parametrize('pool', ['cls', 'mean', 'map'])
@pytest.mark.parametrize('registers', [0, 2])
def test_output_shapes(pool, registers):
    model = build_model(tiny_config(pool=pool, registers=registers), nnx.Rngs(0))
    images, tokens, mask = inputs()
    emb, aux = model.encode_image(images)
    assert emb.shape == (B, 12) and aux['pooled'].shape == (B, 16)
    assert aux['tokens'].shape == (B, (S // 4) ** 2, 16)
    assert [f.shape for f in aux['features']] == [(B, 4, 4, 16)] * 2
    txt = model.encode_text(tokens, mask)
    assert txt.shape == (B, 12)
    for x in (emb, txt):
        assert x.dtype == jnp.float32
        np.testing.assert_allclose(jnp.linalg.norm(x, axis=-1), 1.0, rtol=1e-5)
    img2, txt2 = model(images, tokens, mask)
    np.testing.assert_array_equal(img2, emb)
    np.testing.assert_array_equal(txt2, txt)


def test_features_are_patch_grids_of_the_requested_depths():
    model = build_model(tiny_config(pool='cls', registers=1, feature_layers=(3, 1)), nnx.Rngs(0))
    images, _, _ = inputs()
    _, aux = model.encode_image(images)
    deepest, shallow = aux['features']
    # The final tokens are the normalised patch grid after the last block.
    np.testing.assert_allclose(aux['tokens'], model.image.norm(deepest.reshape(B, 16, 16)),
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(shallow, deepest)


def test_patchify_is_row_major_over_the_patch_grid():
    model = build_model(tiny_config(), nnx.Rngs(0))
    patch_ids = np.arange(16, dtype=np.float32).reshape(4, 4)
    image = np.kron(patch_ids, np.ones((4, 4), np.float32))[None, :, :, None]
    patches = model.image.patchify(jnp.asarray(image))
    np.testing.assert_array_equal(patches[0], np.repeat(np.arange(16.0)[:, None], 16, axis=1))


@pytest.mark.parametrize('causal', [True, False])
def test_text_ignores_padding(causal):
    config = tiny_config()
    config.text.causal = causal
    model = build_model(config, nnx.Rngs(0))
    _, tokens, mask = inputs()
    emb = model.encode_text(tokens, mask)
    scrambled = np.where(mask, tokens, np.random.default_rng(1).integers(1, 50, tokens.shape))
    np.testing.assert_allclose(model.encode_text(scrambled, mask), emb, atol=1e-6)
    # Pooling is at the last real token: trimming the padding away changes nothing.
    np.testing.assert_allclose(model.encode_text(tokens[:1, :3], mask[:1, :3]), emb[:1], atol=1e-6)
    # ... while changing a real token does change the embedding.
    changed = tokens.copy()
    changed[:, 0] = (changed[:, 0] % 49) + 1
    assert not np.allclose(model.encode_text(changed, mask), emb, atol=1e-4)


def test_bfloat16_compute_is_close_to_float32_with_float32_params():
    images, tokens, mask = inputs()
    f32 = build_model(tiny_config(), nnx.Rngs(0))
    bf16_config = tiny_config()
    bf16_config.dtype = 'bfloat16'
    bf16 = build_model(bf16_config, nnx.Rngs(0))
    for a, b in zip(jax.tree.leaves(nnx.state(f32)), jax.tree.leaves(nnx.state(bf16))):
        assert b.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)
    for x, y in zip(f32(images, tokens, mask), bf16(images, tokens, mask)):
        assert y.dtype == jnp.float32
        np.testing.assert_allclose(x, y, atol=0.05)
    assert bf16.image.blocks[0].mlp.fc1(jnp.ones((1, 16))).dtype == jnp.bfloat16


def test_logit_scalars_are_float32_params_from_config():
    model = build_model(tiny_config(), nnx.Rngs(0))
    for param, value in ((model.logit_scale, np.log(1 / 0.07)), (model.logit_bias, -10.0)):
        assert isinstance(param, nnx.Param)
        assert param[...].shape == () and param[...].dtype == jnp.float32
        np.testing.assert_allclose(param[...], value, rtol=1e-6)


def test_init_is_deterministic_in_the_seed():
    params = [nnx.state(build_model(tiny_config(), nnx.Rngs(seed)), nnx.Param) for seed in (0, 0, 1)]
    same = jax.tree.leaves(jax.tree.map(np.array_equal, params[0], params[1]))
    differ = jax.tree.leaves(jax.tree.map(np.array_equal, params[0], params[2]))
    assert all(same)
    assert not all(differ)


@pytest.mark.parametrize('pool,registers', [('cls', 1), ('mean', 2), ('map', 0)])
def test_every_parameter_gets_a_gradient(pool, registers):
    model = build_model(tiny_config(pool=pool, registers=registers), nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    images, tokens, mask = inputs()

    def loss(params):
        clip = nnx.merge(graphdef, params)
        img, txt = clip(images, tokens, mask)
        return sigmoid_contrastive(img, txt, clip.logit_scale[...], clip.logit_bias[...])[0]

    grads = jax.jit(jax.grad(loss))(params)
    flat = jax.tree_util.tree_leaves_with_path(grads)
    dead = [jax.tree_util.keystr(path) for path, g in flat if not np.any(np.asarray(g) != 0)]
    assert not dead
    assert all(np.all(np.isfinite(g)) for _, g in flat)


@pytest.mark.parametrize('field,value,match', [
    ('pool', 'max', 'unknown pool'),
    ('patch_size', 5, 'not divisible by patch_size'),
    ('feature_layers', (0, 2), 'must lie in 1..depth'),
])
def test_bad_image_config_is_rejected(field, value, match):
    with pytest.raises(ValueError, match=match):
        build_model(tiny_config(**{field: value}), nnx.Rngs(0))


def test_bad_inputs_and_dtype_are_rejected():
    config = tiny_config()
    config.dtype = 'float16'
    with pytest.raises(ValueError, match='model.dtype'):
        build_model(config, nnx.Rngs(0))
    model = build_model(tiny_config(), nnx.Rngs(0))
    images, tokens, mask = inputs()
    with pytest.raises(ValueError, match='images must have shape'):
        model.encode_image(images[:, :8])
    with pytest.raises(ValueError, match='L <= 8'):
        model.encode_text(np.tile(tokens, 2), np.tile(mask, 2))


def _reference_attention(q, k, v, mask):
    """Plain multi-head attention on [B,T,H,D] arrays: softmax(q k^T / sqrt(D) + mask) v."""
    logits = jnp.einsum('bthd,bshd->bhts', q, k) / np.sqrt(q.shape[-1])
    logits = jnp.where(mask, logits, -1e30)
    return jnp.einsum('bhts,bshd->bthd', jax.nn.softmax(logits, axis=-1), v)


@pytest.mark.parametrize('cross', [False, True])
def test_attention_matches_plain_softmax_attention_in_value_and_gradient(cross):
    """Our attention (hand-written VJP, heads-major batched matmuls) against the textbook one."""
    from chexficient.models.layers import Attention

    b, t, s, w, h = 2, 5, 7 if cross else 5, 12, 3
    layer = Attention(w, h, dtype=jnp.float32, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((b, t, w)), jnp.float32)
    context = jnp.asarray(rng.standard_normal((b, s, w)), jnp.float32) if cross else None
    keep = jnp.asarray(np.arange(s)[None, :] < np.array([[s], [s - 2]]))[:, None, None, :]
    causal = not cross

    def ours(x, layer):
        return layer(x, context, mask=keep, causal=causal)

    def reference(x, layer):
        kv = layer.key_value(x if context is None else context)
        split = lambda z: z.reshape(b, z.shape[1], h, w // h)  # noqa: E731
        mask = keep & (jnp.tril(jnp.ones((t, s), bool)) if causal else True)
        y = _reference_attention(split(layer.query(x)), split(kv[..., :w]), split(kv[..., w:]), mask)
        return layer.out(y.reshape(b, t, w))

    np.testing.assert_allclose(ours(x, layer), reference(x, layer), atol=1e-5)
    loss = lambda f: lambda x, layer: jnp.sum(jnp.sin(f(x, layer)))  # noqa: E731
    g_ours = nnx.grad(loss(ours), argnums=(0, 1))(x, layer)
    g_ref = nnx.grad(loss(reference), argnums=(0, 1))(x, layer)
    jax.tree.map(lambda a, r: np.testing.assert_allclose(a, r, atol=1e-5), g_ours, g_ref)


def _qkv_and_mask(dtype=jnp.float32):
    rng = np.random.default_rng(1)
    q, k, v = (jnp.asarray(rng.standard_normal((2, n, 4, 8)), dtype) for n in (5, 7, 7))
    keep = jnp.asarray(np.arange(7)[None, :] < np.array([[7], [4]]))[:, None, None, :]
    return q, k, v, keep


@pytest.mark.parametrize('masked', [False, True])
def test_jax_attention_path_computes_the_same_function_as_ours(masked):
    """`attention(implementation=...)` runs jax.nn.dot_product_attention (the path GPUs take):
    the same values and gradients as the batched-matmul attention CPUs run."""
    from chexficient.models.layers import attention, dot_product_attention

    q, k, v, keep = _qkv_and_mask()
    mask = keep if masked else None
    loss = lambda f: lambda q, k, v: jnp.sum(jnp.sin(f(q, k, v)))  # noqa: E731
    ours = lambda q, k, v: dot_product_attention(q, k, v, mask)  # noqa: E731
    jaxs = lambda q, k, v: attention(q, k, v, mask, implementation='xla')  # noqa: E731
    np.testing.assert_allclose(jaxs(q, k, v), ours(q, k, v), atol=1e-5)
    g_ours = jax.grad(loss(ours), argnums=(0, 1, 2))(q, k, v)
    g_jax = jax.grad(loss(jaxs), argnums=(0, 1, 2))(q, k, v)
    jax.tree.map(lambda a, r: np.testing.assert_allclose(a, r, atol=1e-5), g_jax, g_ours)


def test_fused_attention_is_asked_for_only_on_gpus_in_16_bits_and_falls_back(monkeypatch):
    """On a GPU in bfloat16 without a mask `attention` asks for cuDNN's kernel; where cuDNN
    cannot run (here: no GPU behind the pretended backend) it warns and computes the same
    attention by batched matmuls."""
    from chexficient.models import layers

    q, k, v, keep = _qkv_and_mask(jnp.bfloat16)
    assert not layers.fused_attention_applies(q, None)  # this CPU
    monkeypatch.setattr(layers.jax, 'default_backend', lambda: 'gpu')
    assert layers.fused_attention_applies(q, None)
    assert not layers.fused_attention_applies(q, keep)  # masks: the batched-matmul path
    assert not layers.fused_attention_applies(q.astype(jnp.float32), None)
    with pytest.warns(UserWarning, match='cuDNN fused attention does not run here'):
        out = layers.attention(q, k, v)
    np.testing.assert_array_equal(out, layers.dot_product_attention(q, k, v))


def test_block_with_folded_layernorm_matches_textbook_pre_ln_block_in_value_and_gradient():
    """The block folds each LayerNorm's affine into the next linear layers: same function and
    same gradients (for every parameter, norms included) as LayerNorm -> linear written plainly."""
    from chexficient.models.layers import Block

    b, t, w, h = 2, 5, 12, 3
    block = Block(w, h, 2.0, dtype=jnp.float32, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    for norm in (block.norm1, block.norm2):  # away from the identity init, or folding is untested
        norm.scale[...] = jnp.asarray(rng.uniform(0.5, 1.5, w), jnp.float32)
        norm.bias[...] = jnp.asarray(rng.standard_normal(w), jnp.float32)
    x = jnp.asarray(rng.standard_normal((b, t, w)) * 3 + 1, jnp.float32)
    keep = jnp.asarray(np.arange(t)[None, :] < np.array([[t], [t - 2]]))[:, None, None, :]

    def linear(layer, z):
        return jnp.einsum('btw,wo->bto', z, layer.kernel[...]) + layer.bias[...]

    def reference(x, block):
        a, m = block.attn, block.mlp
        z = nnx.LayerNorm.__call__(block.norm1, x)
        split = lambda y: y.reshape(b, t, h, w // h)  # noqa: E731
        kv = linear(a.key_value, z)
        y = _reference_attention(split(linear(a.query, z)), split(kv[..., :w]), split(kv[..., w:]),
                                 keep & jnp.tril(jnp.ones((t, t), bool)))
        x = x + linear(a.out, y.reshape(b, t, w))
        z = nnx.LayerNorm.__call__(block.norm2, x)
        return x + linear(m.fc2, jax.nn.gelu(linear(m.fc1, z)))

    ours = lambda x, block: block(x, mask=keep, causal=True)  # noqa: E731
    np.testing.assert_allclose(ours(x, block), reference(x, block), atol=2e-5)
    loss = lambda f: lambda x, block: jnp.sum(jnp.sin(f(x, block)))  # noqa: E731
    g_ours = nnx.grad(loss(ours), argnums=(0, 1))(x, block)
    g_ref = nnx.grad(loss(reference), argnums=(0, 1))(x, block)
    jax.tree.map(lambda a, r: np.testing.assert_allclose(a, r, atol=5e-5), g_ours, g_ref)
