"""Training and evaluation batches: tfds.data_source -> grain, with no TensorFlow.

One global stream of records (shuffled per epoch, seeded, and augmented by each record's
place in it) of which each JAX process reads only its rows of every global batch; then
validate, batch, tokenize, prefetch. So a global batch is the same on any number of processes,
and the returned grain iterator's state survives a JSON round trip: a resumed run sees the same
next batch, on the same or (`resume_state`) another number of processes.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import re
from typing import Any, Sequence

import grain
import ml_collections
import numpy as np
from absl import flags

from chexficient.data import mixture
from chexficient.data.records import REQUIRED, RecordReader, SkipLog, default_skip_log
from chexficient.data.tokenizer import PAD_ID, Tokenizer

PIXEL_MEAN, PIXEL_STD = 0.45, 0.3
"""Images enter models as (x / 255 - PIXEL_MEAN) / PIXEL_STD: roughly zero mean, unit variance
for both the synthetic world (0.41 +- 0.31) and real radiographs (about 0.5 +- 0.29)."""


@dataclasses.dataclass(frozen=True)
class Augment:
    """Random resized crop (area fraction), rotation, brightness, contrast, gaussian noise."""

    crop_scale: tuple[float, float] = (0.85, 1.0)
    rotate_deg: float = 5.0
    brightness: float = 0.1
    contrast: float = 0.1
    noise_std: float = 0.02

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict | None) -> Augment | None:
        """None when `config` is missing or has enabled=False; unset fields keep defaults."""
        if config is None or not config.get("enabled", True):
            return None
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in config.items() if k in fields}
        if "crop_scale" in values:
            values["crop_scale"] = tuple(values["crop_scale"])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class TextAugment:
    """Report augmentation as CXR-CLIP does it: one section, a random subset of sentences, shuffled.

    A report is augmented with probability `prob` (else left whole, as evaluation sees it).
    With probability `section_prob` a report with several sections (`FINDINGS:`,
    `IMPRESSION:`, ...) keeps one of them, chosen at random; each sentence is then kept with
    probability `sentence_keep` (at least one always is) and, if `shuffle`, their order is
    permuted. Short prompts ("Moderate left effusion.") then look like the texts the text tower
    saw, and long reports stop losing their ends to truncation at `text_len`.
    """

    prob: float = 1.0
    section_prob: float = 0.5
    sentence_keep: float = 0.8
    shuffle: bool = True

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict | None) -> TextAugment | None:
        """None when `config` is missing or has enabled=False; unset fields keep defaults."""
        if config is None or not config.get("enabled", True):
            return None
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in config.items() if k in fields})

    def __call__(self, report: str, rng: np.random.Generator) -> str:
        if self.prob < 1 and rng.random() >= self.prob:  # prob 1 draws nothing here
            return report
        sections = [s for s in _SECTION.split(report) if s.strip()]
        if len(sections) > 1 and rng.random() < self.section_prob:
            sections = [sections[rng.integers(len(sections))]]
        sentences = [s.strip() for part in sections for s in _SENTENCE.split(part) if s.strip()]
        if not sentences:
            return report
        keep = rng.random(len(sentences)) < self.sentence_keep
        keep[rng.integers(len(sentences))] = True
        sentences = [s for s, k in zip(sentences, keep) if k]
        if self.shuffle:
            sentences = [sentences[i] for i in rng.permutation(len(sentences))]
        return " ".join(s if s[-1] in ".!?" else s + "." for s in sentences)


_SECTION = re.compile(r"\b[A-Z][A-Z ]{2,}:\s*")  # "FINDINGS:", "IMPRESSION:", "COMPARISON:"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class ImageTransform:
    """Record -> model-ready image float32 [S, S, 1] (and mask uint8 [S, S, C]) for one size S,
    and the report through `text` augmentation when given.

    Geometry (crop, scale, rotation, resize) is one affine warp: bilinear for the image,
    nearest for the mask, zeros outside the source. Without augmentation and at the stored
    size, the image is only normalised.
    """

    def __init__(self, out_size: int, augment: Augment | None, text: TextAugment | None = None):
        self.out_size, self.augment, self.text = out_size, augment, text

    def __call__(self, record: dict[str, Any], rng: np.random.Generator | None = None
                 ) -> dict[str, Any]:
        image = record["image"]
        size = image.shape[0]
        out = {k: v for k, v in record.items() if k not in ("image", "id")}
        if self.text is not None:
            out["report"] = self.text(out["report"], rng)
        if self.augment is None and size == self.out_size:
            pixels = image.astype(np.float32) * (1 / (255 * PIXEL_STD)) - PIXEL_MEAN / PIXEL_STD
            out["image"] = pixels[..., None]
            return out
        matrix = (_random_affine(rng, size, self.out_size, self.augment) if self.augment
                  else _resize_affine(size, self.out_size))
        coords = _source_coords(matrix, self.out_size)
        pixels = _bilinear(image, coords) * (1 / 255)
        if self.augment is not None:
            pixels = _photometric(pixels, rng, self.augment)
        out["image"] = ((pixels - PIXEL_MEAN) * (1 / PIXEL_STD)).reshape(
            self.out_size, self.out_size, 1)
        if "mask" in record:
            out["mask"] = _nearest(record["mask"], coords, self.out_size)
        return out


class TokenizeBatch:
    """Batched records -> the model batch: reports become `tokens` and `text_mask`.

    Without a tokenizer (a dataset with no report text) every row is padding with an all-False
    mask: the batch keeps the fields a training step takes, which a supervised run never reads.
    """

    def __init__(self, tokenizer: Tokenizer | None, text_len: int):
        self.tokenizer, self.text_len = tokenizer, text_len

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = dict(batch)
        reports = batch.pop("report").tolist()
        if self.tokenizer is None:
            tokens = np.full((len(reports), self.text_len), PAD_ID, np.int32)
            mask = tokens != PAD_ID
        else:
            tokens, mask = self.tokenizer.encode(reports, self.text_len)
        batch["tokens"], batch["text_mask"] = tokens, mask
        return batch


def make_loader(config: ml_collections.ConfigDict, split: str, *, train: bool, batch_size: int,
                seed: int, num_epochs: int | None = None, indices: Sequence[int] | None = None,
                with_mask: bool = False, shard: tuple[int, int] | None = None,
                tokenize: bool = True, skip_empty_reports: bool = False
                ) -> grain.DatasetIterator:
    """Batches of `config` (the `config.data` section) for one host.

    num_epochs=None repeats forever when training and reads once otherwise. `indices` limits
    reading to those record positions; `shard` = (index, count) defaults to this JAX process:
    it reads rows [index * batch_size, (index + 1) * batch_size) of every global batch of
    count * batch_size records (`BatchShard`). Training drops the last partial batch;
    evaluation keeps it. Config fields read: name,
    mixture (several datasets, see `chexficient.data.mixture`), data_dir, subset (an exported
    subset, read in place of the split `train_split`), image_size (0: as stored), text_len, vocab_size, augment,
    text_augment (reports, training only),
    on_error, skip_log (default: beside the dataset), worker_count, read_threads (0: automatic).

    `tokenize`: reports become `tokens` and `text_mask` with the data's tokenizer
    (`mixture.load_tokenizer`; a dataset with no report text has none: `TokenizeBatch`); False
    loads no tokenizer and keeps the `report` strings (the bench encodes with a run's own).
    `skip_empty_reports` leaves the records whose report is empty out of the stream (CLIP
    pretraining: `mixture.report_positions`); pool positions stay those of the whole pool.

    A mixture's `index` is the pool position (part offset + position in the part; `indices`
    are pool positions too) and batches add `source` int32, the part's number in the mixture.
    Training draws from the parts (each shuffled and repeated on its own) in proportion to
    their weights, and with `num_epochs` stops when one part has run out; evaluation reads
    the parts one after the other, ignoring the weights.
    """
    parts = mixture.parts(config, split)
    readers = [_reader(config, part, with_mask) for part in parts]
    offsets = [part.offset for part in parts]
    positions = _positions(sum(len(r) for r in readers), indices)
    if skip_empty_reports:
        on_error = config.get("on_error", "raise")
        positions = positions[np.isin(positions, mixture.report_positions(parts, on_error))]
    shard_index, shard_count = shard or _jax_process()
    streams = []
    for k, reader in enumerate(readers):  # part k's pool positions, shuffled and repeated
        own = positions[(positions >= offsets[k]) & (positions < offsets[k] + len(reader))]
        if len(readers) > 1 and not own.size:
            continue  # `indices` chose nothing from this part: the others share its weight
        # Part k's seed is seed + k: phases use seed + 1000 * phase, so none collide.
        ds = grain.MapDataset.source(own).seed(seed + k)
        if train:
            ds = ds.shuffle()
        epochs = num_epochs if num_epochs is not None else (None if train else 1)
        streams.append((parts[k].weight, ds.repeat(epochs)))
    ds = _combine(streams, train)
    ds = ds.map(_Indexed(readers, offsets))
    augment = Augment.from_config(config.get("augment")) if train else None
    text_augment = TextAugment.from_config(config.get("text_augment")) if train else None
    transform = ImageTransform(config.get("image_size") or readers[0].image_size, augment,
                               text_augment)
    ds = ds.random_map(transform) if augment or text_augment else ds.map(transform)
    ds = BatchShard(ds, batch_size, shard_index, shard_count)  # after augmenting: draws by place

    workers = config.get("worker_count", 0)
    # One reading thread overlaps reading with batching; a second only contends for the GIL
    # (measured, batches of 64 at 64 px: 33 against 45 ms, 36 against 55 ms of CPU).
    threads = config.get("read_threads") or 1
    if config.get("on_error", "raise") != "skip":
        # Whole batches read by their place in the stream: grain's per-element bookkeeping
        # (futures, statistics) is paid once a batch, not once a record; the same batches.
        ds = ds.batch(batch_size, drop_remainder=train)
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2))
        it = _StateInRecords(it, batch_size)
    else:  # a skipped record's place goes to the next one, so batching follows the reading
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=threads,
                                                  prefetch_buffer_size=2 * batch_size))
        it = it.batch(batch_size, drop_remainder=train)
    if tokenize:
        it = it.map(TokenizeBatch(mixture.load_tokenizer(config, parts),
                                  config.get("text_len", 64)))
    if workers:
        if not flags.FLAGS.is_parsed():  # grain reads its absl flags when it starts workers
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                         per_worker_buffer_size=2))
        return _PrivateBatches(iter(it))
    return iter(it)


def preprocess_image(image: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 [H, H] (a stored record's image) -> float32 [S, S, 1], as evaluation prepares it."""
    return ImageTransform(image_size, None)({"image": image})["image"]


