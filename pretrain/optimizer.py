"""AdamW with warmup + cosine decay, clipping, a weight-decay mask, per-tower multipliers, LiT freezing.

The learning rate is applied in the train step from `learning_rate(step, total_steps)`, so
a run whose length is only known once its curated subset is frozen keeps one compiled step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

TOWERS = ("image", "text")


def _path_names(path) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def tower_of(path) -> str:
    """'image' or 'text' for a parameter path (projections and scalars count as 'shared')."""
    names = _path_names(path)
    return names[0] if names and names[0] in TOWERS else "shared"


def decays(path, leaf) -> bool:
    """Weight decay applies to matrices only: not to norms, biases, or the temperature/bias scalars."""
    return jnp.ndim(leaf) >= 2 and not any("norm" in n for n in _path_names(path))


def make_optimizer(cfg: ml_collections.ConfigDict, params) -> optax.GradientTransformation:
    """The update direction (lr not applied): clip -> Adam -> decoupled decay -> tower multiplier."""
    freeze = cfg.get("freeze", "")
    if freeze and freeze not in TOWERS:
        raise ValueError(f"optim.freeze={freeze!r}; valid: '', {', '.join(TOWERS)}")

    def label(path, _):
        tower = tower_of(path)
        return "frozen" if tower == freeze else tower

    labels = jax.tree_util.tree_map_with_path(label, params)
    decay_mask = jax.tree_util.tree_map_with_path(decays, params)
    trainable = optax.chain(
        optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
        optax.add_decayed_weights(cfg.weight_decay, mask=decay_mask))
    mult = dict(cfg.lr_mult)
    transforms = {
        "image": optax.chain(trainable, optax.scale(mult.get("image", 1.0))),
        "text": optax.chain(trainable, optax.scale(mult.get("text", 1.0))),
        "shared": trainable,
        "frozen": optax.set_to_zero(),
    }
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                       optax.multi_transform(transforms, labels))


def warmup_steps(cfg: ml_collections.ConfigDict, total_steps: jax.Array) -> jax.Array:
    """`warmup_frac` of the run, but at least `min_warmup_steps` (at most half the run) and 1.

    A share of a short run is a step or two: Adam then takes full-size steps on moment
    estimates of one or two gradients, and a fresh CLIP model falls into the collapsed state
    (every embedding alike, the loss at log(batch), gradients near zero) that it does not
    leave (docs/pretraining.md#warm-up-and-the-collapsed-state).
    """
    total = jnp.maximum(jnp.asarray(total_steps, jnp.float32), 1.0)
    floor = jnp.minimum(float(cfg.get("min_warmup_steps", 0)), jnp.floor(total / 2))
    return jnp.maximum(jnp.maximum(jnp.round(cfg.warmup_frac * total), floor), 1.0)


def learning_rate(cfg: ml_collections.ConfigDict, step: jax.Array, total_steps: jax.Array) -> jax.Array:
    """Linear warmup over `warmup_steps`, then cosine decay to `end_lr_factor * lr`."""
    step = jnp.asarray(step, jnp.float32)
    total = jnp.maximum(jnp.asarray(total_steps, jnp.float32), 1.0)
    warmup = warmup_steps(cfg, total)
    warm = cfg.lr * (step + 1.0) / warmup
    progress = jnp.clip((step - warmup) / jnp.maximum(total - warmup, 1.0), 0.0, 1.0)
    end = cfg.lr * cfg.end_lr_factor
    cosine = end + 0.5 * (cfg.lr - end) * (1.0 + jnp.cos(jnp.pi * progress))
    return jnp.where(step < warmup, warm, cosine).astype(jnp.float32)
