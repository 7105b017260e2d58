"""Curation schedules: which phases a run has, what each trains on, and the kept-id ledger.

- `full`: every record, every epoch.
- `continuous`: the curator selects online for the whole run.
- `chexficient`: the curator selects for `curation_epochs`; every kept id goes to the ledger;
  the ledger is then frozen as the subset and the remaining epochs train on it.
- `offline`: a subset is chosen once before training (an offline estimator of
  `curation.offline`, on a reference checkpoint's embeddings), then trained on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

SCHEDULES = ("full", "continuous", "chexficient", "offline")
REPORT_FIELDS = ("labels", "report", "duplicate_of", "mismatched", "quality")
"""Per-record fields the curation report reads from the pool where its datasets store them."""


@dataclasses.dataclass
class Phase:
    """A stretch of the run with one step function and one data stream; end_step -1: not yet known."""

    name: str  # "full" | "curate" | "subset"
    end_step: int


def record_kept(ledger: dict, index: jax.Array, info: dict, step: jax.Array) -> dict:
    """Marks the rows a curator kept: first step kept (if new), last score and cluster of each row."""
    pool = ledger["first_kept"].shape[0]
    rows = info["indices"]
    kept = info["weights"] > 0
    ids = jnp.where(kept, index[rows], pool)  # out of range -> dropped
    first = ledger["first_kept"]
    first = first.at[ids].set(jnp.where(first[jnp.minimum(ids, pool - 1)] >= 0,
                                        first[jnp.minimum(ids, pool - 1)], step), mode="drop")
    all_ids = index
    score = ledger["score"].at[all_ids].set(info["score"].astype(jnp.float32), mode="drop")
    cluster = ledger["cluster"].at[all_ids].set(info["cluster"].astype(jnp.int32), mode="drop")
    seen = ledger["seen"].at[all_ids].add(1, mode="drop")
    return dict(first_kept=first, score=score, cluster=cluster, seen=seen)


@dataclasses.dataclass
class Plan:
    """The run's schedule, curator and reference model, resolved from the config."""

    config: ml_collections.ConfigDict
    pool_size: int
    batch_size: int
    curate_batch_size: int = 0  # rows scored per curate step; 0: batch_size
    curator: Any = None
    curator_state: Any = dataclasses.field(default_factory=dict)
    reference: tuple | None = None
    offline_subset: np.ndarray | None = None

    @property
    def name(self) -> str:
        """The schedule: full, continuous, chexficient or offline."""
        return self.config.schedule.name

    @property
    def curator_name(self) -> str:
        """The online curator's name (`none` when not curating)."""
        return self.config.curator.name

    @property
    def scored_batch(self) -> int:
        """Rows the curator scores per curate step: `curate_batch_size`, else the batch."""
        return self.curate_batch_size or self.batch_size

    def phase_batch(self, phase: str) -> int:
        """Rows a phase reads per step: the scored batch when curating, else the batch."""
        return self.scored_batch if phase == "curate" else self.batch_size

    def steps_per_epoch(self, phase: str = "full") -> int:
        """Steps of `phase` that read the pool once."""
        return self.pool_size // self.phase_batch(phase)

    def phases(self) -> list[Phase]:
        """The phases of the run with their end steps (-1 for a subset phase not yet sized).

        A curate phase reads `scored_batch` rows a step, so its epoch has its own step count.
        `total_steps`, when set, ends the run at that step whatever the phases' batches: the
        curation epochs first (cut short there if need be), the subset phase after them."""
        c = self.config
        if self.name == "full":
            return [Phase("full", c.total_steps or
                          int(round(c.total_epochs * self.steps_per_epoch())))]
        if self.name == "continuous":
            return [Phase("curate", c.total_steps or
                          int(round(c.total_epochs * self.steps_per_epoch("curate"))))]
        if self.name == "offline":
            return [Phase("subset", c.total_steps or -1)]
        epochs = (c.schedule.curation_epochs if c.total_steps
                  else min(c.schedule.curation_epochs, c.total_epochs))
        curate = int(round(epochs * self.steps_per_epoch("curate")))
        if not c.total_steps:
            return [Phase("curate", curate), Phase("subset", -1)]
        if curate >= c.total_steps:
            return [Phase("curate", c.total_steps)]
        return [Phase("curate", curate), Phase("subset", c.total_steps)]

    def initial_total_steps(self) -> int:
        """The run length the LR schedule starts from; a subset phase corrects it when it starts."""
        phases = self.phases()
        if phases[-1].end_step >= 0:
            return phases[-1].end_step
        expected = (self.offline_subset.size if self.offline_subset is not None else
                    self.curator.capacity(self.scored_batch) / self.scored_batch * self.pool_size)
        return self._subset_start() + self._subset_steps(int(expected))

    def _subset_start(self) -> int:
        """The step a subset phase starts at: after the curation epoch, or at 0 (offline)."""
        return self.phases()[0].end_step if self.name == "chexficient" else 0

    def _subset_steps(self, subset_size: int) -> int:
        """Steps of a subset phase that `total_steps` does not size: the epochs left after
        curation, over `subset_size` records."""
        remaining = self.config.total_epochs - (self.config.schedule.curation_epochs
                                                if self.name == "chexficient" else 0.0)
        return max(1, int(round(max(remaining, 0.0) * subset_size / self.batch_size)))

    def subset_end_step(self, indices: np.ndarray) -> int:
        """The step the subset phase ends at, once its records (`indices`) are known."""
        return self._subset_start() + self._subset_steps(len(indices))

    def phase_indices(self, phase: str, ledger: dict) -> np.ndarray | None:
        """Record positions a phase reads: None (all) except for `subset`, where the ledger decides."""
        if phase != "subset":
            return None
        indices = np.flatnonzero(np.asarray(ledger["first_kept"]) >= 0)
        if indices.size < self.batch_size:
            raise ValueError(
                f"the curated subset has {indices.size} records, fewer than one batch of "
                f"{self.batch_size}; lower batch_size or keep more (curator / budget)"
                + (f". A run that curated resumes from its curation with a lower batch_size "
                   f"and schedule.curate_batch_size={self.scored_batch}, the batch it scored"
                   if self.name == "chexficient" else ""))
        return indices

    def empty_ledger(self) -> dict:
        """The ledger at step 0: nothing kept yet (an offline subset is kept from the start)."""
        first = np.full(self.pool_size, -1, np.int32)
        if self.offline_subset is not None:
            first[self.offline_subset] = 0
        return dict(first_kept=jnp.asarray(first), score=jnp.zeros(self.pool_size, jnp.float32),
                    cluster=jnp.full(self.pool_size, -1, jnp.int32),
                    seen=jnp.zeros(self.pool_size, jnp.int32))

    def data_fraction(self, ledger: dict) -> float:
        """Share of the pool that ever received a gradient."""
        if self.name == "full":
            return 1.0
        return float(np.mean(np.asarray(ledger["first_kept"]) >= 0))

    def write_report(self, workdir: str, ledger: dict, data_dir: str, compute_fraction: float) -> dict:
        """curation_report.{json,md} + plots from the ledger and the pool's labels and audit truth;
        per source too when the pool is a mixture of datasets."""
        from curation import audit
        from chexficient.data import mixture

        split = self.config.data.train_split
        parts = mixture.parts(self.config.data, split, data_dir=data_dir)
        source = mixture.PoolSource(parts)
        fields = mixture.pool_fields(parts, REPORT_FIELDS,
                                     on_error=self.config.data.get("on_error", "raise"))
        unread = [k for k, v in fields.items() if any(x is None for x in v)]
        if unread:
            logging.warning("curation report: %s left out (records skipped as unreadable)",
                            ", ".join(unread))
        inputs = {k: v for k, v in fields.items() if k not in unread}
        if "labels" in inputs:
            inputs["labels"] = np.stack(inputs["labels"])
        if "mismatched" in inputs:
            inputs["mismatched"] = np.asarray(inputs["mismatched"], bool)
        if "report" in inputs:
            inputs["reports"] = inputs.pop("report")
        return audit.write_report(
            workdir, np.asarray(ledger["first_kept"]), images=_LazyImages(source),
            distances=np.asarray(ledger["score"]), clusters=np.asarray(ledger["cluster"]),
            compute_fraction=compute_fraction,
            sources=mixture.source_names(parts) if len(parts) > 1 else None, **inputs)


