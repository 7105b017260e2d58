"""The dataset record contract, checked on read: a bad record is named, or skipped and listed.

`RecordReader` turns a record position into a decoded, validated record dict; it opens its
TFDS data source lazily so that it pickles into grain worker processes.
"""

from __future__ import annotations

import bisect
import functools
import os
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from chexficient.findings import NUM_FINDINGS, POSITIVE, UNMENTIONED

REQUIRED = ("id", "image", "report", "labels")
TEXT_FIELDS = ("id", "report", "view", "source", "patient_id", "duplicate_of", "quality")


class RecordError(ValueError):
    """A record breaks the contract; the message names dataset, split, record id and file."""

    def __init__(self, problem: str, *, dataset: str, split: str, record_id: str, file: str):
        super().__init__(f"bad record {record_id!r} in dataset {dataset!r}, split {split!r} "
                         f"(file {file}): {problem}")
        self.problem, self.record_id = problem, record_id


def validate(record: dict[str, Any], *, dataset: str, split: str, file: str,
             required: Sequence[str] = REQUIRED) -> dict[str, Any]:
    """Checks `record` against the contract; returns it with text fields as `str`.

    Raises RecordError for a missing `required` field, an image that is not uint8 S x S, a
    report that is not UTF-8 text, labels that are not 14 values in {1, 0, -1, -2}, or a bad
    mask. Fields absent from a partial read (not in `required`) are not checked.
    """
    record_id = _as_text(record.get("id")) or "<no id>"

    def fail(problem: str) -> RecordError:
        return RecordError(problem, dataset=dataset, split=split, record_id=record_id, file=file)

    missing = [k for k in required if k not in record]
    if missing:
        raise fail(f"missing fields {missing}")
    out = dict(record)
    for key in TEXT_FIELDS:
        if key in out:
            text = _as_text(out[key])
            if text is None:
                raise fail(f"{key} is not text: {_describe(out[key])}")
            out[key] = text
    if "image" in out:
        image = np.asarray(out["image"])
        if image.dtype != np.uint8 or image.ndim != 2 or image.shape[0] != image.shape[1]:
            raise fail(f"image must be uint8 S x S, got {_describe(image)}")
    if "labels" in out:
        labels = np.asarray(out["labels"])
        if labels.shape != (NUM_FINDINGS,) or not np.issubdtype(labels.dtype, np.integer):
            raise fail(f"labels must be {NUM_FINDINGS} integers, got {_describe(labels)}")
        if labels.min() < UNMENTIONED or labels.max() > POSITIVE:
            raise fail(f"labels must lie in [{UNMENTIONED}, {POSITIVE}], got {labels.tolist()}")
    if "mask" in out:
        mask = np.asarray(out["mask"])
        size = np.asarray(out["image"]).shape if "image" in out else mask.shape[:2]
        if mask.dtype != np.uint8 or mask.shape[:2] != size or mask.ndim not in (2, 3):
            raise fail(f"mask must be uint8 {size} (x C), got {_describe(mask)}")
        if mask.max(initial=0) > 1:
            raise fail("mask values must be 0 or 1")
    return out


class SkipLog:
    """Counts skipped records, logs each once per process and appends `id<TAB>position<TAB>why`."""

    def __init__(self, path: str):
        self.path = path
        self.count = 0
        self._seen: set[int] = set()

    def add(self, position: int, error: RecordError) -> None:
        if position in self._seen:
            return
        self._seen.add(position)
        self.count += 1
        logging.warning("skipping record (%d skipped so far by this process, listed in %s): %s",
                        self.count, self.path, error)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        line = f"{error.record_id}\t{position}\t{error.problem}".replace("\n", " ") + "\n"
        with open(self.path, "a") as f:  # one short O_APPEND write: safe across workers
            f.write(line)

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])


def default_skip_log(builder_dir: str, split: str) -> str:
    """Where skipped records are listed unless a run says otherwise: beside the dataset."""
    return os.path.join(builder_dir, f"skipped_{split}.tsv")


