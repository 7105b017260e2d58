"""flax.nnx models: ViT image tower, text transformer, and the two-tower CLIP built from config."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
from flax import nnx

from chexficient.models.bert import BertText
from chexficient.models.clip import CLIP
from chexficient.models.text import TextTransformer
from chexficient.models.vit import ViT

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
TEXT_ARCHS = ('transformer', 'bert')

__all__ = ['BertText', 'CLIP', 'TextTransformer', 'ViT', 'build_model']


def build_model(model_config: ml_collections.ConfigDict, rngs: nnx.Rngs) -> CLIP:
    """CLIP from `config.model` (fields in pretrain/config.py); same rngs seed -> same params.

    `model.text.causal` (default True, as in CLIP) picks causal or bidirectional text attention;
    `model.text.arch` 'bert' builds a BERT-architecture text tower instead (`models/bert.py`);
    `norm_eps` and `mlp_act` of a tower follow a pretrained checkpoint (`models/pretrained.py`);
    `model.local_dim` (default 0: none) adds the token heads of the token alignment loss;
    `model.classes` (default 0: none) adds the supervised reference's multi-label head.
    """
    if model_config.dtype not in DTYPES:
        raise ValueError(f'model.dtype must be one of {sorted(DTYPES)}, got {model_config.dtype!r}')
    dtype = DTYPES[model_config.dtype]
    im, tx = model_config.image, model_config.text
    image = ViT(image_size=im.image_size, patch_size=im.patch_size, width=im.width, depth=im.depth,
                heads=im.heads, mlp_ratio=im.mlp_ratio, pool=im.pool, registers=im.registers,
                feature_layers=tuple(im.feature_layers), dtype=dtype, rngs=rngs,
                stem=im.get('stem', 'patch'), norm_eps=im.get('norm_eps', 1e-6),
                mlp_act=im.get('mlp_act', 'gelu_tanh'))
    arch = tx.get('arch', 'transformer')
    if arch not in TEXT_ARCHS:
        raise ValueError(f'model.text.arch must be one of {TEXT_ARCHS}, got {arch!r}')
    sizes = dict(vocab_size=tx.vocab_size, width=tx.width, depth=tx.depth, heads=tx.heads,
                 mlp_ratio=tx.mlp_ratio, max_len=tx.max_len, dtype=dtype, rngs=rngs)
    text = (BertText(norm_eps=tx.get('norm_eps', 1e-12), **sizes) if arch == 'bert' else
            TextTransformer(causal=tx.get('causal', True), **sizes))
    return CLIP(image, text, embed_dim=model_config.embed_dim,
                temperature_init=model_config.temperature_init,
                bias_init=model_config.bias_init, rngs=rngs,
                local_dim=model_config.get('local_dim', 0),
                classes=model_config.get('classes', 0))
