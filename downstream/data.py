"""A dataset as the adapters see it: whole splits as numpy arrays, read once and cached.

Records come through the project's input pipeline (`pipeline.make_loader`: validation,
skips, resizing to the model's image size, no augmentation, reports as text: adapters encode
them with the run's own tokenizer, so a label-only dataset needs none); ids are read by
record position.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import ml_collections
import numpy as np
from absl import logging
from tqdm.auto import tqdm

from chexficient import findings
from chexficient.data import pipeline, registry
from chexficient.data.records import RecordReader


class MissingFieldsError(ValueError):
    """A dataset lacks the fields or splits an adapter needs; the message names both."""


OPTIONAL_SPLITS = ("test_shift",)
"""Eval splits only some datasets have (the synthetic world's other site): a dataset without
one is scored on the other eval splits, and the absence is logged."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split in memory, rows aligned: images [n,S,S,1] float32, labels [n,14] int8, ..."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    reports: list[str]
    ids: list[str]
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def targets(self, names: Sequence[str], uncertain_as: int) -> np.ndarray:
        """0/1 labels [n, len(names)] of the named findings (uncertain -> `uncertain_as`)."""
        columns = [findings.index(name) for name in names]  # unknown names list the valid ones
        return findings.binarize(self.labels, uncertain_as=uncertain_as)[:, columns]

    def take(self, rows: np.ndarray) -> Split:
        """The subset at `rows`, in that order."""
        rows = np.asarray(rows)
        return Split(self.name, self.images[rows], self.labels[rows],
                     [self.reports[i] for i in rows], [self.ids[i] for i in rows],
                     None if self.masks is None else self.masks[rows])


def finding_names(configured: Sequence[str]) -> list[str]:
    """The configured findings, else all but No Finding (the absence of the rest, not a sign)."""
    return list(configured) or [n for n in findings.FINDINGS if n != "No Finding"]


def warn_one_class(adapter: str, dataset: str, split: str, y: np.ndarray,
                   names: Sequence[str]) -> list[str]:
    """Logs, and returns, the findings whose 0/1 labels `y` [n, F] in an eval split hold one
    class only: they get no AUROC (null in results.json, `-` in results.md) and the means
    (mean, mean_rare, mean_top5) are taken over the other findings."""
    one_class = [name for name, column in zip(names, np.asarray(y).T) if np.unique(column).size < 2]
    if one_class:
        logging.warning("%s on %s:%s: no AUROC for %s (one class only among its %d images); "
                        "the means leave them out", adapter, dataset, split,
                        ", ".join(one_class), len(y))
    return one_class


def subset_rows(n: int, fraction: float, seed: int) -> np.ndarray:
    """A seeded random `fraction` of `n` rows (at least one), sorted: the 1/10/100% subsets."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must lie in (0, 1], got {fraction}")
    k = max(1, int(round(fraction * n)))
    return np.sort(np.random.default_rng(seed).permutation(n)[:k])


def label_draws(n: int, fraction: float, draws: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """(seed, rows) of each labelled subset a fraction is scored on: `draws` seeded subsets
    below 100%, the one full set at 100%.

    A 1% subset of a bench split is a handful of images, so a single draw measures the draw
    as much as the encoder; adapters report the mean and the spread over draws.
    """
    count = 1 if fraction >= 1 else max(1, draws)
    return [(seed + d, subset_rows(n, fraction, seed + d)) for d in range(count)]


def mean_over_draws(results: list[dict[str, float]]) -> dict[str, float]:
    """Per-key means over draws, plus, over two or more draws, `<key>/sd` (population standard
    deviation over draws, ddof 0) for the summary keys (those whose last part starts with `mean`)."""
    out = {k: float(np.mean([r[k] for r in results])) for k in results[0]}
    if len(results) < 2:
        return out
    out.update({f"{k}/sd": float(np.std([r[k] for r in results]))
                for k in results[0] if k.rsplit("/", 1)[-1].startswith("mean")})
    return out


class BenchData:
    """The splits of one dataset at one image size: `train` for fitting, `eval_splits` for scoring.

    `max_examples` caps each split (a seeded random subset, so a quick run still spans the
    split). Loaded splits are cached, so several adapters and checkpoints share one read.
    An eval split of OPTIONAL_SPLITS the dataset lacks is left out of `eval_splits`.
    """

    def __init__(self, data_config: ml_collections.ConfigDict, *, image_size: int,
                 train_split: str = "train", eval_splits: tuple[str, ...] = ("test",),
                 max_examples: dict[str, int] | None = None, batch_size: int = 64, seed: int = 0):
        self.config = ml_collections.ConfigDict(data_config.to_dict())
        self.config.image_size = image_size
        self.config.worker_count = 0
        self.name = self.config.name
        self.train_split, self.requested_splits = train_split, tuple(eval_splits)
        self.max_examples = dict(max_examples or {})
        self.batch_size, self.seed = batch_size, seed
        self._cache: dict[tuple[str, bool], Split] = {}

    @functools.cached_property
    def _builder(self):
        return registry.prepared_builder(self.name, self.config.get("data_dir") or None)

    @functools.cached_property
    def eval_splits(self) -> tuple[str, ...]:
        """The requested eval splits but those of OPTIONAL_SPLITS the dataset lacks (logged
        once); all of them if none would remain, so that `require` names what is missing."""
        present = self._builder.info.splits
        kept = tuple(s for s in self.requested_splits
                     if s in present or s not in OPTIONAL_SPLITS)
        left_out = [s for s in self.requested_splits if s not in kept]
        if kept and left_out:
            logging.warning("dataset %s has no split %s: scored on %s only", self.name,
                            " or ".join(map(repr, left_out)), ", ".join(map(repr, kept)))
        return kept or self.requested_splits

    @property
    def features(self) -> set[str]:
        """Names of the fields the dataset's records hold."""
        return set(self._builder.info.features.keys())

    def require(self, adapter: str, fields: tuple[str, ...] = (),
                splits: tuple[str, ...] = ()) -> None:
        """Raises MissingFieldsError, naming the adapter and the dataset, if anything is missing."""
        missing = [f for f in fields if f not in self.features]
        absent = [s for s in splits if s not in self._builder.info.splits]
        if missing or absent:
            what = ([f"fields {missing} (it has {sorted(self.features)})"] if missing else []) + (
                [f"splits {absent} (it has {sorted(self._builder.info.splits)})"] if absent else [])
            raise MissingFieldsError(f"adapter {adapter!r} needs {' and '.join(what)}, "
                                     f"which dataset {self.name!r} lacks")

    def identity(self) -> dict:
        """What the splits read depend on: the data config, the splits and their caps, the
        seed, and the build's version and split sizes (a dataset rebuilt otherwise differs)."""
        info = self._builder.info
        return dict(config=self.config.to_dict(), train_split=self.train_split,
                    eval_splits=self.requested_splits, max_examples=self.max_examples,
                    batch_size=self.batch_size, seed=self.seed, version=str(info.version),
                    sizes={name: split.num_examples for name, split in info.splits.items()})

    def mask_channels(self) -> int:
        """Channels of the dataset's masks (1 for a 2-D mask)."""
        shape = self._builder.info.features["mask"].shape
        return shape[2] if len(shape) == 3 else 1

    def split(self, name: str, *, with_mask: bool = False) -> Split:
        """The split `name` (capped by `max_examples`), with masks [n,S,S,C] when asked for."""
        for key in ((name, True), (name, with_mask)):
            if key in self._cache:
                return self._cache[key]
        self._cache[name, with_mask] = self._read(name, with_mask)
        return self._cache[name, with_mask]

    def _read(self, name: str, with_mask: bool) -> Split:
        if name not in self._builder.info.splits:
            raise MissingFieldsError(f"dataset {self.name!r} has no split {name!r}; it has "
                                     f"{sorted(self._builder.info.splits)}")
        n = self._builder.info.splits[name].num_examples
        cap = self.max_examples.get(name, self.max_examples.get("default", 0))
        indices = subset_rows(n, cap / n, self.seed) if 0 < cap < n else None
        loader = pipeline.make_loader(self.config, name, train=False, batch_size=self.batch_size,
                                      seed=self.seed, num_epochs=1, indices=indices,
                                      with_mask=with_mask, shard=(0, 1), tokenize=False)
        batches = list(tqdm(loader, desc=f"read {self.name}:{name}", unit="batch", leave=False,
                            disable=None))  # a passing bar: terminals only, not logs
        if not batches:
            raise MissingFieldsError(
                f"split {name!r} of dataset {self.name!r} has no readable records")
        cat = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        # Ids of the records the loader read, decoding nothing else (no image twice).
        reader = RecordReader(self._builder.data_dir, name, keys=("id",))
        return Split(name, cat["image"], cat["labels"].astype(np.int8),
                     [str(r) for r in cat["report"]], [reader(i)["id"] for i in cat["index"]],
                     cat["mask"] if with_mask else None)
