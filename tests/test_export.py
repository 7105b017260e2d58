"""Exporting a curated run's subset: manifest, materialised dataset, atomicity, determinism."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from chexficient.data import mixture, pipeline
from curation.export import ExportError, export_subset, load_subset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _files(root):
    return {os.path.relpath(os.path.join(r, f), root): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(root) for f in fs}


def test_export_reload_same_ids(curated_run, micro, tmp_path):
    workdir, _ = curated_run
    out = str(tmp_path / "subset")
    info = export_subset(workdir, out)
    ledger = np.load(os.path.join(workdir, "ledger.npz"))
    positions = np.flatnonzero(ledger["first_kept"] >= 0)
    assert info["count"] == positions.size > 0
    source = micro.builder.as_data_source("train")
    expected_ids = [source[int(p)]["id"].decode() for p in positions]

    subset = load_subset(out)
    assert [r["id"].decode() for r in subset] == expected_ids
    np.testing.assert_array_equal(subset[0]["image"], source[int(positions[0])]["image"])

    with gzip.open(os.path.join(out, "manifest.csv.gz"), "rt") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == expected_ids
    assert {int(r["first_kept_step"]) for r in rows} <= set(ledger["first_kept"][positions].tolist())
    assert pq.read_table(os.path.join(out, "manifest.parquet")).column("id").to_pylist() == expected_ids
    meta = json.load(open(os.path.join(out, "subset.json")))
    assert meta["checkpoint_step"] > 0 and meta["config"]["schedule"]["name"] == "chexficient"
    assert set(meta["checksums"]) >= {"manifest.csv.gz", "manifest.parquet"}

    # The pipeline reads the exported subset directly.
    config = micro.data_config(subset=out, augment=dict(enabled=False))
    batch = next(pipeline.make_loader(config, "train", train=False, batch_size=8, seed=0))
    assert batch["image"].shape[0] == 8


def test_export_is_deterministic_and_refuses_to_overwrite(curated_run, tmp_path):
    workdir, _ = curated_run
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    export_subset(workdir, a)
    export_subset(workdir, b)
    assert _files(a) == _files(b)  # byte for byte, manifest, shards, metadata and provenance
    with pytest.raises(ExportError, match="--force"):
        export_subset(workdir, a)
    export_subset(workdir, a, force=True)
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]


def test_export_of_an_uncurated_run_says_why(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ExportError, match="has no ledger"):
        export_subset(str(tmp_path), str(tmp_path / "out"))
    out = subprocess.run([sys.executable, "-m", "chexficient.cli", "export",
                          f"--workdir={tmp_path}", f"--out={tmp_path / 'out'}"],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0 and "has no ledger" in out.stderr


def test_an_export_of_another_dataset_is_refused_naming_both(curated_run, micro, tmp_path):
    """A run on a subset keeps config.data.name's tokenizer and evaluation splits, so an export
    of another dataset (as if exported from synthetic_cxr/tiny) is refused at launch, with the
    name to set; an export's subset.json says where its records came from."""
    workdir, _ = curated_run
    out = str(tmp_path / "subset")
    export_subset(workdir, out)
    path = os.path.join(out, "subset.json")
    info = json.load(open(path))
    info["dataset"], info["config"]["data"]["name"] = ("chexficient_synthetic_cxr/tiny/2.0.0",
                                                       "synthetic_cxr/tiny")
    with open(path, "w") as f:
        json.dump(info, f)
    with pytest.raises(ValueError, match=r"holds records of chexficient_synthetic_cxr/tiny/2\.0\.0"
                       r".*'synthetic_cxr/micro'.*--config\.data\.name=synthetic_cxr/tiny"):
        mixture.parts(micro.data_config(subset=out), "train")


def test_training_on_an_exported_subset_reads_the_subset(curated_run, micro, tmp_path):
    """A run with data.subset=OUT trains epochs of the exported records, not of the dataset
    they came from: its pool, ledger and curation report are the subset's."""
    from chexficient.checkpoint import CheckpointError
    from pretrain.train import train
    from tests.conftest import micro_config

    workdir, _ = curated_run
    out = str(tmp_path / "subset")
    count = export_subset(workdir, out)["count"]
    config = micro_config(micro, "chexficient", **{"data.subset": out, "batch_size": 16,
                                                   "total_epochs": 1})
    config.eval.every_steps = 1
    run = str(tmp_path / "run")
    summary = train(config, run)
    assert summary["pool_size"] == count < micro.builder.info.splits["train"].num_examples
    assert np.load(os.path.join(run, "ledger.npz"))["first_kept"].shape == (count,)
    report = json.load(open(os.path.join(run, "curation_report.json")))
    assert report["records"] == count
    config.data.subset = ""  # the same workdir on the whole pool: its ledger does not fit
    with pytest.raises(CheckpointError, match="set data.subset and data.mixture back"):
        train(config, run)
    # Its own export holds the subset's records that it kept (a subset of the subset).
    kept = np.flatnonzero(np.load(os.path.join(run, "ledger.npz"))["first_kept"] >= 0)
    export_subset(run, str(tmp_path / "again"))
    first = load_subset(out)
    assert [r["id"] for r in load_subset(str(tmp_path / "again"))] == [
        first[int(p)]["id"] for p in kept]
