"""The quickstart's preflight: its FLOPs are the trainer's FLOPs times the arm fractions."""

import math

import pytest

from chexficient import preflight
from chexficient.quickstart import arm_config, load_config


def test_preflight_counts_the_flops_the_trainer_counts(micro, tmp_path):
    from pretrain.train import train

    spec = load_config("experiments/ci")
    estimate = preflight.estimate(spec, data_dir=micro.data_dir)
    config = arm_config("full", spec, data_dir=micro.data_dir, seed=0, reference="")
    config.progress = False
    summary = train(config, str(tmp_path / "full"), stop_at_step=1)
    # The full step's FLOPs per call (pretrain.flops) times the full run's steps ...
    assert estimate.full_run_flops == pytest.approx(summary["flops_full_data"], rel=1e-9)
    # ... times every arm's fraction, plus the reference model trained on the smaller split.
    assert estimate.arms == ("full", "chexficient", "random", "learnability", "combined",
                             "supervised")
    assert 0 < estimate.reference_flops < estimate.full_run_flops
    assert estimate.total_flops == pytest.approx(
        estimate.full_run_flops * sum(preflight.ARM_FRACTIONS.values()) + estimate.reference_flops)
    for value in (estimate.peak_flops, estimate.total_flops, estimate.seconds):
        assert math.isfinite(value) and value > 0
    assert estimate.seconds == pytest.approx(
        estimate.total_flops / (preflight.ACHIEVED_FRACTION * estimate.peak_flops))
    line = estimate.line()
    assert "GFLOP/s" in line and "chexficient ~0.27" in line and "1 seed" in line
