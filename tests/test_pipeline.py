"""The input pipeline on the real micro world: batch contract, order, shards, resume, augmentation,
subsets, and bad records (named errors, or counted, logged and listed skips)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from chexficient.data import mixture, registry
from chexficient.data.pipeline import (PIXEL_MEAN, PIXEL_STD, Augment, ImageTransform, TextAugment,
                                       make_loader, preprocess_images, resume_state)
from chexficient.data.records import RecordError, RecordReader, SkipLog, read_skipped, validate

RAW = tfds.decode.DeserializeMethod.RAW_BYTES


def _source(micro, split="train"):
    return registry.data_source(micro.name, split, micro.data_dir)


def _normalised(image: np.ndarray) -> np.ndarray:
    return ((image.astype(np.float32) / 255 - PIXEL_MEAN) / PIXEL_STD)[..., None]


def _take(loader, n: int) -> list[dict[str, np.ndarray]]:
    return [next(loader) for _ in range(n)]


def _assert_same_batches(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def _indices(loader) -> list[int]:
    return [int(i) for batch in loader for i in batch["index"]]


# --- the batch contract -------------------------------------------------------------------

def test_train_batch_contract(micro):
    loader = make_loader(micro.data_config(), "train", train=True, batch_size=8, seed=0,
                         with_mask=True)
    batch = next(loader)
    size = micro.builder.info.features["image"].shape[0]
    expected = {"image": (np.float32, (8, size, size, 1)), "tokens": (np.int32, (8, 32)),
                "text_mask": (np.bool_, (8, 32)), "labels": (np.int8, (8, 14)),
                "index": (np.int32, (8,)), "mask": (np.uint8, (8, size, size, 4))}
    assert {k: (v.dtype, v.shape) for k, v in batch.items()} == {
        k: (np.dtype(d), s) for k, (d, s) in expected.items()}
    assert np.isfinite(batch["image"]).all()
    assert set(np.unique(batch["mask"])) <= {0, 1}
    assert (batch["text_mask"] == (batch["tokens"] != 0)).all()


def test_eval_batches_are_the_stored_records_in_order(micro):
    source = _source(micro, "validation")
    loader = make_loader(micro.data_config(), "validation", train=False, batch_size=24, seed=0,
                         with_mask=True)
    batches = list(loader)
    assert [len(b["index"]) for b in batches] == [24, 24, len(source) - 48]  # keeps the remainder
    index = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(index, np.arange(len(source)))
    images = np.concatenate([b["image"] for b in batches])
    assert abs(images.mean()) < 0.5 and 0.7 < images.std() < 1.4  # roughly standardised
    first = batches[0]
    for row in (0, 5):
        record = source[row]
        np.testing.assert_allclose(first["image"][row], _normalised(record["image"]), atol=1e-5)
        np.testing.assert_array_equal(first["mask"][row], record["mask"])
        np.testing.assert_array_equal(first["labels"][row], record["labels"])
        tokens = micro.tokenizer.encode([record["report"].decode()], 32)[0][0]
        np.testing.assert_array_equal(first["tokens"][row], tokens)


def test_image_size_resizes_images_and_masks(micro):
    loader = make_loader(micro.data_config(image_size=64), "train", train=True, batch_size=4,
                         seed=0, with_mask=True)
    batch = next(loader)
    assert batch["image"].shape == (4, 64, 64, 1) and batch["mask"].shape == (4, 64, 64, 4)


# --- order, epochs, determinism, shards -----------------------------------------------------

def test_same_seed_same_batches_other_seed_other_order(micro):
    config = micro.data_config()
    a = _take(make_loader(config, "train", train=True, batch_size=8, seed=3), 2)
    b = _take(make_loader(config, "train", train=True, batch_size=8, seed=3), 2)
    c = _take(make_loader(config, "train", train=True, batch_size=8, seed=4), 2)
    _assert_same_batches(a, b)
    assert not np.array_equal(a[0]["index"], c[0]["index"])


def test_each_epoch_is_a_new_permutation(micro):
    n = len(_source(micro))
    index = _indices(make_loader(micro.data_config(), "train", train=True, batch_size=16,
                                 seed=0, num_epochs=2, shard=(0, 1)))
    first, second = index[:n], index[n:]
    assert sorted(first) == sorted(second) == list(range(n))
    assert first != second and first != sorted(first)


@pytest.mark.parametrize("train", [False, True])
def test_process_shards_are_disjoint_and_complete(micro, train):
    n, count = len(_source(micro)), 3
    shards = [_indices(make_loader(micro.data_config(), "train", train=train, batch_size=1,
                                   seed=0, num_epochs=1, shard=(i, count)))
              for i in range(count)]
    seen = [i for shard in shards for i in shard]
    assert len(seen) == len(set(seen)) == n and set(seen) == set(range(n))


def test_indices_restrict_reading_to_those_positions(micro):
    positions = [3, 50, 7, 100]
    loader = make_loader(micro.data_config(), "train", train=False, batch_size=3, seed=0,
                         indices=positions)
    batches = list(loader)
    np.testing.assert_array_equal(np.concatenate([b["index"] for b in batches]), positions)
    with pytest.raises(ValueError, match="record positions"):
        make_loader(micro.data_config(), "train", train=False, batch_size=3, seed=0,
                    indices=[0, 10**6])


# --- resume -------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [0, 2])
def test_resume_sees_the_same_next_batches(micro, workers):
    config = micro.data_config(worker_count=workers)
    loader = make_loader(config, "train", train=True, batch_size=8, seed=1, with_mask=True)
    _take(loader, 3)
    state = json.loads(json.dumps(loader.get_state()))  # as a checkpoint would store it
    expected = _take(loader, 2)
    resumed = make_loader(config, "train", train=True, batch_size=8, seed=1, with_mask=True)
    resumed.set_state(state)
    _assert_same_batches(_take(resumed, 2), expected)
    for it in (loader, resumed):
        it.close()


@pytest.mark.parametrize("train", [True, False])
def test_batches_read_whole_are_the_batches_read_record_by_record(micro, train):
    """A clean dataset gives the same batches, and the same data positions, whether whole
    batches are read by their place (the default) or records one at a time (on_error=skip)."""
    load = lambda on_error: make_loader(  # noqa: E731
        micro.data_config(on_error=on_error, text_augment=dict(enabled=True)), "train",
        train=train, batch_size=6, seed=3, with_mask=True, num_epochs=None if train else 1)
    whole, by_record = load("raise"), load("skip")
    if train:
        for _ in range(4):
            _assert_same_batches([next(whole)], [next(by_record)])
            assert whole.get_state() == by_record.get_state()
        assert whole.get_state() == {"next_index": 4 * 6}
    else:  # evaluation keeps the last, partial batch either way
        _assert_same_batches(list(whole), list(by_record))
    with pytest.raises(ValueError, match="whole number of batches"):
        load("raise").set_state({"next_index": 7})


def test_process_batches_side_by_side_are_the_one_process_batch(micro):
    """Two processes' batches, side by side, are one process's batch (records, order and
    augmentation), and the data position moves between one and two processes."""
    load = lambda shard, batch: make_loader(micro.data_config(), "train", train=True,  # noqa: E731
                                            batch_size=batch, seed=5, shard=shard)
    one, halves = load((0, 1), 16), [load((i, 2), 8) for i in range(2)]
    for _ in range(3):
        whole, parts = next(one), [next(h) for h in halves]
        _assert_same_batches([whole], [{k: np.concatenate([p[k] for p in parts]) for k in whole}])
    states = [json.loads(json.dumps(h.get_state())) for h in halves]  # as a checkpoint keeps them
    resumed = load((0, 1), 16)
    resumed.set_state(resume_state(states, (0, 1), 16))
    expected = next(one)
    _assert_same_batches([next(resumed)], [expected])
    back = [load((i, 2), 8) for i in range(2)]
    for i, it in enumerate(back):
        it.set_state(resume_state([one.get_state()], (i, 2), 8))
    nxt = next(one)["index"]
    np.testing.assert_array_equal(np.concatenate([next(it)["index"] for it in back]), nxt)
    with pytest.raises(ValueError, match="resume on 2 processes"):
        resume_state([{"next_index": 8}, {"next_index": 9}], (0, 1), 16)


# --- augmentation ---------------------------------------------------------------------------

def test_null_augmentation_is_the_identity(micro):
    record = _source(micro)[0]
    null = Augment(crop_scale=(1.0, 1.0), rotate_deg=0.0, brightness=0.0, contrast=0.0,
                   noise_std=0.0)
    size = record["image"].shape[0]
    out = ImageTransform(size, null)({"image": record["image"], "mask": record["mask"]},
                                     np.random.default_rng(0))
    np.testing.assert_allclose(out["image"], _normalised(record["image"]), atol=1e-4)
    np.testing.assert_array_equal(out["mask"], record["mask"])


def test_augmentation_is_random_but_seeded(micro):
    record = {"image": _source(micro)[0]["image"]}
    transform = ImageTransform(record["image"].shape[0], Augment())
    a = transform(dict(record), np.random.default_rng(7))["image"]
    b = transform(dict(record), np.random.default_rng(7))["image"]
    c = transform(dict(record), np.random.default_rng(8))["image"]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01
    assert np.abs(a - _normalised(record["image"])).mean() > 0.01


def test_resize_of_block_image_keeps_block_values():
    blocks = np.kron(np.arange(64, dtype=np.uint8).reshape(8, 8) * 3, np.ones((2, 2), np.uint8))
    out = preprocess_images(blocks[None], 8)
    expected = _normalised(np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)
    np.testing.assert_allclose(out[0], expected, atol=1e-5)


def test_train_augments_and_eval_does_not(micro):
    config = micro.data_config()
    positions = [0, 1, 2, 3]
    train = next(make_loader(config, "train", train=True, batch_size=4, seed=0, indices=positions))
    source = _source(micro)
    stored = np.stack([_normalised(source[int(i)]["image"]) for i in train["index"]])
    assert np.abs(train["image"] - stored).mean() > 0.01
    off = micro.data_config(augment=dict(enabled=False))
    plain = next(make_loader(off, "train", train=True, batch_size=4, seed=0, indices=positions))
    stored = np.stack([_normalised(source[int(i)]["image"]) for i in plain["index"]])
    np.testing.assert_allclose(plain["image"], stored, atol=1e-5)


REPORT = ("FINDINGS: Moderate left effusion. Heart size is normal. No pneumothorax. "
          "IMPRESSION: Moderate left pleural effusion.")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in text.replace("FINDINGS:", "").replace("IMPRESSION:", "").split(".")
            if s.strip()]


def test_text_augment_keeps_only_sentences_of_the_report_and_never_none():
    allowed = set(_sentences(REPORT))
    outs = [TextAugment(sentence_keep=0.3)(REPORT, np.random.default_rng(seed)) for seed in range(200)]
    for out in outs:
        assert "FINDINGS" not in out and "IMPRESSION" not in out
        got = _sentences(out)
        assert got and set(got) <= allowed and len(got) == len(set(got)), out
    assert len(set(outs)) > 20  # sentence subsets, orders and sections really vary
    impression_only = [o for o in outs if _sentences(o) == ["Moderate left pleural effusion"]]
    assert 10 < len(impression_only) < 150


def test_text_augment_without_drop_or_section_choice_only_reorders():
    keep_all = TextAugment(section_prob=0.0, sentence_keep=1.0, shuffle=True)
    out = keep_all(REPORT, np.random.default_rng(3))
    assert sorted(_sentences(out)) == sorted(_sentences(REPORT))
    fixed = TextAugment(section_prob=0.0, sentence_keep=1.0, shuffle=False)
    assert _sentences(fixed(REPORT, np.random.default_rng(3))) == _sentences(REPORT)
    assert keep_all("No acute disease", np.random.default_rng(0)) == "No acute disease."
    never = TextAugment(prob=0.0, sentence_keep=0.1)
    assert all(never(REPORT, np.random.default_rng(seed)) == REPORT for seed in range(20))


def test_train_batches_carry_augmented_reports_seeded_and_eval_the_stored_ones(micro):
    config = micro.data_config(text_augment=dict(enabled=True, sentence_keep=0.5))
    load = lambda c, train, seed: next(make_loader(  # noqa: E731
        c, "train", train=train, batch_size=8, seed=seed, indices=range(8)))
    a, b = load(config, True, 0), load(config, True, 0)
    np.testing.assert_array_equal(a["tokens"], b["tokens"])
    plain = load(micro.data_config(), True, 0)
    np.testing.assert_array_equal(a["index"], plain["index"])
    assert (a["text_mask"].sum(1) < plain["text_mask"].sum(1)).mean() > 0.5
    evaluation = load(config, False, 0)
    stored = load(micro.data_config(augment=dict(enabled=False)), False, 0)
    np.testing.assert_array_equal(evaluation["tokens"], stored["tokens"])


# --- subsets --------------------------------------------------------------------------------

def test_exported_subset_is_read_through_config_subset(micro, tmp_path, write_tfds_dataset):
    raw = micro.builder.as_data_source("train", deserialize_method=RAW)
    picked = [5, 9, 20]
    out = write_tfds_dataset(str(tmp_path / "subset"), micro.builder.info.features, "train",
                             [raw[i] for i in picked])
    batch = next(make_loader(micro.data_config(subset=out), "train", train=False, batch_size=8,
                             seed=0))
    np.testing.assert_array_equal(batch["index"], [0, 1, 2])
    source = _source(micro)
    for row, position in enumerate(picked):
        np.testing.assert_allclose(batch["image"][row], _normalised(source[position]["image"]),
                                   atol=1e-5)


# --- reports: empty ones left out of CLIP streams, no tokenizer where there is no text --------

BLANK = (1, 5, 6, 20, 33)


@pytest.fixture
def blanked_subset(micro, tmp_path, write_tfds_dataset) -> str:
    """40 micro train records as an exported subset whose records BLANK have an empty report."""
    features, source = micro.builder.info.features, _source(micro)
    records = [features.serialize_example(
        dict(source[i], report="") if i in BLANK else dict(source[i])) for i in range(40)]
    return write_tfds_dataset(str(tmp_path / "blanked"), features, "train", records)


def test_clip_stream_leaves_out_empty_reports_at_their_pool_positions(micro, blanked_subset,
                                                                       caplog):
    config = micro.data_config(subset=blanked_subset)
    kept = sorted(set(range(40)) - set(BLANK))
    np.testing.assert_array_equal(mixture.report_positions(mixture.parts(config, "train")), kept)
    with caplog.at_level(logging.WARNING):
        seen = _indices(make_loader(config, "train", train=True, batch_size=5, seed=0,
                                    num_epochs=1, skip_empty_reports=True, shard=(0, 1)))
        make_loader(config, "train", train=True, batch_size=5, seed=1,
                    skip_empty_reports=True, shard=(0, 1))
    assert sorted(seen) == kept  # an epoch of the others; positions are the pool's
    counted = [r.getMessage() for r in caplog.records if "empty report" in r.getMessage()]
    assert len(counted) == 1 and "5 of 40 records" in counted[0]
    everything = _indices(make_loader(config, "train", train=False, batch_size=8, seed=0))
    assert everything == list(range(40))  # other readers (supervised, the bench) keep them


def test_empty_reports_are_found_once_and_read_back(micro, blanked_subset):
    config = micro.data_config(subset=blanked_subset)
    cache = os.path.join(blanked_subset, mixture.EMPTY_REPORTS.format(split="train"))
    mixture.report_positions(mixture.parts(config, "train"))
    with open(cache) as f:
        assert json.load(f) == {"records": 40, "empty": list(BLANK)}
    for written, expected in (({"records": 40, "empty": [2]}, [2]),  # read back, not re-read
                              ({"records": 39, "empty": [2]}, list(BLANK))):  # stale: found again
        with open(cache, "w") as f:
            json.dump(written, f)
        mixture._empty_reports.cache_clear()
        kept = mixture.report_positions(mixture.parts(config, "train"))
        assert sorted(set(range(40)) - set(kept.tolist())) == expected


def test_leaving_out_empty_reports_changes_nothing_without_them(micro):
    """The synthetic world has a report on every record: its CLIP batches stay bit-identical."""
    config = micro.data_config()
    parts = mixture.parts(config, "train")
    np.testing.assert_array_equal(mixture.report_positions(parts), np.arange(parts[0].size))
    for indices in (None, [7, 3, 200, 41, 9, 100, 12, 5]):
        batches = [_take(make_loader(config, "train", train=True, batch_size=4, seed=2,
                                     indices=indices, shard=(0, 1), skip_empty_reports=skip), 6)
                   for skip in (False, True)]
        _assert_same_batches(*batches)


@pytest.fixture(scope="module")
def chexpert_dir(tmp_path_factory) -> str:
    """A data dir holding a label-only CheXpert build (no reports, no tokenizer)."""
    from tests import label_only_data as lo

    data_dir = str(tmp_path_factory.mktemp("chexpert_data"))
    lo.build(lo.CHEXPERT, lo.write_chexpert(str(tmp_path_factory.mktemp("chexpert"))), data_dir)
    return data_dir


def test_a_label_only_dataset_loads_without_a_tokenizer(chexpert_dir):
    """No tokenizer is trained into the dataset's folder (there is no text to train it on):
    `tokenize=False` keeps the empty report strings, else every token row is padding."""
    from tests.label_only_data import CHEXPERT, tokenizer_files

    config = ml_collections.ConfigDict(dict(name=CHEXPERT, data_dir=chexpert_dir, image_size=32,
                                            text_len=16, vocab_size=4000, on_error="raise"))
    texts = next(make_loader(config, "test", train=False, batch_size=4, seed=0, shard=(0, 1),
                             tokenize=False))
    assert texts["report"].tolist() == [""] * 4 and "tokens" not in texts
    padded = next(make_loader(config, "train", train=True, batch_size=4, seed=0, shard=(0, 1)))
    assert padded["tokens"].shape == (4, 16) and not padded["tokens"].any()
    assert not padded["text_mask"].any()
    parts = mixture.parts(config, "train")
    assert mixture.load_tokenizer(config, parts) is None
    assert tokenizer_files(parts[0].builder) == []
    with pytest.raises(ValueError, match="'chexpert/frontal' has no report text .*chexpert_plus"):
        mixture.report_positions(parts)


# --- bad records ----------------------------------------------------------------------------

BAD = {3: "image", 7: "report", 12: "labels"}


@pytest.fixture
def corrupt_dataset(micro, tmp_path, write_tfds_dataset):
    """20 micro train records as a TFDS dataset whose records 3, 7 and 12 break the contract:
    an image of the wrong size, a report that is not UTF-8, labels of the wrong shape."""
    features = micro.builder.info.features
    source = _source(micro)
    size = features["image"].shape[0]

    def serialize(record: dict, **changed) -> bytes:
        specs = {k: changed.get(k, features[k]) for k in features.keys()}
        return tfds.features.FeaturesDict(specs).serialize_example(record)

    records, ids = [], {}
    for position in range(20):
        record = dict(source[position])
        kind = BAD.get(position)
        if kind == "image":
            record["image"] = record["image"][: size // 2, : size // 2]
            raw = serialize(record, image=tfds.features.Tensor(shape=(size // 2, size // 2),
                                                               dtype=np.uint8))
        elif kind == "report":
            record["report"] = b"\xff\xfe not text \xc3"
            raw = serialize(record)
        elif kind == "labels":
            record["labels"] = record["labels"][:13]
            raw = serialize(record, labels=tfds.features.Tensor(shape=(13,), dtype=np.int8))
        else:
            raw = serialize(record)
        records.append(raw)
        if kind:
            ids[position] = record["id"].decode()
    out = write_tfds_dataset(str(tmp_path / "corrupt"), features, "train", records)
    return out, ids


@pytest.mark.parametrize("position,problem", [(3, "image does not decode"),
                                              (7, "report is not text"),
                                              (12, "labels does not decode")])
def test_bad_record_error_names_dataset_split_id_and_file(corrupt_dataset, position, problem):
    path, ids = corrupt_dataset
    reader = RecordReader(path, "train")
    with pytest.raises(RecordError) as error:
        reader(position)
    message = str(error.value)
    shard = reader.file_of(position)
    assert shard.startswith(path) and os.path.exists(shard)
    for part in (problem, repr(reader.dataset), "'train'", repr(ids[position]), shard):
        assert part in message


def test_loader_raises_on_a_bad_record(micro, corrupt_dataset):
    path, ids = corrupt_dataset
    loader = make_loader(micro.data_config(subset=path), "train", train=False, batch_size=4,
                         seed=0)
    with pytest.raises(RecordError, match=ids[3]):
        list(loader)


def test_skip_counts_logs_and_lists_bad_records(micro, corrupt_dataset, tmp_path, caplog):
    path, ids = corrupt_dataset
    skip_log = str(tmp_path / "skipped.tsv")
    config = micro.data_config(subset=path, on_error="skip", skip_log=skip_log)
    with caplog.at_level(logging.WARNING):
        index = _indices(make_loader(config, "train", train=False, batch_size=4, seed=0))
    assert index == [i for i in range(20) if i not in BAD]
    assert sorted(read_skipped(skip_log)) == sorted(ids[p] for p in BAD)  # threads: any order
    warnings = [r.getMessage() for r in caplog.records if "skipping record" in r.getMessage()]
    assert len(warnings) == 3 and "(3 skipped so far" in warnings[-1]


def test_pool_fields_decode_only_their_keys_and_name_or_skip_bad_records(micro, corrupt_dataset):
    """What a whole-pool report reads: record 3's broken image is never decoded, so only the
    bad report (7) and labels (12) stop it; skipped, their values are None."""
    path, ids = corrupt_dataset
    keys = ("id", "report", "labels", "no_such_field")
    parts = mixture.parts(micro.data_config(subset=path), "train")
    with pytest.raises(RecordError, match=ids[7]):
        mixture.pool_fields(parts, keys)
    parts = mixture.parts(micro.data_config(subset=path, on_error="skip"), "train")
    fields = mixture.pool_fields(parts, keys, on_error="skip")
    assert sorted(fields) == ["id", "labels", "report"]
    assert [i for i, v in enumerate(fields["id"]) if v is None] == [7, 12]
    assert fields["id"][3] == ids[3] and isinstance(fields["report"][3], str)
    assert sorted(read_skipped(os.path.join(path, "skipped_train.tsv"))) == sorted([ids[7], ids[12]])


def test_skip_list_defaults_to_the_dataset_folder(micro, corrupt_dataset):
    path, ids = corrupt_dataset
    config = micro.data_config(subset=path, on_error="skip")
    _indices(make_loader(config, "train", train=True, batch_size=4, seed=0, num_epochs=1))
    assert sorted(read_skipped(os.path.join(path, "skipped_train.tsv"))) == sorted(ids.values())


def test_damaged_file_region_is_named_or_skipped(micro, tmp_path):
    copy = str(tmp_path / "damaged")
    shutil.copytree(micro.builder.data_dir, copy)
    reader = RecordReader(copy, "validation")
    shard = reader.file_of(0)
    data = bytearray(open(shard, "rb").read())
    data[len(data) // 2: len(data) // 2 + 200] = bytes(200)  # zero a stretch mid-file
    open(shard, "wb").write(data)
    damaged = []
    for position in range(len(reader)):
        try:
            reader(position)
        except RecordError as error:
            assert "cannot be read" in str(error) and shard in str(error)
            damaged.append(position)
    assert 1 <= len(damaged) < len(reader)
    skipping = RecordReader(copy, "validation", on_error="skip",
                            skip_log=SkipLog(str(tmp_path / "skipped.tsv")))
    kept = [p for p in range(len(reader)) if skipping(p) is not None]
    assert kept == [p for p in range(len(reader)) if p not in damaged]


@pytest.mark.parametrize("change,problem", [
    (dict(report=123), "report is not text"),
    (dict(labels=np.zeros(14, np.float32)), "labels must be 14 integers"),
    (dict(labels=np.full(14, 3, np.int8)), "labels must lie in"),
    (dict(image=np.zeros((4, 5), np.uint8)), "image must be uint8 S x S"),
    (dict(mask=np.full((4, 4, 2), 2, np.uint8)), "mask values must be 0 or 1"),
    (dict(image=None), "missing fields ['image']"),
])
def test_validate_names_the_problem(change, problem):
    record = dict(id=b"r-1", image=np.zeros((4, 4), np.uint8), report=b"Clear lungs.",
                  labels=np.zeros(14, np.int8))
    record.update(change)
    record = {k: v for k, v in record.items() if v is not None}
    with pytest.raises(RecordError) as error:
        validate(record, dataset="d/c", split="s", file="/x/f.array_record")
    message = str(error.value)
    assert problem in message
    assert all(p in message for p in ("'r-1'", "'d/c'", "'s'", "/x/f.array_record"))
    assert validate(dict(id=b"r-1", image=np.zeros((4, 4), np.uint8), report=b"ok",
                         labels=np.zeros(14, np.int8)), dataset="d", split="s", file="f")[
        "report"] == "ok"


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_worker_batches_leave_no_shared_memory_behind(micro):
    """Batches from worker processes are the reader's own arrays: a process that ends holding
    some (as a training run ends holding its last) leaves no shared-memory segment behind."""
    script = textwrap.dedent(f"""
        import ml_collections
        from chexficient.data.pipeline import make_loader
        if __name__ == "__main__":
            config = ml_collections.ConfigDict({micro.data_config(worker_count=2).to_dict()!r})
            loader = make_loader(config, "train", train=True, batch_size=8, seed=0, shard=(0, 1))
            held = [next(loader) for _ in range(3)]
            loader.close()
        """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": REPO})
    assert done.returncode == 0, done.stderr
    assert "leaked" not in done.stderr, done.stderr