def read_skipped(path: str) -> list[str]:
    """Ids listed in a skip file, first occurrence first (workers may list an id twice)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        ids = [line.split("\t", 1)[0] for line in f if line.strip()]
    return list(dict.fromkeys(ids))


class RecordReader:
    """Reads record `position` of a split from a prepared TFDS dataset directory.

    Decodes only `keys` (the rest of the stored features are never touched), validates, and
    with on_error='skip' returns None for a bad record after listing it in `skip_log`.
    """

    def __init__(self, builder_dir: str, split: str, *, keys: tuple[str, ...] = REQUIRED,
                 on_error: str = "raise", skip_log: SkipLog | None = None):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if on_error == "skip" and skip_log is None:
            raise ValueError("on_error='skip' needs a skip_log")
        self.builder_dir, self.split, self.keys = builder_dir, split, tuple(keys)
        self.on_error, self.skip_log = on_error, skip_log

    def __getstate__(self) -> dict:
        """Only the constructor's arguments: each process opens its own files."""
        return {k: v for k, v in self.__dict__.items()
                if k in ("builder_dir", "split", "keys", "on_error", "skip_log")}

    @functools.cached_property
    def _builder(self) -> tfds.core.DatasetBuilder:
        return tfds.builder_from_directory(self.builder_dir)

    @functools.cached_property
    def dataset(self) -> str:
        info = self._builder.info
        return f"{info.name}/{info.config_name}" if info.config_name else info.name

    @functools.cached_property
    def _source(self):
        return self._builder.as_data_source(
            self.split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)

    @functools.cached_property
    def _features(self) -> dict[str, tfds.features.FeaturesDict]:
        """One FeaturesDict for all `keys` (the fast path) and one per key (to name a failure)."""
        stored = self._builder.info.features
        unknown = [k for k in self.keys if k not in stored]
        if unknown:
            raise ValueError(f"dataset {self.dataset!r} has no features {unknown}; "
                             f"it has {sorted(stored.keys())}")
        single = {k: tfds.features.FeaturesDict({k: stored[k]}) for k in self.keys}
        return {"": tfds.features.FeaturesDict({k: stored[k] for k in self.keys}), **single}

    @functools.cached_property
    def _file_starts(self) -> tuple[list[int], list[str]]:
        instructions = self._builder.info.splits[self.split].file_instructions
        starts = np.cumsum([0] + [fi.take for fi in instructions[:-1]]).tolist()
        return starts, [fi.filename for fi in instructions]

    def __len__(self) -> int:
        return len(self._source)

    @property
    def image_size(self) -> int:
        """The side S of the stored S x S images."""
        return self._builder.info.features["image"].shape[0]

    def file_of(self, position: int) -> str:
        """The ArrayRecord file that holds record `position` of the split."""
        starts, files = self._file_starts
        return files[bisect.bisect_right(starts, position) - 1]

    def __call__(self, position: int) -> dict[str, Any] | None:
        position = int(position)
        try:
            record = self._decode(self._read(position), position)
            return validate(record, dataset=self.dataset, split=self.split,
                            file=self.file_of(position), required=self.keys)
        except RecordError as error:
            if self.on_error == "raise":
                raise
            self.skip_log.add(position, error)
            return None

    def _read(self, position: int) -> bytes:
        try:
            return self._source[position]
        except IndexError:
            raise
        except Exception as e:  # noqa: BLE001  (a damaged file region: this record's fault)
            raise RecordError(f"cannot be read ({type(e).__name__}: {e})", dataset=self.dataset,
                              split=self.split, record_id=f"<record at position {position}>",
                              file=self.file_of(position)) from e

    def _decode(self, raw: bytes, position: int) -> dict[str, Any]:
        try:
            return dict(self._features[""].deserialize_example_np(raw))
        except Exception:  # noqa: BLE001  (any parse failure is this record's fault)
            raise self._decode_error(raw, position) from None

    def _decode_error(self, raw: bytes, position: int) -> RecordError:
        """Decodes field by field to name the ones that fail."""
        record_id, problems = f"<record at position {position}>", []
        for key in self.keys:
            try:
                value = self._features[key].deserialize_example_np(raw)[key]
                if key == "id":
                    record_id = _as_text(value) or record_id
            except Exception as e:  # noqa: BLE001
                problems.append(f"{key} does not decode ({type(e).__name__}: {e})")
        return RecordError("; ".join(problems) or "the record does not parse", dataset=self.dataset,
                          split=self.split, record_id=record_id, file=self.file_of(position))


def _as_text(value: Any) -> str | None:
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value.item()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {value.shape}"
    return f"{type(value).__name__} {str(value)[:40]!r}"
