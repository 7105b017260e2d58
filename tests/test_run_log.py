"""Run logs: the training throughput meter leaves paused time (evaluation, saves) out; plots."""

import json
import time

import numpy as np
import pytest

from chexficient import run_log
from chexficient.run_log import MetricWriter, Throughput, read_metrics


def test_throughput_counts_pairs_since_last_call_and_excludes_paused_time():
    meter = Throughput(step=10, batch_size=32)
    time.sleep(0.05)
    with meter.paused():
        time.sleep(1.0)
    first = meter.measure(14)  # 4 steps of 32 pairs in >= 0.05 s of training
    assert 0.05 <= first["perf/train_s"] < 1.0
    assert first["perf/pairs_per_s"] == pytest.approx(128 / first["perf/train_s"])
    time.sleep(0.05)
    second = meter.measure(16)
    interval = second["perf/train_s"] - first["perf/train_s"]
    assert interval >= 0.05
    assert second["perf/pairs_per_s"] == pytest.approx(64 / interval)


def test_throughput_counts_each_phase_at_its_own_batch():
    """A curate phase scoring 128 rows a step, then a subset phase at 32, within one interval."""
    meter = Throughput(step=0, batch_size=128)
    time.sleep(0.05)
    meter.set_batch_size(3, 32)  # steps 1-3 read 128 rows each, steps 4-5 read 32
    out = meter.measure(5)
    assert out["perf/pairs_per_s"] == pytest.approx((3 * 128 + 2 * 32) / out["perf/train_s"])
    time.sleep(0.05)
    second = meter.measure(6)
    assert second["perf/pairs_per_s"] == pytest.approx(
        32 / (second["perf/train_s"] - out["perf/train_s"]))


def test_a_row_torn_by_a_kill_is_cut_before_the_resumed_run_appends(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 4.0}\n{"step": 2, "lo')  # killed mid-row
    writer = MetricWriter(str(tmp_path), tensorboard=False)
    writer.write(2, {"loss": 3.5})
    writer.close()
    assert path.read_text() == '{"step": 1, "loss": 4.0}\n{"step": 2, "loss": 3.5}\n'
    steps, losses = read_metrics(str(path))["loss"]
    assert steps.tolist() == [1, 2] and losses.tolist() == [4.0, 3.5]


def test_a_metric_logged_once_is_drawn(tmp_path):
    """A run shorter than log_every_steps logs each metric once: its panel shows a dot."""
    from PIL import Image

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 8, "loss": 2.5}) + "\n")
    pixels = np.asarray(Image.open(run_log.plot_metrics(str(metrics), str(tmp_path / "m.png")))
                        .convert("RGB")).astype(int)
    line_blue = np.abs(pixels - [31, 119, 180]).sum(-1) < 60  # matplotlib's first colour
    assert line_blue.sum() > 10
