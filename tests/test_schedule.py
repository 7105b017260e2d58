"""The run's plan: phase lengths when a curate step scores more rows than a batch, and the
checks that keep a curator from running where it cannot select."""

from __future__ import annotations

import numpy as np
import pytest
from absl import logging

from pretrain import schedule
from pretrain.config import base_config


def chexficient_config(arg: str = "tiny,batch_size=64,epochs=6", **curator) -> object:
    config = base_config(arg)
    config.curator.name = config.schedule.name = "chexficient"
    config.curator.prototypes.update(curator)
    return config


def make(config, pool_size: int = 2048):
    return schedule.make(config, pool_size=pool_size, batch_size=config.batch_size,
                         embed_dim=config.model.embed_dim)


def test_a_curate_phase_of_scored_batches_has_its_own_epoch():
    plan = make(chexficient_config("tiny,batch_size=64,epochs=6,curate_batch_size=256",
                                   warmup_batches=2))
    assert plan.scored_batch == 256 and plan.phase_batch("subset") == 64
    curate, subset = plan.phases()
    assert (curate.name, curate.end_step, subset.end_step) == ("curate", 8, -1)
    kept = np.arange(500)  # 500 kept records: five more epochs of them at 64 a step
    assert plan.subset_end_step(kept) == 8 + round(5 * 500 / 64)
    # Before the subset is known the schedule expects the rule's capacity share of the pool.
    share = plan.curator.capacity(256) / 256
    assert plan.initial_total_steps() == 8 + round(5 * int(share * 2048) / 64)


def test_scoring_the_batch_keeps_the_batch_epoch():
    curate, _ = make(chexficient_config(warmup_batches=2)).phases()
    assert curate.end_step == 2048 // 64


@pytest.mark.parametrize("scored", [0, 256])
def test_total_steps_ends_a_curated_run_at_that_step(scored):
    arg = "tiny,batch_size=64,epochs=6" + (f",curate_batch_size={scored}" if scored else "")
    config = chexficient_config(arg, warmup_batches=2)
    config.total_steps = 40  # past the curation epoch (8 or 32 steps): the subset phase to 40
    curate, subset = make(config).phases()
    assert (curate.end_step, subset.end_step) == (2048 // (scored or 64), 40)
    assert make(config).initial_total_steps() == 40
    config.total_steps = 6  # inside the curation epoch: the run is that epoch cut short
    assert [(p.name, p.end_step) for p in make(config).phases()] == [("curate", 6)]
    offline = base_config("tiny,batch_size=64")
    offline.schedule.update(name="offline", offline="random", budget=0.25)
    offline.total_steps = 12
    assert [(p.name, p.end_step) for p in make(offline).phases()] == [("subset", 12)]
    offline.schedule.budget = 3000  # more records than the pool's 2,048: said, not clamped
    with pytest.raises(ValueError, match="budget=3000 records, but the pool holds 2048"):
        make(offline)


def test_curate_batch_needs_a_curating_schedule_and_fits_the_pool():
    config = base_config("tiny,curate_batch_size=128")
    with pytest.raises(ValueError, match="needs a curating schedule"):
        make(config)
    with pytest.raises(ValueError, match="up to the 100 records"):
        make(chexficient_config("tiny,curate_batch_size=128"), pool_size=100)


def test_a_warmup_as_long_as_the_curate_phase_is_refused(monkeypatch):
    # 2048 / 256 = 8 curate steps: a 10-batch warm-up would leave the rule nothing to select.
    with pytest.raises(ValueError, match="warmup_batches=10 but the curate phase has 8 steps"):
        make(chexficient_config("tiny,curate_batch_size=256"))
    warnings = []
    monkeypatch.setattr(logging, "warning", lambda msg, *args: warnings.append(msg % args))
    make(chexficient_config("tiny,curate_batch_size=128"))  # 10 of 16 steps: allowed, said
    assert warnings and "takes 10 of the curate phase's 16 steps" in warnings[0]
    warnings.clear()
    make(chexficient_config("tiny,curate_batch_size=128", warmup_batches=3))
    assert not warnings


def test_offline_args_reach_the_baseline():
    """`schedule.offline_args.<method>` configures the estimator (it was always the defaults)."""
    from curation.offline import SSLPrototypes

    rng = np.random.default_rng(0)
    embeddings = {"image": rng.normal(size=(60, 8)), "text": rng.normal(size=(60, 8))}
    config = base_config("tiny")
    config.schedule.update(name="offline", offline="ssl_prototypes", budget=0.25)
    config.schedule.offline_args.ssl_prototypes.update(keep="easy", n_clusters=4)  # 100 > 60 rows
    chosen = schedule.offline_subset(config, 60, lambda: embeddings)
    easy = SSLPrototypes(n_clusters=4, keep="easy", seed=config.seed).fit(embeddings).select(15)
    np.testing.assert_array_equal(chosen, easy)
    assert not np.array_equal(chosen, SSLPrototypes(n_clusters=4).fit(embeddings).select(15))
    config.schedule.offline_args.ssl_prototypes.tau = 0.3  # set from Python: not silently ignored
    with pytest.raises(TypeError, match="'ssl_prototypes' has no hyper-parameter tau"):
        schedule.offline_subset(config, 60, lambda: embeddings)
