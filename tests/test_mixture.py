"""Pretraining on a mixture of two built datasets (synthetic micro + a tiny NIH ChestX-ray14
built from its real layout): pool positions, weighted draws, source tags, evaluation order,
subsets by pool position, the shared tokenizer, and the curation report per source."""

from __future__ import annotations

import collections
import json
import os
import shutil

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from chexficient.data import mixture, registry
from chexficient.data.pipeline import make_loader
from curation.audit import source_retention
from pretrain.schedule import Plan
from tests.conftest import MICRO
from tests.test_builder_nih_cxr14 import write_tree as write_nih_tree

NIH = "nih_cxr14/frontal"


@pytest.fixture(scope="module")
def data_dir(micro, tmp_path_factory) -> str:
    """A data dir holding a copy of micro and a 4-image NIH build (2 train, 1 validation)."""
    data_dir = str(tmp_path_factory.mktemp("mixture_data"))
    shutil.copytree(micro.data_dir, data_dir, dirs_exist_ok=True)
    manual = write_nih_tree(str(tmp_path_factory.mktemp("nih_manual")))
    registry.get_builder(NIH, data_dir).download_and_prepare(
        file_format=registry.FILE_FORMAT,
        download_config=tfds.download.DownloadConfig(manual_dir=manual))
    return data_dir


def _config(data_dir: str, mix=((MICRO, 0.75), (NIH, 0.25)), **overrides
            ) -> ml_collections.ConfigDict:
    values = dict(name=MICRO, mixture=mix, data_dir=data_dir, image_size=0, text_len=32,
                  vocab_size=4000, on_error="raise", subset="", worker_count=0, train_split="train",
                  augment=dict(enabled=False))
    values.update(overrides)
    return ml_collections.ConfigDict(values)


def _rows(loader, batches: int) -> dict[str, np.ndarray]:
    taken = [next(loader) for _ in range(batches)]
    return {k: np.concatenate([b[k] for b in taken]) for k in taken[0]}


def test_parse_pairs_and_strings():
    assert mixture.parse("a/x:0.5, b:1") == [("a/x", 0.5), ("b", 1.0)]
    assert mixture.parse([("a", 1), ("b", 3)]) == [("a", 1.0), ("b", 3.0)]
    for bad, match in (("a:0", "must be > 0"), ("a:inf", "finite"), ("a:abc", "of 'a' must be a number"),
                       ("a", "NAME:WEIGHT"), ([("a", 1), ("a", 2)], "twice"),
                       ([("a", 1, 2)], "pair")):
        with pytest.raises(ValueError, match=match):
            mixture.parse(bad)


def test_pool_is_the_parts_end_to_end(data_dir):
    parts = mixture.parts(_config(data_dir), "train")
    assert [(p.name, p.offset, p.size) for p in parts] == [(MICRO, 0, 256), (NIH, 256, 2)]
    assert mixture.pool_size(_config(data_dir), "train") == 258
    assert mixture.locate(parts, 255) == (0, 255) and mixture.locate(parts, 257) == (1, 1)
    with pytest.raises(IndexError):
        mixture.locate(parts, 258)
    names = mixture.source_names(parts)
    assert len(names) == 258 and names[255] == MICRO and names[256] == NIH
    single = mixture.parts(_config(data_dir, mix=()), "train")
    assert [(p.name, p.offset, p.size) for p in single] == [(MICRO, 0, 256)]


def test_training_draws_by_weight_and_tags_each_row(data_dir):
    config = _config(data_dir)
    rows = _rows(make_loader(config, "train", train=True, batch_size=8, seed=0, shard=(0, 1)), 8)
    assert collections.Counter(rows["source"].tolist()) == {0: 48, 1: 16}  # 0.75 / 0.25
    assert ((rows["source"] == 1) == (rows["index"] >= 256)).all()
    assert set(rows["index"][rows["source"] == 1].tolist()) == {256, 257}  # the small part repeats
    nih = registry.data_source(NIH, "train", data_dir)
    tokenizer = mixture.load_tokenizer(config, mixture.parts(config, "train"))
    for row in np.flatnonzero(rows["source"] == 1)[:2]:
        record = nih[int(rows["index"][row]) - 256]
        np.testing.assert_array_equal(rows["labels"][row], record["labels"])
        np.testing.assert_array_equal(
            rows["tokens"][row], tokenizer.encode([record["report"].decode()], 32)[0][0])
    assert rows["image"].shape[1:] == (128, 128, 1)  # NIH's 256 px resized to the first part's
    again = _rows(make_loader(config, "train", train=True, batch_size=8, seed=0, shard=(0, 1)), 8)
    np.testing.assert_array_equal(again["index"], rows["index"])
    other = _rows(make_loader(config, "train", train=True, batch_size=8, seed=1, shard=(0, 1)), 8)
    assert (other["index"] != rows["index"]).any()


def test_resume_sees_the_same_next_batches(data_dir):
    config = _config(data_dir)
    loader = make_loader(config, "train", train=True, batch_size=8, seed=3, shard=(0, 1))
    _rows(loader, 3)
    state = json.loads(json.dumps(loader.get_state()))
    expected = _rows(loader, 2)
    resumed = make_loader(config, "train", train=True, batch_size=8, seed=3, shard=(0, 1))
    resumed.set_state(state)
    got = _rows(resumed, 2)
    for key in ("index", "source", "tokens"):
        np.testing.assert_array_equal(got[key], expected[key])


def test_evaluation_reads_each_part_in_order(data_dir):
    loader = make_loader(_config(data_dir), "validation", train=False, batch_size=16, seed=0,
                         shard=(0, 1))
    batches = list(loader)
    index = np.concatenate([b["index"] for b in batches])
    source = np.concatenate([b["source"] for b in batches])
    np.testing.assert_array_equal(index, np.arange(65))  # micro's 64 then NIH's 1
    np.testing.assert_array_equal(source, [0] * 64 + [1])