def preprocess_images(images: np.ndarray, image_size: int) -> np.ndarray:
    """uint8 [B, H, W] -> float32 [B, S, S, 1], exactly as evaluation batches are prepared."""
    return np.stack([preprocess_image(im, image_size) for im in np.asarray(images)])


def _combine(streams: list[tuple[float, grain.MapDataset]], train: bool) -> grain.MapDataset:
    """One part's stream as is; several mixed by weight (training) or concatenated (evaluation)."""
    if len(streams) == 1:
        return streams[0][1]
    if not streams:
        return grain.MapDataset.source(np.zeros(0, np.int64))
    datasets = [ds for _, ds in streams]
    if not train:
        return grain.MapDataset.concatenate(datasets)
    return grain.MapDataset.mix(datasets, [weight for weight, _ in streams])


class _Indexed:
    """Reads the record at a pool position and adds that position as `index` (int32).

    With several parts (a mixture) it also adds `source`, the part's number (int32).
    """

    def __init__(self, readers: Sequence[RecordReader], offsets: Sequence[int]):
        self.readers, self.offsets = list(readers), list(offsets)

    def __call__(self, position: int) -> dict[str, Any] | None:
        part = bisect.bisect_right(self.offsets, position) - 1
        record = self.readers[part](position - self.offsets[part])
        if record is not None:
            record["index"] = np.int32(position)
            if len(self.readers) > 1:
                record["source"] = np.int32(part)
        return record


