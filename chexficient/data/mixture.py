"""Pretraining on several datasets at once: one pool of records, weighted draws, a source per row.

`config.data.mixture = (("chexpert", 0.5), ("mimic_cxr", 0.5))` (or the string
"chexpert:0.5,mimic_cxr:0.5") names the parts and their sampling weights. The pool is the
parts' splits laid end to end in mixture order, so a record's pool position is
`offset of its part + its position in the part`: that position is the batch `index` (the
ledger key, as for a single dataset) and the part's number in the mixture is the batch
`source`. Without a mixture the pool is the one dataset `config.data.name`.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import json
import math
import os
from typing import Any, Sequence

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from chexficient.data import registry
from chexficient.io import write_json_atomic
from chexficient.data.records import RecordReader, SkipLog, default_skip_log
from chexficient.data.tokenizer import Tokenizer
from chexficient.data.wordpiece import WordPieceTokenizer


SUBSET_SPLIT = "train"
"""The one split of an exported subset (`chexficient export`), read as the training split."""


@dataclasses.dataclass(frozen=True)
class Part:
    """One dataset of the pool: its name, sampling weight, builder and place in the pool, and
    where its records are read from (`records_dir`, `records_split`): the builder's own
    split, or for the training split of a run on an exported subset (`config.data.subset`)
    that subset's."""

    name: str
    weight: float
    builder: tfds.core.DatasetBuilder
    offset: int
    size: int
    records_dir: str
    records_split: str

    def data_source(self):
        """Random access to the part's decoded records (`tfds.data_source` of where they are)."""
        return tfds.builder_from_directory(self.records_dir).as_data_source(self.records_split)


def parse(mixture: Any) -> list[tuple[str, float]]:
    """(name, weight) pairs from a sequence of pairs or a "name:weight,name:weight" string."""
    if isinstance(mixture, str):
        pairs = []
        for item in filter(None, (s.strip() for s in mixture.split(","))):
            name, sep, weight = item.rpartition(":")
            if not sep:
                raise ValueError(f"mixture item {item!r} must be NAME:WEIGHT")
            pairs.append((name, weight))
    else:
        pairs = [tuple(pair) for pair in mixture]
    out = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"mixture item {pair!r} must be a (name, weight) pair")
        name = str(pair[0])
        try:
            weight = float(pair[1])
        except (TypeError, ValueError):
            raise ValueError(f"mixture weight of {name!r} must be a number, got {pair[1]!r}") from None
        if not 0 < weight < math.inf:
            raise ValueError(f"mixture weight of {name!r} must be > 0 and finite, got {weight}")
        out.append((name, weight))
    names = [name for name, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"mixture names a dataset twice: {names}")
    return out


def is_mixture(config: ml_collections.ConfigDict) -> bool:
    """Whether `config` (the config.data section) names a mixture."""
    return bool(config.get("mixture"))


def parts(config: ml_collections.ConfigDict, split: str, data_dir: str | None = None
          ) -> list[Part]:
    """The pool's parts for `split`, in mixture order, each with its offset and size; datasets
    live in `data_dir` when given, else config.data_dir (resolved as by the registry)."""
    data_dir = data_dir or config.get("data_dir") or None
    pairs = parse(config.mixture) if is_mixture(config) else [(config.name, 1.0)]
    if len(pairs) > 1 and config.get("subset"):
        raise ValueError("config.data.subset reads one exported dataset; it cannot be combined "
                         "with a mixture")
    subset = config.get("subset") or ""
    out, offset = [], 0
    for name, weight in pairs:
        builder = registry.prepared_builder(name, data_dir)
        if subset and split == config.get("train_split", "train"):
            _check_subset_source(subset, name, builder)
            size = _subset_size(subset)
            records_dir, records_split = subset, SUBSET_SPLIT
        elif split in builder.info.splits:
            size = builder.info.splits[split].num_examples
            records_dir, records_split = builder.data_dir, split
        else:
            raise ValueError(f"dataset {name!r} of the mixture has no split {split!r}; it has "
                             f"{sorted(builder.info.splits)}")
        out.append(Part(name, weight, builder, offset, size, records_dir, records_split))
        offset += size
    return out


