"""Every adapter on the synthetic micro world with a randomly initialised tiny encoder: the keys
and ranges of their results, determinism, artefacts, and clear errors for missing fields."""

from __future__ import annotations

import os
import shutil

import ml_collections
import numpy as np
import pytest

from chexficient.data import registry
from chexficient.data.builders.nih_cxr14 import BOX_CLASSES, NihCxr14
from downstream import (linear_probe, metrics, report_generation, retrieval, segmentation,
                        zero_shot)
from downstream.config import bench_config
from downstream.data import (BenchData, MissingFieldsError, finding_names, label_draws,
                             mean_over_draws, subset_rows)
from downstream.encoders import Encoders
from pretrain.config import base_config
from tests import real_fixtures as rf
from tests.test_builder_nih_cxr14 import write_tree


@pytest.fixture(scope="module")
def run_config(micro) -> ml_collections.ConfigDict:
    """A tiny pretraining config on the session's micro world (conftest.py builds it)."""
    config = base_config("tiny")
    config.data.update(name=micro.name, data_dir=micro.data_dir, vocab_size=micro.vocab_size)
    return config


@pytest.fixture(scope="module")
def encoders(run_config) -> Encoders:
    return Encoders.random_init(run_config, seed=0, batch_size=32)


@pytest.fixture(scope="module")
def data(run_config) -> BenchData:
    return BenchData(run_config.data, image_size=run_config.model.image.image_size,
                     eval_splits=("test", "test_shift"), max_examples={"train": 96, "default": 64})


def _cfg(adapter: str, out_dir: str = "", **overrides) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(bench_config("quick")[adapter].to_dict())
    cfg.seed, cfg.out_dir = 0, out_dir
    cfg.update(overrides)
    return cfg


def test_encoders_shapes_and_batching(encoders, data):
    images = data.split("test").images[:40]
    emb = encoders.embed_images(images)
    assert emb.shape == (40, 128)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(encoders.embed_images(images[:7]), emb[:7], atol=1e-6)
    maps = encoders.image_feature_maps(images[:3])
    assert [m.shape[:3] for m in maps] == [(3, 8, 8)] * len(maps)
    assert encoders.image_tokens(images[:3]).shape[:2] == (3, 64)
    assert encoders.embed_texts(["no pleural effusion", "cardiomegaly"]).shape == (2, 128)


def test_bench_data_split_is_capped_aligned_and_cached(data):
    split = data.split("test")
    assert len(split) == 64 and split.images.shape == (64, 64, 64, 1)
    assert len(split.reports) == len(split.ids) == 64 and split.labels.shape == (64, 14)
    assert len(set(split.ids)) == 64
    assert data.split("test") is split
    with_mask = data.split("test", with_mask=True)
    assert with_mask.masks.shape == (64, 64, 64, 4) and with_mask.ids == split.ids


def test_zero_shot_keys_ranges_and_determinism(encoders, data):
    out = zero_shot.run(encoders, data, _cfg("zero_shot", bootstrap=dict(n_resamples=20, level=0.95)))
    for split in ("test", "test_shift"):
        mean = out[f"{split}/auroc/mean"]
        assert 0.0 <= mean <= 1.0
        assert out[f"{split}/auroc/mean/ci_low"] <= mean <= out[f"{split}/auroc/mean/ci_high"]
        assert f"{split}/auroc/Pleural Effusion" in out and f"{split}/auroc/mean_rare" in out
    assert out == zero_shot.run(encoders, data, _cfg("zero_shot", bootstrap=dict(n_resamples=20,
                                                                                   level=0.95)))


def test_a_finding_with_one_class_in_the_eval_split_is_named_and_left_out_of_the_means(
        encoders, run_config, caplog):
    few = BenchData(run_config.data, image_size=run_config.model.image.image_size,
                    eval_splits=("test",), max_examples={"default": 6})
    with caplog.at_level("WARNING"):
        out = zero_shot.run(encoders, few, _cfg("zero_shot", bootstrap=dict(n_resamples=5,
                                                                             level=0.95)))
    names = finding_names(())
    undefined = [n for n in names if np.isnan(out[f"test/auroc/{n}"])]
    assert undefined and len(undefined) < len(names)  # 6 images: some findings have one class
    assert out["test/n_findings_defined"] == len(names) - len(undefined)
    assert out["test/auroc/mean"] == pytest.approx(
        np.mean([out[f"test/auroc/{n}"] for n in names if n not in undefined]))
    assert f"zero_shot on synthetic_cxr/micro:test: no AUROC for {', '.join(undefined)} (one " \
        "class only among its 6 images)" in caplog.text