def test_indices_are_pool_positions(data_dir):
    config = _config(data_dir)
    rows = _rows(make_loader(config, "train", train=False, batch_size=4, seed=0, shard=(0, 1),
                             indices=[3, 10, 256, 257]), 1)
    assert rows["index"].tolist() == [3, 10, 256, 257] and rows["source"].tolist() == [0, 0, 1, 1]
    only_nih = _rows(make_loader(config, "train", train=True, batch_size=4, seed=0, shard=(0, 1),
                                 indices=[256, 257]), 2)
    assert set(only_nih["index"].tolist()) == {256, 257} and (only_nih["source"] == 1).all()


def test_mixture_tokenizer_is_trained_once_on_all_parts(data_dir):
    config = _config(data_dir)
    path = mixture.tokenizer_path(config, 4000)
    assert path == os.path.join(data_dir, "mixtures", "synthetic_cxr-micro+nih_cxr14-frontal",
                                "tokenizer_4000.model")
    first = mixture.load_tokenizer(config, mixture.parts(config, "train"))
    assert os.path.exists(path)
    stamp = os.path.getmtime(path)
    second = mixture.load_tokenizer(config, mixture.parts(config, "train"))
    assert os.path.getmtime(path) == stamp and second.vocab_size == first.vocab_size


def test_subset_and_mixture_do_not_combine(data_dir):
    with pytest.raises(ValueError, match="cannot be combined with a mixture"):
        mixture.parts(_config(data_dir, subset="/some/export"), "train")
    with pytest.raises(ValueError, match="no split 'test_shift'"):
        mixture.parts(_config(data_dir), "test_shift")


def test_source_retention():
    kept = np.array([1, 1, 0, 0, 0, 0, 1, 0], bool)
    rows = source_retention(kept, ["a"] * 4 + ["b"] * 2 + ["c"] * 2)
    assert [(r["source"], r["pool"], r["kept"], r["kept_fraction"]) for r in rows] == [
        ("a", 4, 2, 0.5), ("b", 2, 0, 0.0), ("c", 2, 1, 0.5)]
    assert [r["flag"] for r in rows] == ["", "lost", ""]
    assert rows[0]["relative"] == pytest.approx(0.5 / (3 / 8))


def test_export_of_a_mixture_run_is_refused(data_dir, tmp_path):
    from curation.export import ExportError, export_subset

    data = _config(data_dir).to_dict()
    (tmp_path / "config.json").write_text(json.dumps(dict(data=data)))
    np.savez(tmp_path / "ledger.npz", first_kept=np.zeros(258, np.int32))
    with pytest.raises(ExportError, match="mixture of 2 datasets"):
        export_subset(str(tmp_path), str(tmp_path / "out"))


def test_the_bench_reads_a_mixture_runs_first_dataset_whole(data_dir, tmp_path):
    """Images, labels, ids and reports of one dataset, paired as stored (the bench once read
    images from the mixture and reports from `data.name`)."""
    import types

    from chexficient.data.pipeline import preprocess_image
    from downstream.config import bench_config
    from downstream.suite import Bench

    run_data = _config(data_dir, mix=((MICRO, 0.5), (NIH, 0.5)), name=NIH).to_dict()
    encoders = types.SimpleNamespace(config=ml_collections.ConfigDict(dict(data=run_data)),
                                     image_size=64)
    split = Bench(bench_config("quick,max_eval=24,splits=test"), str(tmp_path)).data_for(
        encoders).split("test")
    stored = {r["id"].decode(): r for r in registry.data_source(MICRO, "test", data_dir)}
    assert len(split.ids) == 24 and set(split.ids) <= set(stored)
    for i, record_id in enumerate(split.ids):
        np.testing.assert_array_equal(split.labels[i], stored[record_id]["labels"])
        assert split.reports[i] == stored[record_id]["report"].decode()
    np.testing.assert_allclose(split.images[0], preprocess_image(stored[split.ids[0]]["image"], 64))


def test_pool_fields_match_the_decoded_records(data_dir):
    parts = mixture.parts(_config(data_dir), "train")
    records = list(mixture.PoolSource(parts))
    fields = mixture.pool_fields(parts, ("labels", "report", "mismatched"))
    assert sorted(fields) == ["labels", "report"]  # the NIH part stores no `mismatched`
    assert len(fields["labels"]) == len(records) == 258
    np.testing.assert_array_equal(np.stack(fields["labels"]), np.stack([r["labels"] for r in records]))
    assert fields["report"] == [r["report"].decode() for r in records]


def test_curation_report_per_source(data_dir, tmp_path):
    config = ml_collections.ConfigDict(dict(data=_config(data_dir)))
    first_kept = np.full(258, -1, np.int32)
    first_kept[256:] = 0  # every NIH record kept, no micro one
    ledger = dict(first_kept=first_kept, score=np.zeros(258, np.float32),
                  cluster=np.full(258, -1, np.int32))
    report = Plan(config, pool_size=258, batch_size=8).write_report(str(tmp_path), ledger,
                                                                    data_dir, 0.5)
    assert [(r["source"], r["pool"], r["kept"], r["flag"]) for r in report["sources"]] == [
        (MICRO, 256, 0, "lost"), (NIH, 2, 2, "")]
    assert f"source {MICRO!r} lost: 0 of 256 kept" in " ".join(report["flags"])
    assert "## Per-source retention" in (tmp_path / "curation_report.md").read_text()
    assert len(report["findings"]) == 14 and report["records"] == 258