def _check_subset_source(path: str, name: str, builder: tfds.core.DatasetBuilder) -> None:
    """Refuses an export of another dataset than `name`: its records would train under this
    dataset's tokenizer, evaluation split and config without a word (an export's subset.json
    names its source; a TFDS folder without one is taken as it is)."""
    try:
        with open(os.path.join(path, "subset.json")) as f:
            info = json.load(f)
    except FileNotFoundError:
        return
    source = info.get("dataset")
    if source and source != builder.info.full_name:
        run_name = info.get("config", {}).get("data", {}).get("name") or source
        raise ValueError(
            f"config.data.subset={path!r} holds records of {source}, but config.data.name is "
            f"{name!r} ({builder.info.full_name}), whose tokenizer and evaluation splits the run "
            f"would use: set --config.data.name={run_name} (or dataset={run_name} after the "
            "preset)")


def _subset_size(path: str) -> int:
    """Records of the exported subset at `path` (its one split), or an error saying what it lacks."""
    try:
        splits = tfds.builder_from_directory(path).info.splits
    except Exception as e:  # noqa: BLE001  (not a dataset directory: say which and why)
        raise ValueError(f"config.data.subset={path!r} is not an exported subset "
                         f"(`chexficient export`): {type(e).__name__}: {e}") from e
    if SUBSET_SPLIT not in splits:
        raise ValueError(f"config.data.subset={path!r} has no split {SUBSET_SPLIT!r} (it has "
                         f"{sorted(splits)}): not an export of `chexficient export`")
    return splits[SUBSET_SPLIT].num_examples


def stored_image_size(config: ml_collections.ConfigDict) -> int:
    """The side of the images the pool's first part stores (from its config; needs no data)."""
    name = parse(config.mixture)[0][0] if is_mixture(config) else config.name
    return registry.stored_image_size(name, config.get("data_dir") or None)


def pool_size(config: ml_collections.ConfigDict, split: str) -> int:
    """Records in the pool: the sum over the parts."""
    return sum(part.size for part in parts(config, split))


def locate(parts_: Sequence[Part], index: int) -> tuple[int, int]:
    """Pool position -> (part number, position within that part)."""
    starts = [part.offset for part in parts_]
    k = bisect.bisect_right(starts, int(index)) - 1
    if k < 0 or index >= parts_[k].offset + parts_[k].size:
        raise IndexError(f"pool position {index} outside [0, {sum(p.size for p in parts_)})")
    return k, int(index) - parts_[k].offset


def source_names(parts_: Sequence[Part]) -> np.ndarray:
    """The part name of every pool position (what the audit reports per source)."""
    return np.repeat(np.array([p.name for p in parts_], dtype=object), [p.size for p in parts_])


def pool_fields(parts_: Sequence[Part], keys: Sequence[str], *, on_error: str = "raise"
                ) -> dict[str, list]:
    """Every pool record's values of those `keys` that all parts store (the others left out),
    in pool order, decoding nothing else: a report over the whole pool reads its labels and
    reports without decoding one image. A record that cannot be read raises a RecordError
    naming it and its file; with on_error='skip' it is listed in its part's skip log and its
    values are None."""
    present = tuple(k for k in keys if all(k in p.builder.info.features for p in parts_))
    out: dict[str, list] = {k: [] for k in present}
    if not present:
        return out
    for part in parts_:
        log = (SkipLog(default_skip_log(part.records_dir, part.records_split))
               if on_error == "skip" else None)
        reader = RecordReader(part.records_dir, part.records_split, keys=present,
                              on_error=on_error, skip_log=log)
        for position in range(part.size):
            record = reader(position)
            for k in present:
                out[k].append(None if record is None else record[k])
    return out