def test_retrieval_keys_and_ordering(encoders, data):
    out = retrieval.run(encoders, data, _cfg("retrieval"))
    for split in ("test", "test_shift"):
        for d in ("i2t", "t2i"):
            r1, r5, r10 = (out[f"{split}/{d}/R@{k}"] for k in (1, 5, 10))
            assert 0.0 <= r1 <= r5 <= r10 <= 1.0
            assert 1.0 <= out[f"{split}/{d}/mean_rank"] <= out[f"{split}/n_unique_texts"]


def test_retrieval_merges_reports_the_text_tower_reads_alike(encoders):
    """Reports that differ only past `text_len` tokens embed identically: one candidate. As
    two, they tie, the tie counts against the query, and a perfect model ranked them second."""
    head = " ".join(["No pleural effusion."] * 40)  # far beyond the tower's 64 tokens
    reports = [head + " Mild cardiomegaly.", head + " Small pneumothorax.", "Pulmonary edema.",
               head + " Mild cardiomegaly."]
    texts, inverse = retrieval.merge_reports(encoders, reports)
    assert texts == [reports[0], reports[2]] and inverse.tolist() == [0, 0, 1, 0]
    emb = encoders.embed_texts(reports)  # a perfect image tower: each image embeds as its report
    np.testing.assert_array_equal(emb[0], emb[1])
    ranks = retrieval.retrieval_ranks(emb, encoders.embed_texts(texts), inverse)
    assert ranks["i2t"].tolist() == [1, 1, 1, 1] and ranks["t2i"].tolist() == [1, 1]
    by_string, string_inverse = metrics.merge_duplicates(reports)
    tied = retrieval.retrieval_ranks(emb, encoders.embed_texts(by_string), string_inverse)
    assert tied["i2t"].tolist() == [2, 2, 1, 2]  # what merging by string alone gave


def test_linear_probe_fractions(encoders, data):
    out = linear_probe.run(encoders, data, _cfg("linear_probe"))
    assert [out[f"test/{p}%/n_train"] for p in (1, 10, 100)] == [1.0, 10.0, 96.0]
    assert 0.0 <= out["test_shift/100%/auroc/mean"] <= 1.0
    # Findings with one class in the training labels get a constant score (AUROC 0.5, in the
    # means), and the results say how many: all of them with one image, at 100% the count of
    # the train labels' constant columns.
    names = finding_names(())
    y = data.split(data.train_split).targets(names, 1)
    assert out["test/1%/n_findings_one_class_in_train"] == len(names)
    assert out["test/100%/n_findings_one_class_in_train"] == sum(len(np.unique(c)) < 2 for c in y.T)


def test_label_draws_are_distinct_seeded_subsets_and_one_at_full_labels():
    draws = label_draws(200, 0.1, 3, seed=5)
    assert [seed for seed, _ in draws] == [5, 6, 7]
    np.testing.assert_array_equal(draws[0][1], subset_rows(200, 0.1, 5))  # draw 0: the old subset
    assert all(len(rows) == 20 for _, rows in draws)
    assert len({tuple(rows) for _, rows in draws}) == 3
    (seed, rows), = label_draws(200, 1.0, 3, seed=5)
    np.testing.assert_array_equal(rows, np.arange(200))
    out = mean_over_draws([{"a/mean": 0.5, "a/x": 1.0}, {"a/mean": 0.7, "a/x": 3.0}])
    assert out == pytest.approx({"a/mean": 0.6, "a/x": 2.0, "a/mean/sd": 0.1})
    assert mean_over_draws([{"a/mean": 0.5}]) == {"a/mean": 0.5}  # no spread from one draw


@pytest.mark.parametrize("adapter, key, steps", [("linear_probe", "auroc/mean", None),
                                                 ("segmentation", "dice/mean", 5)])
def test_low_label_scores_are_means_over_draws(encoders, data, adapter, key, steps):
    """Two draws report the mean and spread of what the two single draws score alone."""
    module = {"linear_probe": linear_probe, "segmentation": segmentation}[adapter]
    extra = dict(steps=steps, overlays=0) if steps else {}
    both = module.run(encoders, data, _cfg(adapter, fractions=(0.1,), draws=2, **extra))
    alone = [module.run(encoders, data, _cfg(adapter, fractions=(0.1,), draws=1, **extra,
                                                 seed=seed))[f"test/10%/{key}"] for seed in (0, 1)]
    assert alone[0] != alone[1]
    assert both[f"test/10%/{key}"] == pytest.approx(np.mean(alone))
    assert both[f"test/10%/{key}/sd"] == pytest.approx(np.std(alone))
    assert both["test/10%/draws"] == 2.0


def test_linear_probe_finetune_mode(encoders, data):
    cfg = _cfg("linear_probe", fractions=(1.0,))
    cfg.finetune.update(enabled=True, steps=3, batch_size=16)
    out = linear_probe.run(encoders, data, cfg)
    assert 0.0 <= out["test/100%/auroc/mean"] <= 1.0