def _reader(config: ml_collections.ConfigDict, part: mixture.Part, with_mask: bool
            ) -> RecordReader:
    """Reads the part's records (an exported subset's for a run's training split on one)."""
    on_error = config.get("on_error", "raise")
    skip_path = config.get("skip_log") or default_skip_log(part.records_dir, part.records_split)
    keys = REQUIRED + (("mask",) if with_mask else ())
    return RecordReader(part.records_dir, part.records_split, keys=keys, on_error=on_error,
                        skip_log=SkipLog(skip_path) if on_error == "skip" else None)


def _positions(n: int, indices: Sequence[int] | None) -> np.ndarray:
    if indices is None:
        return np.arange(n, dtype=np.int64)
    positions = np.asarray(indices, dtype=np.int64)
    if positions.ndim != 1 or (positions.size and (positions.min() < 0 or positions.max() >= n)):
        raise ValueError(f"indices must be a 1-D list of record positions in [0, {n})")
    return positions


class BatchShard(grain.MapDataset):
    """One process's rows of a global stream: rows [index * batch, (index + 1) * batch) of every
    `count * batch` elements, so that the processes' batches side by side are the global batch."""

    def __init__(self, parent: grain.MapDataset, batch: int, index: int, count: int):
        super().__init__(parent)
        self.rows, self.index, self.count = batch, index, count  # not `batch`: a method

    def __len__(self) -> int:
        full, rest = divmod(len(self._parent), self.rows * self.count)
        return full * self.rows + min(max(rest - self.index * self.rows, 0), self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.slice(i)
        row, column = divmod(i, self.rows)
        return self._parent[(row * self.count + self.index) * self.rows + column]

    def __str__(self) -> str:
        return f"BatchShard(batch={self.rows}, index={self.index}, count={self.count})"


class _StateInRecords(grain.IterDataset):
    """A stream of whole batches whose iterator state counts records (`next_index`: batches
    times `batch_size`), as a stream batched after reading does: checkpoints and
    `resume_state` read one way whichever way the batches were made."""

    def __init__(self, parent: grain.IterDataset, batch_size: int):
        super().__init__(parent)
        self.batch_size = batch_size

    def __iter__(self) -> grain.DatasetIterator:
        return _StateInRecordsIterator(self._parent.__iter__(), self.batch_size)


class _StateInRecordsIterator(grain.DatasetIterator):
    """The iterator of `_StateInRecords`."""

    def __init__(self, parent: grain.DatasetIterator, batch_size: int):
        super().__init__(parent)
        self.batch_size = batch_size

    def __next__(self):
        return next(self._parent)

    def get_state(self) -> dict:
        return {"next_index": self._parent.get_state()["next_index"] * self.batch_size}

    def set_state(self, state: dict) -> None:
        batches, rest = divmod(state["next_index"], self.batch_size)
        if rest:
            raise ValueError(f"data position {state['next_index']} is not a whole number of "
                             f"batches of {self.batch_size} records (it was saved with "
                             "data.on_error=skip): resume with data.on_error=skip")
        self._parent.set_state({"next_index": batches})


class _PrivateBatches(grain.DatasetIterator):
    """Worker batches copied out of shared memory as they arrive: grain unlinks a batch's
    segments only when its arrays are freed, so batches still held when the process ends (the
    last one, or one a JAX array aliases) were left behind ("leaked shared_memory objects")."""

    def __next__(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in next(self._parent).items()}

    def get_state(self) -> dict:
        return self._parent.get_state()

    def set_state(self, state: dict) -> None:
        self._parent.set_state(state)


def resume_state(saved: Sequence[dict], shard: tuple[int, int], batch_size: int) -> dict:
    """This process's iterator state from the states all processes saved (one each, in order).

    On as many processes as saved it, each takes its own. On another number, every process
    resumes at the same global batch; that needs the saved states to be one plain position
    at a whole batch (`data.worker_count=0` and no skipped records), else it is an error.
    """
    index, count = shard
    if len(saved) == count:
        return saved[index]
    saved_batch = batch_size * count // len(saved)
    positions = {s.get("next_index") if set(s) == {"next_index"} else None for s in saved}
    position = positions.pop() if len(positions) == 1 else None
    if position is None or position % saved_batch:
        raise ValueError(
            f"the data position was saved by {len(saved)} processes with worker processes or "
            f"skipped records, so it cannot move to {count} processes; resume on {len(saved)} "
            "processes, or with data.worker_count=0")
    return {"next_index": position // saved_batch * batch_size}


def _jax_process() -> tuple[int, int]:
    import jax  # here, not at the top: grain workers unpickle this module without needing jax

    return jax.process_index(), jax.process_count()


# --- geometry: affine maps from output pixel centres to source coordinates -----------------

def _resize_affine(in_size: int, out_size: int) -> np.ndarray:
    scale = in_size / out_size
    return np.array([[scale, 0, 0.5 * scale - 0.5], [0, scale, 0.5 * scale - 0.5]], np.float32)


def _random_affine(rng: np.random.Generator, in_size: int, out_size: int, aug: Augment
                   ) -> np.ndarray:
    """A square crop of random area fraction and place, rotated by a small random angle."""
    side = in_size * np.sqrt(rng.uniform(*aug.crop_scale))
    cx, cy = rng.uniform(side / 2, in_size - side / 2, size=2)
    angle = np.deg2rad(rng.uniform(-aug.rotate_deg, aug.rotate_deg))
    scale = side / out_size
    cos, sin = scale * np.cos(angle), scale * np.sin(angle)
    c = (out_size - 1) / 2  # output centre maps to the crop centre
    return np.array([[cos, -sin, cx - 0.5 - cos * c + sin * c],
                     [sin, cos, cy - 0.5 - sin * c - cos * c]], np.float32)


@functools.lru_cache(maxsize=8)
def _grid(out_size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:out_size, 0:out_size].astype(np.float32)
    return np.stack([xs.ravel(), ys.ravel(), np.ones(out_size * out_size, np.float32)])


def _source_coords(matrix: np.ndarray, out_size: int) -> np.ndarray:
    return matrix @ _grid(out_size)  # [2, out*out]: x then y, in source pixels


def _bilinear(image: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Samples `image` at `coords` [2, N] (float32); zeros outside, via a one-pixel zero border."""
    h, w = image.shape
    padded = np.pad(image, 1).astype(np.float32).ravel()
    x = np.clip(coords[0] + 1, 0, w + 0.999)  # in-place arithmetic below: this is the hot path
    y = np.clip(coords[1] + 1, 0, h + 0.999)
    x0, y0 = x.astype(np.int32), y.astype(np.int32)
    x -= x0
    y -= y0
    i = y0 * (w + 2)
    i += x0
    top, top_right = np.take(padded, i), np.take(padded, i + 1)
    bottom, bottom_right = np.take(padded, i + (w + 2)), np.take(padded, i + (w + 3))
    top_right -= top
    top_right *= x
    top += top_right
    bottom_right -= bottom
    bottom_right *= x
    bottom += bottom_right
    bottom -= top
    bottom *= y
    top += bottom
    return top


def _nearest(mask: np.ndarray, coords: np.ndarray, out_size: int) -> np.ndarray:
    h, w = mask.shape[:2]
    x, y = np.rint(coords[0]).astype(np.int32), np.rint(coords[1]).astype(np.int32)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    flat = mask.reshape(h * w, -1)
    out = flat[np.clip(y, 0, h - 1) * w + np.clip(x, 0, w - 1)] * inside[:, None].astype(np.uint8)
    return out.reshape((out_size, out_size) + mask.shape[2:])


def _photometric(pixels: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Contrast about the image mean, brightness shift and gaussian noise, on [0, 1] pixels."""
    contrast = rng.uniform(1 - aug.contrast, 1 + aug.contrast)
    shift = (1 - contrast) * pixels.mean() + rng.uniform(-aug.brightness, aug.brightness)
    pixels = pixels * np.float32(contrast) + np.float32(shift)
    if aug.noise_std > 0:
        bank = _noise_bank()
        start = rng.integers(0, bank.size - pixels.size)
        pixels += bank[start: start + pixels.size] * np.float32(aug.noise_std)
    return pixels


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """2**20 fixed N(0, 1) draws; an image takes a random window (8x faster than fresh draws)."""
    return np.random.default_rng(0).standard_normal(1 << 20, dtype=np.float32)