class _LazyImages:
    """Pool images read on demand (the audit draws a few per prototype, never the whole pool)."""

    def __init__(self, source):
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.source[int(i)]["image"]


def make(config: ml_collections.ConfigDict, *, pool_size: int, batch_size: int, embed_dim: int,
         reference_embed=None) -> Plan:
    """Validates the schedule/curator pairing and builds the curator, its state and any subset."""
    name = config.schedule.name
    if name not in SCHEDULES:
        raise ValueError(f"schedule.name={name!r}; valid: {', '.join(SCHEDULES)}")
    curating = name in ("continuous", "chexficient")
    if curating == (config.curator.name == "none"):
        raise ValueError(f"schedule {name!r} {'needs a curator' if curating else 'takes no online curator'}"
                         f" (curator.name={config.curator.name!r})")
    scored = config.schedule.curate_batch_size
    if scored and not curating:
        raise ValueError(f"schedule.curate_batch_size={scored} needs a curating schedule "
                         f"(continuous or chexficient), got {name!r}")
    if scored < 0 or scored > pool_size:
        raise ValueError(f"schedule.curate_batch_size={scored}: need 0 (the batch) up to the "
                         f"{pool_size} records of the pool")
    plan = Plan(config=config, pool_size=pool_size, batch_size=batch_size,
                curate_batch_size=scored)
    if curating:
        from curation import make_curator

        plan.curator = make_curator(config)
        example = {k: jnp.zeros((plan.scored_batch, embed_dim), jnp.float32)
                   for k in ("image", "text")}
        plan.curator_state = plan.curator.init(jax.random.key(config.seed + 2), example)
        check_warmup(config, plan.phases()[0].end_step)
    if name == "offline":
        plan.offline_subset = offline_subset(config, pool_size, reference_embed)
        logging.info("offline %s subset: %d of %d records", config.schedule.offline,
                     plan.offline_subset.size, pool_size)
    return plan