def test_segmentation_dice_and_overlays(encoders, data, tmp_path):
    out = segmentation.run(encoders, data, _cfg("segmentation", str(tmp_path), steps=5,
                                                fractions=(0.1, 1.0), overlays=2))
    for target in ("lungs", "heart", "pathology", "mean"):
        assert 0.0 <= out[f"test/100%/dice/{target}"] <= 1.0
    assert os.path.getsize(tmp_path / "segmentation_test_shift.png") > 0


def test_segmentation_finetune_mode(encoders, data):
    out = segmentation.run(encoders, data, _cfg("segmentation", steps=2, fractions=(1.0,),
                                                finetune=True, overlays=0))
    assert 0.0 <= out["test/100%/dice/mean"] <= 1.0


def test_segmentation_names_adapter_and_dataset_for_missing_channels(encoders, data):
    cfg = _cfg("segmentation", steps=1)
    cfg.targets = dict(lungs=("left_lung", "right_lung"), extra=("ribs",))
    with pytest.raises(MissingFieldsError, match=r"segmentation.*'extra'.*synthetic_cxr/micro.*"
                                                 r"\['left_lung', 'right_lung', 'heart', 'pathology'\]"):
        segmentation.run(encoders, data, cfg)


@pytest.fixture(scope="module")
def nih(tmp_path_factory, micro, run_config) -> BenchData:
    """nih_cxr14/frontal built from the NIH builder test's tree plus a Cardiomegaly box on one
    train image, with the micro world's tokenizer beside it (the loader opens one)."""
    root = tmp_path_factory.mktemp("nih")
    manual = write_tree(str(root / "manual"))
    with open(os.path.join(manual, "BBox_List_2017.csv"), "a") as f:
        f.write("00000001_000.png,Cardiomegaly,30,50,60,40,,,\n")
    builder, _ = rf.build(NihCxr14, NihCxr14.builder_configs["frontal"], manual,
                          str(root / "data"))
    shutil.copy(registry.tokenizer_path(registry.prepared_builder(micro.name, micro.data_dir),
                                        micro.vocab_size),
                registry.tokenizer_path(builder, micro.vocab_size))
    config = ml_collections.ConfigDict(run_config.data.to_dict())
    config.update(name="nih_cxr14/frontal", data_dir=str(root / "data"))
    return BenchData(config, image_size=run_config.model.image.image_size)


def test_segmentation_on_nih_uses_box_classes_and_only_boxed_images(encoders, nih):
    out = segmentation.run(encoders, nih, _cfg("segmentation", steps=1, fractions=(1.0,),
                                               overlays=0))
    n = len(nih.split("train"))
    assert n >= 2 and out["test/100%/n_train"] == 1.0  # the boxed one
    assert out["train/n_not_annotated_left_out"] == n - 1
    assert out["test/n_not_annotated_left_out"] == 0.0  # its one image has boxes
    assert {k.split("/")[-1] for k in out if "/dice/" in k} == {*BOX_CLASSES, "mean"}
    cfg = _cfg("segmentation", steps=1, fractions=(1.0,), overlays=0)
    cfg.targets = {"heart": ("heart",)}  # the synthetic world's channel: refused
    with pytest.raises(MissingFieldsError, match=r"'heart'.*nih_cxr14/frontal.*'Atelectasis'"):
        segmentation.run(encoders, nih, cfg)
    cfg.targets = {"effusion": "Effusion"}  # no image of the split has an Effusion box
    with pytest.raises(MissingFieldsError, match=r"no image of split 'train' of dataset "
                                                 r"'nih_cxr14/frontal' \(of \d read\)"):
        segmentation.run(encoders, nih, cfg)


def test_missing_fields_and_splits_are_named(data):
    with pytest.raises(MissingFieldsError, match=r"adapter 'x' needs fields \['nodule_box'\].*"
                                                 r"synthetic_cxr/micro"):
        data.require("x", ("nodule_box",))
    with pytest.raises(MissingFieldsError, match=r"splits \['valid'\]"):
        data.require("x", (), ("valid",))


def test_report_generation_metrics_and_samples(encoders, data, tmp_path):
    cfg = _cfg("report_generation", str(tmp_path), steps=5, max_len=24, width=32, samples=2)
    out = report_generation.run(encoders, data, cfg)
    for mode in ("greedy", "beam"):
        for key in ("bleu1", "bleu4", "rougeL", "f1_top5_micro", "f1_all14_macro"):
            assert 0.0 <= out[f"test/{mode}/{key}"] <= 1.0, (mode, key)
    text = (tmp_path / "reports_test.md").read_text()
    assert text.count("**reference**") == 2 and "**beam**" in text
