"""The supervised reference: a classifier head trained with BCE for a FLOP budget, read by the bench."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from chexficient import inference
from chexficient.data import registry
from chexficient.findings import FINDINGS
from chexficient.quickstart import load_config
from downstream import zero_shot
from downstream.config import bench_config
from downstream.data import BenchData, finding_names
from downstream.encoders import Encoders, NotApplicable
from downstream.suite import run_bench
from pretrain.train import train
from tests.conftest import micro_config


def supervised_config(micro, schedule="full", **overrides):
    config = micro_config(micro, schedule, **overrides)
    reference = load_config("supervised", "tiny")
    config.update(loss=reference.loss)
    config.model.classes = reference.model.classes
    return config


def test_supervised_run_spends_its_budget_learns_and_answers_with_its_head(micro, tmp_path):
    workdir = str(tmp_path / "supervised")
    summary = train(supervised_config(micro, total_flops=6e10, log_every_steps=1), workdir)
    per_step = summary["flops_spent"] / summary["step"]
    assert abs(summary["flops_spent"] - 6e10) <= per_step / 2  # the budget, to the nearest step
    assert json.load(open(os.path.join(workdir, "config.json")))["total_flops"] == 6e10
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < losses[0]  # binary cross-entropy falls
    encoders = Encoders.from_checkpoint(workdir, batch_size=32)
    assert encoders.supervised
    data = BenchData(encoders.config.data, image_size=encoders.image_size, eval_splits=("test",),
                     max_examples={"default": 40})
    images = data.split("test").images
    names = finding_names(())
    head = encoders.classify(images)
    assert head.shape == (40, 14) and np.all((head > 0) & (head < 1))
    scores = zero_shot.scores(encoders, images, names)  # the bench reads the head, not prompts
    np.testing.assert_array_equal(scores, head[:, 1:])
    # The inference API answers as the bench does: the head, in any case of the finding's name.
    model = inference.load(workdir, batch_size=16)
    source = registry.data_source(micro.name, "test", micro.data_dir)
    raw = [source[i]["image"] for i in range(6)]
    probs = model.zero_shot(raw, labels=["pleural effusion", "Cardiomegaly"])
    head = model.encoders.classify(np.stack([model.preprocess(x) for x in raw]))
    np.testing.assert_allclose(probs, head[:, [FINDINGS.index("Pleural Effusion"),
                                               FINDINGS.index("Cardiomegaly")]], rtol=1e-5)
    for call in (lambda: model.zero_shot(raw, labels=["ARDS"]),
                 lambda: model.zero_shot(raw, prompts=[("{Finding}.", "No {finding}.")]),
                 lambda: model.zero_shot_embeddings(model.embed_images(raw)),
                 lambda: model.embed_texts(["Cardiomegaly."]),
                 lambda: model.retrieve(raw, ["Cardiomegaly."])):
        with pytest.raises(NotApplicable):
            call()
    # Retrieval needs a text tower: the bench says it does not apply, and counts no error.
    config = bench_config("quick,max_train=40,max_eval=40,reference=false")
    config.adapters = ("retrieval",)
    summary = run_bench([workdir], config, str(tmp_path / "bench"), names=["supervised"])
    assert "text tower" in summary["not_applicable"]["supervised"]["retrieval"]
    assert not any(summary["errors"].values())


def test_the_bench_reference_copies_a_clip_run_even_after_a_supervised_one(micro, tmp_path):
    """The randomly initialised column is the CLIP architecture whenever a CLIP run is benched,
    so it has a text tower to retrieve with, whichever order the runs come in."""
    supervised, clip = str(tmp_path / "supervised"), str(tmp_path / "clip")
    train(supervised_config(micro, total_steps=2), supervised)
    train(micro_config(micro, total_steps=2), clip)
    config = bench_config("quick,max_train=40,max_eval=40")
    config.adapters = ("retrieval",)
    summary = run_bench([supervised, clip], config, str(tmp_path / "bench"))
    assert "retrieval" in summary["not_applicable"]["supervised"]
    assert "random_init" not in summary["not_applicable"]
    assert "test/i2t/R@5" in summary["results"]["random_init"]["retrieval"]


def test_supervised_loss_needs_the_head_and_no_curator(micro, tmp_path):
    config = micro_config(micro, loss="supervised")
    with pytest.raises(ValueError, match="model.classes=14"):
        train(config, str(tmp_path / "no_head"))
    curated = supervised_config(micro, "chexficient")
    with pytest.raises(ValueError, match="no curator"):
        train(curated, str(tmp_path / "curated"))
    budget = micro_config(micro, "chexficient", total_flops=1e9)
    with pytest.raises(ValueError, match="total_flops needs schedule 'full'"):
        train(budget, str(tmp_path / "budget"))


@pytest.fixture(scope="module")
def chexpert_dir(tmp_path_factory) -> str:
    """A data dir holding only a label-only CheXpert build (24 train, 4 validation records)."""
    from tests import label_only_data as lo

    data_dir = str(tmp_path_factory.mktemp("chexpert_data"))
    lo.build(lo.CHEXPERT, lo.write_chexpert(str(tmp_path_factory.mktemp("chexpert"))), data_dir)
    return data_dir


def test_supervised_run_trains_on_a_label_only_dataset_without_a_tokenizer(micro, chexpert_dir,
                                                                          tmp_path):
    from chexficient.checkpoint import RUN_TOKENIZER
    from chexficient.data import registry
    from tests.label_only_data import CHEXPERT, tokenizer_files

    config = supervised_config(micro, total_steps=3, batch_size=8, log_every_steps=1)
    config.data.update(name=CHEXPERT, data_dir=chexpert_dir)
    config.eval.update(every_steps=2, batch_size=4)  # its validation batches have no text either
    workdir = tmp_path / "supervised"
    summary = train(config, str(workdir))
    assert summary["step"] == 3 and summary["pool_size"] == 24
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    assert all(np.isfinite(r["loss"]) for r in rows if "loss" in r)
    assert any("val/loss" in r for r in rows)
    assert not (workdir / RUN_TOKENIZER).exists()
    assert tokenizer_files(registry.prepared_builder(CHEXPERT, chexpert_dir)) == []
    assert json.load(open(workdir / "config.json"))["model"]["text"]["vocab_size"] == 4000
    # The bench reads it with no tokenizer: its head answers zero-shot on its own dataset, and
    # what needs text encoding does not apply (no error); the random reference copies it.
    config = bench_config("quick,max_train=4,max_eval=4,n_resamples=10,splits=validation")
    config.adapters = ("zero_shot", "report_generation")
    summary = run_bench([str(workdir)], config, str(tmp_path / "bench"), names=["supervised"])
    assert not any(summary["errors"].values()), summary["errors"]
    assert "validation/auroc/mean" in summary["results"]["supervised"]["zero_shot"]
    assert "no tokenizer" in summary["not_applicable"]["supervised"]["report_generation"]
