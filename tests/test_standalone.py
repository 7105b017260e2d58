"""The trainer's steps outside its loop (pretrain/standalone.py): the same state and steps."""

import jax
import numpy as np

from tests.conftest import micro_config


def test_curate_and_subset_steps_train_on_a_batch_in_memory(micro):
    from pretrain import standalone
    from pretrain.train import resolve

    config = resolve(micro_config(micro, "chexficient"))[0]
    built = standalone.build(config, pool_size=256)
    assert set(built.steps) == {"full", "subset", "curate"}
    assert [p.name for p in built.plan.phases()] == ["curate", "subset"]
    abstract = standalone.build(config, pool_size=256, abstract=True).state
    shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)  # noqa: E731
    assert shapes(abstract) == shapes(built.state)
    batch = standalone.random_batch(config)
    state, metrics = built.steps["curate"](built.state, batch)
    kept = np.flatnonzero(np.asarray(state["ledger"]["first_kept"]) >= 0)
    assert 0 < len(kept) == int(metrics["trained_rows"]) < config.batch_size
    state, metrics = built.steps["subset"](state, batch)
    assert int(state["step"]) == 2 and np.isfinite(float(metrics["loss"]))


def test_seconds_per_call_times_the_calls_after_the_warm_up(micro):
    from pretrain import standalone
    from pretrain.train import resolve

    config = resolve(micro_config(micro))[0]
    built = standalone.build(config, pool_size=256)
    batch = standalone.random_batch(config)
    compiled = built.steps["full"].lower(built.state, batch).compile()
    seconds, state = standalone.seconds_per_call(compiled, built.state, batch, 2, warmup=1)
    assert int(state["step"]) == 3 and 0 < seconds < 60
