"""Loss-based scores of a super-batch and fixed-fraction selection over them.

Scores (higher = more worth training on):
  'learner'      learner loss: hard examples for the current model;
  'reference'    minus the reference-model loss: easy, clean examples;
  'learnability' learner minus reference loss (JEST's per-example learnability);
  'rho'          the same difference, RHO-LOSS's reading: the reference is an
                 "irreducible loss" model trained on hold-out data.
A fixed share of the super-batch is kept, by top-k or by sampling with a temperature.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from curation.base import (Curator, Losses, batch_size_of, finish, fraction_capacity,
                           init_step_state, resolve_candidates, top_k_keep, update_step_state)

_SCORES: dict[str, tuple[tuple[str, ...], Callable[[Losses], jax.Array]]] = {
    "learner": (("learner",), lambda l: l["learner"]),
    "reference": (("reference",), lambda l: -l["reference"]),
    "learnability": (("learner", "reference"), lambda l: l["learner"] - l["reference"]),
    "rho": (("learner", "reference"), lambda l: l["learner"] - l["reference"]),
}
SCORES = tuple(_SCORES)
SAMPLERS = ("topk", "sample")


def loss_score(losses: Losses, kind: str) -> jax.Array:
    """Per-example score of `kind` from the per-example losses; names what is missing."""
    if kind not in _SCORES:
        raise ValueError(f"unknown loss score {kind!r}; valid: {', '.join(SCORES)}")
    needed, fn = _SCORES[kind]
    missing = [key for key in needed if key not in losses]
    if missing:
        raise KeyError(f"loss score {kind!r} needs losses {missing} (got {sorted(losses)}); "
                       "'reference' comes from a frozen reference model: set "
                       "--config.reference.path=RUN (a trained run's workdir)")
    return fn(losses).astype(jnp.float32)


def check_sampler(sampler: str, temperature: float) -> float:
    """The Gumbel temperature of a sampler: 0 for 'topk', > 0 for 'sample'."""
    if sampler == "topk":
        return 0.0
    if sampler == "sample" and temperature > 0:
        return temperature
    raise ValueError(f"sampler must be 'topk' or 'sample' with temperature > 0, got {sampler!r}, "
                     f"temperature={temperature}")


def loss_curator(score: str = "learnability", keep_fraction: float = 0.2,
                 super_batch_ratio: float = 0.0, sampler: str = "topk",
                 temperature: float = 1.0) -> Curator:
    """Keeps batch/`super_batch_ratio` (or `keep_fraction`) of the rows by a loss score."""
    if score not in _SCORES:
        raise ValueError(f"unknown loss score {score!r}; valid: {', '.join(SCORES)}")
    gumbel_temperature = check_sampler(sampler, temperature)

    def capacity(batch_size: int) -> int:
        return fraction_capacity(batch_size, keep_fraction, super_batch_ratio)

    def select(state, embeddings, losses, rng, candidates=None):
        del state
        batch = batch_size_of(embeddings)
        valid = resolve_candidates(candidates, batch)
        values = loss_score(losses, score)
        keep = top_k_keep(values, capacity(batch), valid, rng, gumbel_temperature)
        return finish(keep, capacity(batch), values, jnp.full((batch,), -1),
                      mean_score_kept=jnp.sum(jnp.where(keep, values, 0.0)) / jnp.maximum(jnp.sum(keep), 1))

    return Curator(init_step_state, select, update_step_state, capacity)
