"""The jitted hot path: full-data step, curated step and eval step, built from a config.

The curated step embeds the whole super-batch without gradients, lets the curator pick a
fixed number of rows, and runs forward-backward on those rows only, so curation saves
compute instead of only re-weighting it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from chexficient.findings import NUM_FINDINGS, POSITIVE, UNCERTAIN
from pretrain import losses, optimizer, schedule

MAX_LOGIT_SCALE = float(np.log(100.0))
BATCH_KEYS = ("image", "tokens", "text_mask", "index", "labels")
LOSSES = ("softmax", "sigmoid", "supervised")


def contrastive_loss(loss_name: str, img, txt, scale, bias, weights=None):
    """The configured CLIP loss (softmax InfoNCE or sigmoid) with the temperature clamped like CLIP."""
    scale = jnp.minimum(scale, MAX_LOGIT_SCALE)
    if loss_name == "softmax":
        return losses.softmax_contrastive(img, txt, scale, weights)
    if loss_name == "sigmoid":
        return losses.sigmoid_contrastive(img, txt, scale, bias, weights)
    raise ValueError(f"loss={loss_name!r}; valid: {', '.join(LOSSES)}")


def supervised_loss(logits: jax.Array, labels: jax.Array, weights=None) -> jax.Array:
    """Mean multi-label binary cross-entropy of the supervised reference over the findings.

    Targets follow the bench's zero-shot and probe protocol: positive and uncertain are 1
    (U-ones), negative and unmentioned 0. `weights` [B] weight the rows like the CLIP losses.
    """
    targets = ((labels == POSITIVE) | (labels == UNCERTAIN)).astype(jnp.float32)
    per_row = optax.sigmoid_binary_cross_entropy(logits, targets).mean(axis=-1)
    if weights is None:
        return per_row.mean()
    return jnp.sum(per_row * weights) / jnp.maximum(jnp.sum(weights), 1e-9)


def token_alignment_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config.token_alignment` (weight 0 = off), checked against the model's token heads."""
    align = config.get("token_alignment") or ml_collections.ConfigDict(
        dict(weight=0.0, temperature=0.1))
    if align.weight < 0 or align.temperature <= 0:
        raise ValueError(f"token_alignment needs weight >= 0 and temperature > 0, got {align}")
    if align.weight and not config.model.get("local_dim", 0):
        raise ValueError("token_alignment.weight > 0 needs token heads: set model.local_dim > 0 "
                         "(the preset argument token_alignment=W sets both)")
    return align


def abstract_batch(batch_size: int, image_size: int, text_len: int, sharding=None) -> dict:
    """Shapes of a training batch, for lowering steps without data."""
    spec = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)
    return {"image": spec((batch_size, image_size, image_size, 1), jnp.float32),
            "tokens": spec((batch_size, text_len), jnp.int32),
            "text_mask": spec((batch_size, text_len), jnp.bool_),
            "index": spec((batch_size,), jnp.int32),
            "labels": spec((batch_size, NUM_FINDINGS), jnp.int8)}


def initial_state(params, *, tx: optax.GradientTransformation, plan: schedule.Plan, seed: int,
                  total_steps: int) -> dict:
    """The train state at step 0 that every step reads and returns: parameters, optimizer
    state, step counters, the rng, the curator's state and the plan's empty ledger."""
    return dict(params=params, opt=tx.init(params), step=jnp.zeros((), jnp.int32),
                rng=jax.random.key_data(jax.random.key(seed + 1)),
                total_steps=jnp.asarray(total_steps, jnp.int32),
                curator=plan.curator_state, ledger=plan.empty_ledger())


def step_input(phase: str, state: dict) -> dict:
    """The train state as `phase`'s step takes it: whole for `curate`; for the full-data step
    (`full`, `subset`) with an empty curator state. That step never reads it, and without it its
    program is the same in every arm, so a curated run's subset phase and the full-data run share
    one compilation (the cache). Also maps the state's shardings the same way."""
    return state if phase == "curate" else dict(state, curator={})


def step_output(phase: str, state: dict, out: dict) -> dict:
    """The train state after `phase`'s step: its output `out`, with `state`'s curator state put
    back where `step_input` left it out."""
    return out if phase == "curate" else dict(out, curator=state["curator"])


def curation_metrics(info: dict, curator_state: Any) -> dict[str, jax.Array]:
    """What the metrics stream shows of a curation step: the curator's scalar info, the
    occupancy of each cluster, and prototype drift (from the state of prototype rules)."""
    out = {k: v for k, v in info.items() if jnp.ndim(v) == 0}
    for k, size in enumerate(info.get("cluster_sizes", ())):
        out[f"cluster_size/{k}"] = size
    states = curator_state if isinstance(curator_state, tuple) and not hasattr(
        curator_state, "_fields") else (curator_state,)
    drifts = [s.drift for s in states if hasattr(s, "drift")]
    if drifts:
        out["prototype_drift"] = drifts[0]
    return out


@dataclasses.dataclass
class Steps:
    """Pure step functions (state, batch) -> (state, metrics) and eval (params, batch) -> metrics."""

    full: Callable
    curate: Callable
    eval: Callable