class PoolSource:
    """Random access to decoded records by pool position, across the parts' data sources."""

    def __init__(self, parts_: Sequence[Part]):
        self.parts = list(parts_)
        self._sources = [p.data_source() for p in self.parts]

    def __len__(self) -> int:
        return sum(p.size for p in self.parts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        k, position = locate(self.parts, index)
        return self._sources[k][position]

    def __iter__(self):
        for source in self._sources:
            yield from source


def tokenizer_path(config: ml_collections.ConfigDict, vocab_size: int) -> str:
    """Where a mixture's tokenizer lives: <data_dir>/mixtures/<part+part>/tokenizer_<V>.model."""
    key = "+".join(name.replace("/", "-") for name, _ in parse(config.mixture))
    return os.path.join(registry.resolve_data_dir(config.get("data_dir") or None), "mixtures",
                        key, f"tokenizer_{vocab_size}.model")


def load_tokenizer(config: ml_collections.ConfigDict, parts_: Sequence[Part]) -> Tokenizer | None:
    """The tokenizer of `config.tokenizer` (a pretrained BERT folder's WordPiece) when set,
    else the dataset's own; for a mixture one trained on all parts' train reports. None when
    there is none yet and no part's train split has report text (labels only): nothing to
    train one on."""
    if config.get("tokenizer"):
        return WordPieceTokenizer.from_folder(config.tokenizer)
    vocab_size = config.get("vocab_size", 4000)
    path = (registry.tokenizer_path(parts_[0].builder, vocab_size) if len(parts_) == 1
            else tokenizer_path(config, vocab_size))
    if not os.path.exists(path) and not any(_has_train_text(p.builder.data_dir) for p in parts_):
        return None
    if len(parts_) == 1:
        return registry.load_tokenizer(parts_[0].builder, vocab_size)
    if os.path.exists(path):
        return Tokenizer(path)
    reports = [r for p in parts_ for r in registry.train_reports(p.builder)]
    return Tokenizer.train(reports, path.removesuffix(".model"), vocab_size)


@functools.lru_cache(maxsize=None)
def _has_train_text(builder_dir: str) -> bool:
    """`registry.has_report_text` of the dataset at `builder_dir`, once a process."""
    return registry.has_report_text(tfds.builder_from_directory(builder_dir))


def report_positions(parts_: Sequence[Part], on_error: str = "raise") -> np.ndarray:
    """Pool positions of the records whose report has text: what CLIP pretraining draws from.

    Records with an empty report (a CheXpert-Plus study without findings or impression) keep
    their pool positions but are left out, counted and logged once a process; a part with no
    report text at all (CheXpert, RSNA, SIIM, VinDr) is an error naming it.
    """
    kept = []
    for part in parts_:
        empty = _empty_reports(part.name, part.records_dir, part.records_split, on_error)
        if empty.size == part.size and part.size:
            raise ValueError(
                f"dataset {part.name!r} has no report text (labels and images only): CLIP "
                "pretraining pairs images with reports; leave it out of config.data.mixture "
                "(chexpert_plus has CheXpert's images with reports), or train on its labels "
                "with configs/supervised.py")
        kept.append(part.offset + np.setdiff1d(np.arange(part.size), empty))
    return np.concatenate(kept) if kept else np.zeros(0, np.int64)


EMPTY_REPORTS = "empty_reports_{split}.json"
"""Beside a dataset's records: the positions of its split's empty reports, found once (a pass
over every report) and read by every later launch. A rebuild replaces the folder, and it."""


@functools.lru_cache(maxsize=None)
def _empty_reports(name: str, records_dir: str, records_split: str, on_error: str) -> np.ndarray:
    """Positions in one part's split of its records with an empty report, reading only the
    reports, or their list from an earlier launch (an unreadable record, with
    on_error='skip', counts as not empty: reading it skips it anyway)."""
    log = (SkipLog(default_skip_log(records_dir, records_split)) if on_error == "skip" else None)
    reader = RecordReader(records_dir, records_split, keys=("report",), on_error=on_error,
                          skip_log=log)
    cache = os.path.join(records_dir, EMPTY_REPORTS.format(split=records_split))
    found = _read_empty_reports(cache, len(reader))
    if found is None:
        reports = (reader(position) for position in range(len(reader)))
        found = np.array([i for i, r in enumerate(reports)
                          if r is not None and not r["report"].strip()], np.int64)
        try:
            write_json_atomic(cache, {"records": len(reader), "empty": found.tolist()})
        except OSError:  # a read-only copy of the dataset: found again by the next launch
            pass
    if found.size:
        logging.warning("dataset %s, split %s: %d of %d records have an empty report; CLIP "
                        "pretraining leaves them out", name, records_split, found.size, len(reader))
    return found


def _read_empty_reports(path: str, records: int) -> np.ndarray | None:
    """The cached positions at `path`, or None if absent or written for another record count."""
    try:
        with open(path) as f:
            cached = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(cached, dict) or cached.get("records") != records:
        return None
    return np.asarray(cached.get("empty", []), np.int64)