def check_warmup(config: ml_collections.ConfigDict, curate_steps: int) -> None:
    """A prototype rule must select for most of its curate phase: a warm-up as long as the
    phase is an error (the run would be a random pick under the rule's name), over half of it
    a warning."""
    from curation import PROTOTYPE_RULES, rule_names

    c = config.curator
    if not set(rule_names(c)) & set(PROTOTYPE_RULES):
        return
    warmup = c.prototypes.warmup_batches
    fix = ("lower curator.prototypes.warmup_batches, or score fewer rows a step "
           "(schedule.curate_batch_size)")
    if warmup >= curate_steps:
        raise ValueError(f"curator.prototypes.warmup_batches={warmup} but the curate phase has "
                         f"{curate_steps} steps: the prototype rule would never select; {fix}")
    if 2 * warmup > curate_steps:
        logging.warning("the prototype warm-up takes %d of the curate phase's %d steps, which "
                        "pick at random until it ends; %s", warmup, curate_steps, fix)


def budget_count(budget: float, pool_size: int) -> int:
    """A budget below 1 is a fraction of the pool, from 1 up a record count."""
    if budget <= 0:
        raise ValueError("schedule.budget must be > 0 for an offline subset (fraction or count)")
    if budget >= 1 and int(budget) > pool_size:
        raise ValueError(f"schedule.budget={budget:g} records, but the pool holds {pool_size}: "
                         "give at most that many, or a fraction below 1")
    return int(round(budget * pool_size)) if budget < 1 else int(budget)


def offline_subset(config: ml_collections.ConfigDict, pool_size: int, reference_embed) -> np.ndarray:
    """Runs the named offline estimator at the budget and returns sorted record positions."""
    from curation import offline

    budget = budget_count(config.schedule.budget, pool_size)
    method = config.schedule.offline
    args = config.schedule.offline_args.get(method)  # None for an unknown method: make says so
    estimator = offline.make(method, seed=config.seed, **({} if args is None else args.to_dict()))
    if getattr(estimator, "needs_embeddings", True):
        if reference_embed is None:
            raise ValueError(f"offline method {method!r} needs reference embeddings: set reference.path")
        embeddings = reference_embed()
    else:
        embeddings = {"image": np.zeros((pool_size, 1), np.float32),
                      "text": np.zeros((pool_size, 1), np.float32)}
    return np.sort(np.asarray(estimator.fit(embeddings).select(budget)))
