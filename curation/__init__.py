"""Online and offline data curation: make_curator(config) finds a rule by name.

`config.curator.name` is one of CURATORS; its hyper-parameters live in the sections of
`default_config()` ('prototypes' is shared by the prototype rules, 'loss' by the loss
rules). 'chain' composes the rules named in `config.curator.chain`, each choosing
among the rows the previous one kept (e.g. ('loss', 'chexficient')).
"""

from __future__ import annotations

from typing import Callable

import ml_collections

from curation.base import Curator, chain, keep_all, on_global_batch
from curation.combined import combined
from curation.jest import jest
from curation.loss_scores import loss_curator
from curation.prototypes import PrototypeConfig
from curation.quantile_rule import chexficient

__all__ = ["CURATORS", "PROTOTYPE_RULES", "Curator", "default_config", "make_curator", "rule_names"]


def default_config() -> ml_collections.ConfigDict:
    """Every curator field with its default (the paper's, for the prototype rule)."""
    return ml_collections.ConfigDict(dict(
        name="none",
        chain=(),
        prototypes=dict(num_prototypes=6, warmup_batches=10, ema_decay=0.9, sinkhorn_iterations=3,
                        sinkhorn_epsilon=0.5, kmeans_iterations=20, kmeans_seed=0),
        chexficient=dict(q_outlier=0.95, q_support=0.85, max_per_cluster=10,
                         central_sampler="farthest", density_k=5),
        loss=dict(score="learnability", keep_fraction=0.2, super_batch_ratio=0.0, sampler="topk",
                  temperature=1.0),
        jest=dict(filter_ratio=0.8, n_chunks=16, logit_scale=10.0, logit_bias=-10.0,
                  temperature=1.0),
        combined=dict(w_loss=1.0, w_rarity=1.0, drop_outliers=True),
    ))


def _prototypes(c: ml_collections.ConfigDict) -> PrototypeConfig:
    return PrototypeConfig(**c.prototypes.to_dict())


CURATORS: dict[str, Callable[[ml_collections.ConfigDict], Curator]] = {
    "none": lambda c: keep_all(),
    "chexficient": lambda c: chexficient(_prototypes(c), **c.chexficient.to_dict()),
    "loss": lambda c: loss_curator(**c.loss.to_dict()),
    "jest": lambda c: jest(**c.jest.to_dict()),
    "combined": lambda c: combined(_prototypes(c), q_outlier=c.chexficient.q_outlier,
                                   **c.loss.to_dict(), **c.combined.to_dict()),
}


PROTOTYPE_RULES = ("chexficient", "combined")
"""Rules that pick at random until their k-means warm-up (`prototypes.warmup_batches`) ends."""


def rule_names(curator: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The rules `curator` (a `config.curator`) runs: its name, or the names of its chain."""
    return tuple(curator.chain) if curator.name == "chain" else (curator.name,)


def make_curator(config: ml_collections.ConfigDict) -> Curator:
    """The curator `config.curator.name` with `config.curator`'s fields over the defaults."""
    c = default_config()
    c.update(config.curator)
    names = rule_names(c)
    unknown = [n for n in names if n not in CURATORS]
    if unknown or not names:
        raise ValueError(f"unknown curator {unknown or c.name!r}; valid: {', '.join(CURATORS)}, "
                         "or 'chain' with config.curator.chain naming them")
    curators = [CURATORS[n](c) for n in names]
    return on_global_batch(curators[0] if len(curators) == 1 else chain(*curators))
