"""Milestones (model checkpoints at fractions of full-data compute) and the equal-compute row."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from chexficient import checkpoint
from chexficient.quickstart import equal_compute
from pretrain.train import train
from tests.conftest import micro_config


def _params(path: str, step: int | None = None) -> list[np.ndarray]:
    model, _ = checkpoint.load_model(path, step=step)
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


@pytest.fixture(scope="module")
def full_run(micro, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("milestones"))
    config = micro_config(micro, total_steps=8, **{"checkpoint.every_steps": 2,
                                                   "checkpoint.max_to_keep": 10,
                                                   "checkpoint.milestones": 0.25})
    return workdir, train(config, workdir)


def test_a_milestone_is_the_run_at_that_compute(full_run):
    workdir, summary = full_run
    found = checkpoint.milestones(workdir)
    assert [m["step"] for m in found] == [2, 4, 6, 8]
    assert [m["compute_fraction"] for m in found] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert found[-1]["flops"] == pytest.approx(summary["flops_spent"])
    for m in found:  # the milestone holds exactly the parameters of the run's step
        assert m["path"].endswith(f"milestones@{m['step']}")
        for a, b in zip(_params(m["path"]), _params(workdir, step=m["step"]), strict=True):
            np.testing.assert_array_equal(a, b)


def test_equal_compute_picks_the_nearest_milestone(full_run):
    workdir, summary = full_run
    path, row = equal_compute(workdir, summary, target=0.6)
    assert path.endswith("milestones@4") and row["compute_fraction"] == pytest.approx(0.5)
    # 4 steps of 32 records on a 256-record pool: half of it seen, half the wall time
    assert row["data_fraction"] == pytest.approx(0.5)
    assert row["wall_time_s"] == pytest.approx(summary["wall_time_s"] / 2)
    path, row = equal_compute(workdir, summary, target=0.2)
    assert path.endswith("milestones@2")


def test_step_suffix_is_read_wherever_a_model_loads(full_run):
    workdir, _ = full_run
    assert checkpoint.split_step(f"{workdir}/milestones@6") == (f"{workdir}/milestones", 6)
    assert checkpoint.split_step("runs/a@b") == ("runs/a@b", None)
    for a, b in zip(_params(f"{workdir}@4"), _params(workdir, step=4), strict=True):
        np.testing.assert_array_equal(a, b)


def test_milestone_spacing_is_a_fraction(micro, tmp_path):
    config = micro_config(micro, total_steps=2, **{"checkpoint.milestones": 1.5})
    with pytest.raises(ValueError, match="fraction of full-data compute"):
        train(config, str(tmp_path / "bad"))
