"""A small transformer decoder writing reports from frozen image tokens; greedy and beam search.

Each block is causal self-attention, cross-attention over the (projected) image tokens, and
an MLP, pre-LayerNorm (blocks from chexficient.models.layers). Decoding keeps static shapes:
the whole [B, L] buffer is re-run each step, which is cheap at report lengths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from chexficient.models.layers import Attention, Mlp, dense, layer_norm

_normal = nnx.initializers.normal(0.02)


class DecoderBlock(nnx.Module):
    """x + self_attn(ln x) (causal), x + cross_attn(ln x, memory), x + mlp(ln x)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, *, rngs: nnx.Rngs):
        f32 = jnp.float32
        self.norm1, self.norm2, self.norm3 = (layer_norm(width, f32, rngs) for _ in range(3))
        self.self_attn = Attention(width, heads, dtype=f32, rngs=rngs)
        self.cross_attn = Attention(width, heads, dtype=f32, rngs=rngs)
        self.mlp = Mlp(width, mlp_ratio, dtype=f32, rngs=rngs)

    def __call__(self, x: jax.Array, memory: jax.Array) -> jax.Array:
        x = x + self.self_attn(self.norm1(x), causal=True)
        x = x + self.cross_attn(self.norm2(x), memory)
        return x + self.mlp(self.norm3(x))


class ReportDecoder(nnx.Module):
    """(image tokens [B,N,W_img], token ids [B,L]) -> next-token logits [B,L,vocab]."""

    def __init__(self, *, image_width: int, vocab_size: int, max_len: int, width: int = 128,
                 depth: int = 2, heads: int = 4, mlp_ratio: float = 4.0, rngs: nnx.Rngs):
        f32 = jnp.float32
        self.max_len = max_len
        self.memory_proj = dense(image_width, width, f32, rngs)
        self.memory_norm = layer_norm(width, f32, rngs)
        self.embed = nnx.Embed(vocab_size, width, param_dtype=f32, embedding_init=_normal,
                               rngs=rngs)
        self.pos_embed = nnx.Param(_normal(rngs.params(), (max_len, width), f32))
        self.blocks = nnx.List([DecoderBlock(width, heads, mlp_ratio, rngs=rngs)
                                for _ in range(depth)])
        self.norm = layer_norm(width, f32, rngs)
        self.out = dense(width, vocab_size, f32, rngs)

    def memory(self, image_tokens: jax.Array) -> jax.Array:
        """Image tokens [B,N,W_img] projected and normed to the decoder width: what it attends to."""
        return self.memory_norm(self.memory_proj(image_tokens))

    def logits(self, memory: jax.Array, ids: jax.Array) -> jax.Array:
        """Next-token logits [B,L,vocab] of token ids [B,L] attending over `memory`."""
        x = self.embed(ids) + self.pos_embed[:ids.shape[1]]
        for block in self.blocks:
            x = block(x, memory)
        return self.out(self.norm(x))

    def __call__(self, image_tokens: jax.Array, ids: jax.Array) -> jax.Array:
        return self.logits(self.memory(image_tokens), ids)


def greedy_decode(decoder: ReportDecoder, image_tokens: jax.Array, *, bos: int, eos: int,
                  pad: int) -> jax.Array:
    """Greedy ids [B, max_len] (bos first; after eos everything is pad)."""
    memory = decoder.memory(image_tokens)
    b, length = image_tokens.shape[0], decoder.max_len
    ids = jnp.full((b, length), pad, jnp.int32).at[:, 0].set(bos)

    def step(t, carry):
        ids, done = carry
        nxt = jnp.argmax(decoder.logits(memory, ids)[:, t - 1], axis=-1).astype(jnp.int32)
        nxt = jnp.where(done, pad, nxt)
        return ids.at[:, t].set(nxt), done | (nxt == eos)

    ids, _ = jax.lax.fori_loop(1, length, step, (ids, jnp.zeros((b,), bool)))
    return ids


def beam_decode(decoder: ReportDecoder, image_tokens: jax.Array, *, beams: int, bos: int,
                eos: int, pad: int, length_penalty: float = 1.0) -> jax.Array:
    """Beam-search ids [B, max_len]: the beam with the best length-normalised log-probability.

    A finished beam (eos emitted) keeps its score and only extends with pad. Scores are
    divided by (generated length) ** length_penalty when the final beam is chosen.
    """
    memory = jnp.repeat(decoder.memory(image_tokens), beams, axis=0)
    b, length = image_tokens.shape[0], decoder.max_len
    ids = jnp.full((b, beams, length), pad, jnp.int32).at[:, :, 0].set(bos)
    scores = jnp.where(jnp.arange(beams) == 0, 0.0, -jnp.inf) * jnp.ones((b, 1))
    done = jnp.zeros((b, beams), bool)
    lengths = jnp.zeros((b, beams), jnp.float32)

    def step(t, carry):
        ids, scores, done, lengths = carry
        logp = jax.nn.log_softmax(decoder.logits(memory, ids.reshape(b * beams, length))[:, t - 1])
        logp = logp.reshape(b, beams, -1)
        vocab = logp.shape[-1]
        only_pad = jnp.where(jnp.arange(vocab) == pad, 0.0, -jnp.inf)
        logp = jnp.where(done[..., None], only_pad, logp)
        total = (scores[..., None] + logp).reshape(b, beams * vocab)
        scores, flat = jax.lax.top_k(total, beams)
        parent, token = flat // vocab, (flat % vocab).astype(jnp.int32)
        ids = jnp.take_along_axis(ids, parent[..., None], axis=1).at[:, :, t].set(token)
        was_done = jnp.take_along_axis(done, parent, axis=1)
        lengths = jnp.take_along_axis(lengths, parent, axis=1) + (~was_done)
        return ids, scores, was_done | (token == eos), lengths

    ids, scores, _, lengths = jax.lax.fori_loop(1, length, step, (ids, scores, done, lengths))
    best = jnp.argmax(scores / jnp.maximum(lengths, 1.0) ** length_penalty, axis=1)
    return jnp.take_along_axis(ids, best[:, None, None], axis=1)[:, 0]
