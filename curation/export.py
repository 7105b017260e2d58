"""`chexficient export --workdir=DIR --out=OUT`: write the subset a curated run selected.

OUT holds a manifest (id, source dataset and version, score, cluster, step first kept) as
CSV.gz and Parquet, a materialised TFDS dataset of just those records (ArrayRecord, the
original serialized bytes copied unchanged) that `tfds.builder_from_directory(OUT)` and the
pipeline load directly (`--config.data.subset=OUT`; the TFDS files lie at OUT's top level),
and `subset.json` with counts, checksums and provenance. OUT appears whole or not at all, and
the same run exports to identical bytes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import shutil

import numpy as np

from chexficient.data.mixture import SUBSET_SPLIT

MANIFEST_COLUMNS = ("id", "source", "dataset", "version", "position", "score", "cluster",
                    "first_kept_step")


class ExportError(RuntimeError):
    """The run cannot be exported (no ledger, no config) or OUT exists without --force."""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_run(workdir: str) -> tuple[dict, dict[str, np.ndarray]]:
    """The run's resolved config and ledger, or an ExportError saying which is missing and why."""
    config_path = os.path.join(workdir, "config.json")
    ledger_path = os.path.join(workdir, "ledger.npz")
    if not os.path.exists(config_path):
        raise ExportError(f"{workdir!r} is not a run directory: {config_path} is missing")
    if not os.path.exists(ledger_path):
        raise ExportError(
            f"run {workdir!r} has no ledger ({ledger_path} is missing): it was trained without "
            "a curator (schedule 'full') or stopped before its first curation phase ended, so "
            "there is no selected subset to export")
    with open(config_path) as f:
        config = json.load(f)
    with np.load(ledger_path) as ledger:
        return config, {k: ledger[k] for k in ledger.files}


def _write_manifest(rows: list[dict], out_dir: str) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    csv_path = os.path.join(out_dir, "manifest.csv.gz")
    with open(csv_path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(text.getvalue().encode())
    table = pa.table({c: [r[c] for r in rows] for c in MANIFEST_COLUMNS})
    parquet_path = os.path.join(out_dir, "manifest.parquet")
    pq.write_table(table, parquet_path)
    return [csv_path, parquet_path]


def _write_dataset(builder, source, positions: np.ndarray, out_dir: str) -> list[str]:
    """Copies the selected serialized records into one ArrayRecord shard plus TFDS metadata."""
    import tensorflow_datasets as tfds
    from array_record.python.array_record_module import ArrayRecordWriter

    data_dir = out_dir
    name = f"{builder.name}_subset"
    shard = os.path.join(data_dir, f"{name}-{SUBSET_SPLIT}.array_record-00000-of-00001")
    writer = ArrayRecordWriter(shard, "group_size:1")
    raw = source.data_source
    for position in positions:
        writer.write(raw[int(position)])
    writer.close()
    split = tfds.core.SplitInfo(name=SUBSET_SPLIT, shard_lengths=[int(positions.size)],
                                num_bytes=os.path.getsize(shard))
    tfds.folder_dataset.write_metadata(
        data_dir=data_dir, features=builder.info.features, split_infos=[split],
        version=str(builder.info.version), check_data=False,
        description=f"Curated subset of {builder.info.full_name}.")
    return sorted(os.path.join(data_dir, f) for f in os.listdir(data_dir)
                  if not f.startswith("manifest."))


def load_subset(path: str, split: str = SUBSET_SPLIT):
    """The exported records as a random-access source, like `tfds.data_source` of the original
    (which cannot open them: it finds datasets by name, not by folder)."""
    import tensorflow_datasets as tfds

    return tfds.builder_from_directory(path).as_data_source(split=split)


def export_subset(workdir: str, out: str, *, force: bool = False) -> dict:
    """Writes OUT (see module doc) atomically; returns the contents of subset.json."""
    import ml_collections

    from chexficient.checkpoint import find_checkpoint_dir
    from chexficient.data import mixture
    from chexficient.data.records import RecordReader

    config, ledger = read_run(workdir)
    if os.path.exists(out) and not force:
        raise ExportError(f"{out!r} exists; replace it with --force (force=True from Python)")
    data = config["data"]
    parts = mixture.parts(ml_collections.ConfigDict(data), data.get("train_split", "train"))
    if len(parts) > 1:
        raise ExportError(f"run {workdir!r} pretrained on a mixture of {len(parts)} datasets; "
                          "an export holds the records of one dataset")
    part = parts[0]  # the records the run's pool positions index (an exported subset's too)
    builder = part.builder
    source = part.data_source()
    positions = np.flatnonzero(ledger["first_kept"] >= 0)
    if positions.size == 0:
        raise ExportError(f"run {workdir!r} kept no record: its ledger is empty")
    if ledger["first_kept"].size != part.size:
        raise ExportError(f"run {workdir!r} has a ledger of {ledger['first_kept'].size} records "
                          f"but its pool ({part.records_dir}) holds {part.size}")

    # Ids (and sources) decoded alone: the records themselves are copied as stored, undecoded.
    keys = ("id", "source") if "source" in builder.info.features else ("id",)
    reader = RecordReader(part.records_dir, part.records_split, keys=keys)
    rows = []
    for position in positions:
        record = reader(position)
        rows.append(dict(
            id=record["id"], source=record.get("source", data["name"]),
            dataset=builder.info.full_name, version=str(builder.info.version),
            position=int(position), score=float(ledger["score"][position]),
            cluster=int(ledger["cluster"][position]),
            first_kept_step=int(ledger["first_kept"][position])))

    tmp = f"{out.rstrip('/')}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        files = _write_manifest(rows, tmp) + _write_dataset(builder, source, positions, tmp)
        ckpt_dir = find_checkpoint_dir(workdir)
        steps = sorted(int(n) for n in os.listdir(ckpt_dir) if n.isdigit())
        info = dict(
            count=int(positions.size), pool_size=int(ledger["first_kept"].size),
            kept_fraction=float(positions.size / ledger["first_kept"].size),
            dataset=builder.info.full_name, checkpoint_step=steps[-1] if steps else None,
            workdir=os.path.abspath(workdir), config=config,
            checksums={os.path.relpath(f, tmp): _sha256(f) for f in files})
        with open(os.path.join(tmp, "subset.json"), "w") as f:
            json.dump(info, f, indent=2, sort_keys=True)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info
