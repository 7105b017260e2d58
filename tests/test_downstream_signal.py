"""Real signal, end to end through `chexficient bench`: a tiny encoder pretrained on
synthetic_cxr/tiny with the tiny preset beats the randomly initialised reference column on
zero-shot AUROC (the default "{Finding}." / "No {finding}." prompts), on retrieval, on linear
probes of the five CheXpert competition findings, and on the clinical efficacy of the reports
a decoder writes from its image tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pretrain.config import base_config
from pretrain.train import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_pretrained_tiny_encoder_beats_random_init(tiny_data_dir, tmp_path_factory):
    config = base_config("tiny")
    config.data.data_dir = tiny_data_dir
    config.update(progress=False)
    workdir = str(tmp_path_factory.mktemp("runs") / "pretrained")
    train(config, workdir)

    out = str(tmp_path_factory.mktemp("bench"))
    command = [sys.executable, "-m", "chexficient.cli", "bench", f"--checkpoints={workdir}",
               "--config=configs/bench.py:quick,max_train=1024,max_eval=512",
               "--config.adapters=('zero_shot','retrieval','linear_probe','report_generation')",
               "--config.data.eval_splits=('test',)", "--config.linear_probe.fractions=(1.0,)",
               "--config.report_generation.decoding=('greedy',)", f"--out={out}"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.load(open(os.path.join(out, "results.json")))["results"]
    assert set(results) == {"pretrained", "random_init"}

    def gain(adapter: str, key: str, sign: float = 1.0) -> float:
        return sign * (results["pretrained"][adapter][key] - results["random_init"][adapter][key])

    assert gain("zero_shot", "test/auroc/mean") > 0.04
    assert gain("zero_shot", "test/auroc/mean_top5") > 0.08
    for direction in ("i2t", "t2i"):
        assert gain("retrieval", f"test/{direction}/R@10") > 0.02, direction
        assert gain("retrieval", f"test/{direction}/mean_rank", sign=-1.0) > 50, direction
    assert gain("linear_probe", "test/100%/auroc/mean_top5") > 0.01
    assert gain("report_generation", "test/greedy/f1_top5_micro") > 0.02
