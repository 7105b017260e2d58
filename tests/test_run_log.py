"""Run logs: the training throughput meter leaves paused time (evaluation, saves) out."""

import time

import pytest

from chexficient.run_log import Throughput


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
