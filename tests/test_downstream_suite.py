"""The bench suite on two real (briefly trained) checkpoints, a broken one and the random-init
reference: the side-by-side table, errors that name checkpoint / adapter / dataset without
stopping the rest, figures, and byte-identical results on a rerun."""

from __future__ import annotations

import json
import os

import pytest

from downstream import suite
from downstream.config import bench_config
from pretrain.config import base_config
from pretrain.train import train


@pytest.fixture(scope="module")
def runs(micro, tmp_path_factory) -> list[str]:
    """Two workdirs of the real trainer (2 steps each, different seeds) on the micro world."""
    root = tmp_path_factory.mktemp("runs")
    workdirs = []
    for seed in (0, 1):
        config = base_config("tiny,batch_size=32")
        config.data.update(name=micro.name, data_dir=micro.data_dir, vocab_size=micro.vocab_size)
        config.update(seed=seed, total_steps=2, progress=False)
        config.checkpoint.every_steps = 2
        config.eval.every_steps = 0
        workdir = str(root / f"run{seed}")
        train(config, workdir)
        workdirs.append(workdir)
    return workdirs


def _config():
    config = bench_config("quick,max_train=48,max_eval=48,n_resamples=10")
    config.adapters = ("zero_shot", "retrieval", "segmentation")
    config.segmentation.update(steps=2, fractions=(1.0,), overlays=1,
                               targets=dict(lungs=("left_lung", "right_lung"), bogus=("ribs",)))
    return config


def test_suite_two_checkpoints_and_reference_side_by_side(runs, tmp_path):
    broken = tmp_path / "broken"
    (broken / "checkpoints" / "3").mkdir(parents=True)
    out = str(tmp_path / "bench")
    summary = suite.run_bench([*runs, str(broken)], _config(), out)

    assert summary["columns"] == ["run0", "run1", "broken", "random_init"]
    for column in ("run0", "run1", "random_init"):
        assert set(summary["results"][column]) == {"zero_shot", "retrieval"}
        assert 0 <= summary["results"][column]["zero_shot"]["test_shift/auroc/mean"] <= 1
        message = summary["errors"][column]["segmentation"]
        assert "'segmentation'" in message and "synthetic_cxr/micro" in message
        assert "'bogus'" in message
    for column, path in zip(("run0", "run1"), runs):
        assert path in summary["errors"][column]["segmentation"]
    assert "randomly initialised" in summary["errors"]["random_init"]["segmentation"]
    assert str(broken) in summary["errors"]["broken"]["checkpoint"]
    assert summary["results"]["run0"] != summary["results"]["run1"]

    table = open(os.path.join(out, "results.md")).read()
    assert "| metric | run0 | run1 | broken | random_init |" in table
    assert "## zero_shot" in table and "## retrieval" in table and "## Errors" in table
    row = next(line for line in table.splitlines() if line.startswith("| test/i2t/R@1 |"))
    assert row.count("|") == 6 and row.split("|")[4].strip() == "-"  # broken column is empty
    for split in ("test", "test_shift"):
        assert os.path.getsize(os.path.join(out, f"zero_shot_auroc_{split}.png")) > 0
    assert json.load(open(os.path.join(out, "results.json"))) == summary

    again = str(tmp_path / "again")
    suite.run_bench([*runs, str(broken)], _config(), again)
    assert open(os.path.join(again, "results.json")).read() == \
        open(os.path.join(out, "results.json")).read()


def test_unknown_adapter_lists_valid_ones():
    config = _config()
    config.adapters = ("zero_shot", "vqa")
    with pytest.raises(ValueError, match=r"unknown adapter 'vqa'; valid: .*linear_probe"):
        suite.run_bench(["unused"], config, "unused")


def test_column_names_are_short_and_unique():
    assert suite.column_names(["/a/run", "/b/run/", "/c/exp/checkpoints"]) == ["run#1", "run#2", "exp"]
    assert suite.column_names(["runs/full/milestones@4", "runs/cx/milestones@4", "runs/full@8",
                               "runs/full/checkpoints@8"]) == [
        "full-milestones@4", "cx-milestones@4", "full@8#3", "full@8#4"]


def test_checkpoint_keeps_its_tokenizer_when_the_dataset_loses_it(micro, runs, tmp_path):
    import shutil

    from chexficient.checkpoint import RUN_TOKENIZER
    from chexficient.data import registry
    from downstream.encoders import Encoders

    kept = os.path.join(runs[0], RUN_TOKENIZER)
    dataset_tokenizer = registry.tokenizer_path(micro.builder, micro.vocab_size)
    assert open(kept, "rb").read() == open(dataset_tokenizer, "rb").read()
    texts = ["Moderate left effusion.", "No pneumothorax."]
    before = Encoders.from_checkpoint(runs[0]).embed_texts(texts)

    moved = tmp_path / "run"  # the run alone, its dataset's tokenizer nowhere to be found
    shutil.copytree(runs[0], moved)
    config = json.load(open(moved / "config.json"))
    config["data"]["data_dir"] = str(tmp_path / "no_data_here")
    (moved / "config.json").write_text(json.dumps(config))
    after = Encoders.from_checkpoint(str(moved)).embed_texts(texts)
    assert (before == after).all()

    (moved / RUN_TOKENIZER).unlink()  # a run from before tokenizers were kept: the dataset's
    with pytest.raises(Exception, match="no_data_here"):
        Encoders.from_checkpoint(str(moved))