def build_steps(config: ml_collections.ConfigDict, graphdef, tx: optax.GradientTransformation,
                curator: Any = None, reference: tuple | None = None) -> Steps:
    """Step functions for `config`; `reference` is (graphdef, params) of a frozen scoring model."""
    loss_name, optim_cfg = config.loss, config.optim
    align = token_alignment_config(config)
    if loss_name not in LOSSES:
        raise ValueError(f"loss={loss_name!r}; valid: {', '.join(LOSSES)}")
    if loss_name == "supervised" and (config.model.get("classes", 0) != NUM_FINDINGS or curator):
        raise ValueError(f"loss='supervised' needs model.classes={NUM_FINDINGS} (a head over the "
                         "findings) and no curator: use configs/supervised.py")

    def embed(p, b, gdef=graphdef):
        m = nnx.merge(gdef, p)
        img, txt = m(b["image"], b["tokens"], b["text_mask"])
        return img, txt, m.logit_scale[...], m.logit_bias[...]

    def forward(p, b):
        """((img, txt, scale, bias), (patch tokens, word tokens) or None when the term is off)."""
        if not align.weight:
            return embed(p, b), None
        m = nnx.merge(graphdef, p)
        img, txt, patches, words = m.encode_tokens(b["image"], b["tokens"], b["text_mask"])
        return (img, txt, m.logit_scale[...], m.logit_bias[...]), (patches, words)

    def loss_on_rows(p, b, weights):
        """(loss, metrics): the global loss, plus the weighted token alignment term if on."""
        if loss_name == "supervised":  # the image tower alone, with its classifier head
            return supervised_loss(nnx.merge(graphdef, p).classify(b["image"]), b["labels"],
                                   weights), {}
        (img, txt, scale, bias), tokens = forward(p, b)
        loss, _ = contrastive_loss(loss_name, img, txt, scale, bias, weights)
        metrics = dict(temperature=jnp.exp(-jnp.minimum(scale, MAX_LOGIT_SCALE)))
        if tokens is not None:
            local, _ = losses.token_alignment(*tokens, b["text_mask"], align.temperature, weights)
            metrics.update(global_loss=loss, token_alignment=local)
            loss = loss + align.weight * local
        return loss, metrics

    def apply_update(state, grads, metrics):
        updates, opt = tx.update(grads, state["opt"], state["params"])
        lr = optimizer.learning_rate(optim_cfg, state["step"], state["total_steps"])
        params = jax.tree.map(lambda p, u: p - lr * u, state["params"], updates)
        metrics.update(lr=lr, grad_norm=optax.tree.norm(grads))
        return dict(state, params=params, opt=opt, step=state["step"] + 1), metrics

    def full(state, b):
        (loss, aux), grads = jax.value_and_grad(loss_on_rows, has_aux=True)(state["params"], b, None)
        return apply_update(state, grads, dict(loss=loss, kept_fraction=jnp.float32(1.0), **aux))

    def curate(state, b):
        rng, sel_rng = jax.random.split(jax.random.wrap_key_data(state["rng"]))
        img, txt, scale, bias = embed(jax.lax.stop_gradient(state["params"]), b)
        _, learner_loss = contrastive_loss(loss_name, img, txt, scale, bias)
        embeddings, per_loss = {"image": img, "text": txt}, {"learner": learner_loss}
        if reference is not None:
            r_img, r_txt, r_scale, r_bias = embed(reference[1], b, gdef=reference[0])
            embeddings.update(ref_image=r_img, ref_text=r_txt)
            per_loss["reference"] = contrastive_loss(loss_name, r_img, r_txt, r_scale, r_bias)[1]
        keep, info = curator.select(state["curator"], embeddings, per_loss, sel_rng)
        sub = {k: b[k][info["indices"]] for k in ("image", "tokens", "text_mask", "labels")}
        (loss, aux), grads = jax.value_and_grad(loss_on_rows, has_aux=True)(
            state["params"], sub, info["weights"])
        metrics = dict(loss=loss, learner_loss=jnp.mean(learner_loss),
                       trained_rows=jnp.sum(info["weights"] > 0).astype(jnp.float32), **aux)
        curator_state = curator.update(state["curator"], embeddings, keep)
        metrics.update(curation_metrics(info, curator_state))
        metrics["kept_fraction"] = jnp.mean(keep.astype(jnp.float32))
        state = dict(state, rng=jax.random.key_data(rng), curator=curator_state,
                     ledger=schedule.record_kept(state["ledger"], b["index"], info, state["step"]))
        return apply_update(state, grads, metrics)

    def evaluate(params, b):
        """Loss and in-batch top-1 retrieval; a hit is any pair whose report has the same tokens
        (identical report texts are merged, as retrieval benchmarks do). The supervised
        reference has only its loss."""
        if loss_name == "supervised":
            return dict(loss=loss_on_rows(params, b, None)[0])
        (img, txt, scale, bias), tokens = forward(params, b)
        loss, _ = contrastive_loss(loss_name, img, txt, scale, bias)
        extra = {}
        if tokens is not None:  # the global loss stays `loss`, comparable across runs
            extra["token_alignment"] = losses.token_alignment(*tokens, b["text_mask"],
                                                              align.temperature)[0]
        sims = img @ txt.T
        same_text = jnp.all(b["tokens"][:, None, :] == b["tokens"][None, :, :], axis=-1)
        hit = lambda picked: jnp.mean(jnp.take_along_axis(same_text, picked[:, None], 1))
        return dict(loss=loss, i2t_acc=hit(jnp.argmax(sims, 1)), t2i_acc=hit(jnp.argmax(sims, 0)),
                    chance=jnp.mean(same_text), **extra)

    return Steps(full=full, curate=curate, eval=evaluate)


def embed_fn(graphdef) -> Callable:
    """(params, batch) -> (image embeddings, text embeddings), for scoring a whole pool."""

    def fn(p, b):
        m = nnx.merge(graphdef, p)
        return m(b["image"], b["tokens"], b["text_mask"])

    return fn
