"""Use a trained model on your own images and reports: embeddings, zero-shot, retrieval.

```python
from chexficient import inference
model = inference.load("runs/chexficient")   # a workdir, its checkpoints/, or an export
img = model.embed_images(["a.dcm", "b.png", pixels_uint16])   # [N, D], unit rows
probs = model.zero_shot(["a.dcm"], labels=["pneumothorax"])    # [N, L] in 0..1
```

Images are read by the dataset builders' reader (DICOM rescale, VOI LUT or window,
MONOCHROME1; PNG / JPEG of 8 or 16 bits, grey or RGB), resized with padding to the side the
pretraining dataset stores, then prepared by the evaluation path of the input pipeline: a file
of a dataset's stored image embeds exactly as that record does in training's evaluation.
Decoding runs in a thread pool while the devices embed the previous batch.
This module is a front door, like the `chexficient` command: it uses the benchmark's
encoders (`downstream.encoders`) and zero-shot prompts (`downstream.zero_shot`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence

import ml_collections
import numpy as np
from PIL import Image

from chexficient.data import mixture, pipeline
from chexficient.data.builders._common import (ImageError, ordered_map, read_pixels,
                                               resize_with_pad, to_uint8)
from downstream import zero_shot as zero_shot_lib
from chexficient.findings import FINDINGS
from downstream.data import finding_names
from downstream.encoders import Encoders, NotApplicable

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
"""What a folder given to the commands is searched for (case-insensitive)."""


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An input that could not be read: its position in the inputs, its name and why."""

    position: int
    name: str
    why: str


@dataclasses.dataclass(frozen=True)
class ImageEmbeddings:
    """Embeddings [n_kept, D] of the readable inputs, their positions, and the skipped ones."""

    embeddings: np.ndarray
    kept: np.ndarray
    skipped: list[Skipped]


def input_name(image, position: int) -> str:
    """How messages name an input: its path, or `<array N>` for the N-th input array."""
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"<array {position}>"


def read_image(image, name: str | None = None) -> np.ndarray:
    """uint8 H x W pixels of a file path (the builders' reader) or an array: uint8 as is,
    other integer types stretched from min..max (as 16-bit PNGs are), RGB(A) to grey as
    PIL converts it. Anything else is an ImageError naming the input."""
    if isinstance(image, (str, os.PathLike)):
        return read_pixels(os.fspath(image))
    name = name or "<array>"
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (3, 4) and array.dtype == np.uint8:
        return np.asarray(Image.fromarray(array).convert("L"))
    if array.ndim != 2 or array.dtype.kind not in "ui" or not array.size:
        raise ImageError(f"{name}: expected a grey H x W integer array or an H x W x 3 uint8 RGB "
                         f"one, got {array.dtype} {array.shape}")
    return to_uint8(array)


def stored_size(config: ml_collections.ConfigDict) -> int:
    """The side of the images the model's pretraining dataset stores (an export records it)."""
    if "export" in config:
        return int(config.export.preprocess.stored_size)
    return mixture.stored_image_size(config.data)


class Model:
    """A trained CLIP ready for files, arrays and texts (see the module docstring)."""

    def __init__(self, encoders: Encoders, *, stored_size: int, workers: int = 8):
        self.encoders, self.stored_size, self.workers = encoders, stored_size, workers

    @property
    def config(self) -> ml_collections.ConfigDict:
        """The run's resolved config (model, data and tokenizer settings the towers were built from)."""
        return self.encoders.config

    @property
    def image_size(self) -> int:
        """Side in pixels of the square image the image tower takes."""
        return self.encoders.image_size

    @property
    def embed_dim(self) -> int:
        """Width D of the shared embedding space (rows of embed_images / embed_texts)."""
        return int(self.config.model.embed_dim)

    def preprocess(self, image, name: str | None = None) -> np.ndarray:
        """One input -> float32 [S, S, 1], the model's input, as training's evaluation makes it."""
        stored = resize_with_pad(read_image(image, name), self.stored_size)
        return pipeline.preprocess_image(stored, self.image_size)

    def batches(self, images: Sequence, *, skip_bad: bool = False
                ) -> Iterator[tuple[np.ndarray, list[int], list[Skipped]]]:
        """(model inputs [<=B, S, S, 1], their positions, inputs skipped since the last batch),
        decoded by a thread pool ahead of the consumer. A bad input is an ImageError naming
        it, or with `skip_bad` a Skipped entry."""
        batch, kept, skipped = [], [], []
        work = ordered_map(lambda item: self.preprocess(item[1], input_name(item[1], item[0])),
                           enumerate(images), workers=self.workers,
                           lookahead=max(64, 2 * self.encoders.batch_size))
        for (position, image), result in work:
            if isinstance(result, ImageError) and skip_bad:
                skipped.append(Skipped(position, input_name(image, position), str(result)))
                continue
            if isinstance(result, Exception):
                raise result
            batch.append(result)
            kept.append(position)
            if len(batch) == self.encoders.batch_size:
                yield np.stack(batch), kept, skipped
                batch, kept, skipped = [], [], []
        if batch or skipped:
            yield (np.stack(batch) if batch else np.zeros((0, self.image_size, self.image_size, 1),
                                                           np.float32)), kept, skipped

    def read_and_embed(self, images: Sequence, *, skip_bad: bool = False,
                       progress: bool = False) -> ImageEmbeddings:
        """Reads and embeds `images`, with a progress bar (items/s) if `progress`; an
        unreadable input is an ImageError naming it, or with `skip_bad` a Skipped entry."""
        return self._read_and_map(images, self.encoders.embed_images, self.embed_dim,
                                  skip_bad=skip_bad, progress=progress)

    def _read_and_map(self, images: Sequence, fn, width: int, *, skip_bad: bool,
                      progress: bool) -> ImageEmbeddings:
        """`fn` (model inputs [B, S, S, 1] -> [B, width]) over the readable `images`."""
        from tqdm.auto import tqdm

        images = _as_list(images)
        out, kept, skipped = [], [], []
        with tqdm(total=len(images), unit="image", disable=not progress, dynamic_ncols=True) as bar:
            for batch, positions, bad in self.batches(images, skip_bad=skip_bad):
                if len(batch):
                    out.append(fn(batch))
                kept += positions
                skipped += bad
                bar.update(len(positions) + len(bad))
                if skipped:
                    bar.set_postfix(skipped=len(skipped), refresh=False)
        return ImageEmbeddings(np.concatenate(out) if out else np.zeros((0, width), np.float32),
                               np.asarray(kept, np.int64), skipped)

    def embed_images(self, images: Sequence, *, progress: bool = False) -> np.ndarray:
        """[N, D] unit-norm embeddings of image files or arrays, in input order."""
        return self.read_and_embed(images, progress=progress).embeddings

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """[N, D] unit-norm embeddings of reports or prompts (not for a supervised model: its
        text tower is never trained)."""
        if self.encoders.supervised:
            raise NotApplicable("this is a supervised model: its text tower was never trained, so "
                                "it embeds no text and retrieves none; its zero-shot scores come "
                                "from its classifier head (zero_shot)")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            return np.zeros((0, self.embed_dim), np.float32)
        return self.encoders.embed_texts(texts)

    @property
    def logit_scale(self) -> float:
        """The learned inverse temperature exp(logit_scale) of the contrastive loss."""
        return float(np.exp(np.asarray(self.encoders.model.logit_scale[...])))

    def zero_shot_embeddings(self, image_embeddings: np.ndarray,
                             labels: Sequence[str] | None = None,
                             prompts: Sequence[tuple[str, str]] | None = None, *,
                             scale: float = 1.0) -> np.ndarray:
        """[N, L] probabilities from image embeddings [N, D]: as `zero_shot`, without reading
        images (a CLIP model only: a supervised model answers from the images)."""
        if self.encoders.supervised:
            raise NotApplicable("a supervised model's zero-shot scores come from its classifier "
                                "head on the images, not from embeddings: use zero_shot(images)")
        image_embeddings = np.asarray(image_embeddings)
        if image_embeddings.ndim != 2 or image_embeddings.shape[1] != self.embed_dim:
            raise ValueError(f"image embeddings must be [N, {self.embed_dim}], got "
                             f"{image_embeddings.shape}")
        if not np.isfinite(scale):
            raise ValueError(f"scale must be a finite number, got {scale}")
        emb = zero_shot_lib.prompt_embeddings(self, label_names(labels), prompt_pairs(prompts))
        return zero_shot_lib.probabilities(image_embeddings, emb, scale)

    def read_and_score(self, images: Sequence, labels: Sequence[str] | None = None,
                       prompts: Sequence[tuple[str, str]] | None = None, *, scale: float = 1.0,
                       skip_bad: bool = False, progress: bool = False) -> ImageEmbeddings:
        """As `read_and_embed`, with each kept image's zero-shot probabilities [n_kept, L] in
        place of its embedding: a CLIP model's prompts, a supervised model's own head."""
        if not self.encoders.supervised:
            names, pairs = label_names(labels), prompt_pairs(prompts)  # checked before reading
            result = self.read_and_embed(images, skip_bad=skip_bad, progress=progress)
            return dataclasses.replace(result, embeddings=self.zero_shot_embeddings(
                result.embeddings, names, pairs, scale=scale))
        columns = self._head_columns(label_names(labels), prompts, scale)
        return self._read_and_map(images, lambda batch: self.encoders.classify(batch)[:, columns],
                                  len(columns), skip_bad=skip_bad, progress=progress)

    def _head_columns(self, names: list[str], prompts, scale: float) -> list[int]:
        """The supervised head's outputs for `names` (its findings, in any case)."""
        if prompts or scale != 1.0:
            raise NotApplicable("a supervised model answers with its classifier head: prompts "
                                "and scale do not apply to it")
        index = {finding.lower(): i for i, finding in enumerate(FINDINGS)}
        unknown = [name for name in names if name.lower() not in index]
        if unknown:
            raise NotApplicable(f"a supervised model scores only the findings of its head; "
                                f"{unknown} are not among {list(FINDINGS)}")
        return [index[name.lower()] for name in names]

    def zero_shot(self, images: Sequence, labels: Sequence[str] | None = None,
                  prompts: Sequence[tuple[str, str]] | None = None, *, scale: float = 1.0,
                  progress: bool = False) -> np.ndarray:
        """[N, L] probability of each label, the bench's protocol: the 2-way softmax of an
        image's similarity to the label's positive and negative prompts (templates with
        `{finding}` / `{Finding}`, averaged over pairs), similarities times `scale` (1, as the
        bench and CheXzero; `model.logit_scale` for the training temperature). Default labels:
        the bench's findings (the 14 CheXpert observations less No Finding); default prompts:
        the bench's (`zero_shot.RADIOLOGY_PROMPTS` for those findings, CheXzero's pair for
        others). A supervised model answers with its classifier head, as the bench does."""
        return self.read_and_score(_as_list(images), labels, prompts, scale=scale,
                                   progress=progress).embeddings

    def retrieve(self, images: Sequence, texts: Sequence[str], k: int = 5, *,
                 progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The `k` texts closest to each image: indices into `texts` [N, k] and cosine
        similarities [N, k], best first (ties keep text order)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        text_embeddings = self.embed_texts(texts)  # before the images: it may not apply
        return top_k(self.embed_images(images, progress=progress), text_embeddings, k)


def top_k(queries: np.ndarray, keys: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices [N, k] of the `k` most similar rows of `keys` to each query, and their scores."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    sims = queries @ keys.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :min(k, keys.shape[0])]
    return order, np.take_along_axis(sims, order, axis=1)


def label_names(labels: Sequence[str] | None) -> list[str]:
    """The labels to score: the bench's findings for None; a list of non-blank names otherwise."""
    if labels is None:
        return finding_names(())
    if isinstance(labels, str):
        raise TypeError(f"labels must be a list of names, got the string {labels!r} "
                        f"(for one label pass [{labels!r}])")
    names = [str(name).strip() for name in labels]
    if not names or not all(names):
        raise ValueError(f"labels must be non-empty names, got {list(labels)!r}")
    return names


def prompt_pairs(prompts: Sequence[tuple[str, str]] | None) -> list[tuple[str, str]] | None:
    """(positive, negative) template pairs whose only fields are {finding} and {Finding}."""
    if not prompts:
        return None
    if isinstance(prompts, tuple) and len(prompts) == 2 and all(isinstance(p, str) for p in prompts):
        prompts = [prompts]  # one pair given bare
    pairs = [tuple(p) for p in prompts]
    if any(len(p) != 2 or not all(isinstance(t, str) for t in p) for p in pairs):
        raise ValueError(f"prompts must be (positive, negative) template pairs, got {pairs}")
    for template in (t for pair in pairs for t in pair):
        try:
            template.format(finding="x", Finding="X")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"prompt template {template!r}: only {{finding}} and {{Finding}} may "
                             f"stand in braces ({type(e).__name__}: {e})") from None
    return pairs


def _as_list(images) -> list:
    if isinstance(images, (str, os.PathLike)) or (isinstance(images, np.ndarray)
                                                  and images.ndim in (2, 3)
                                                  and images.dtype != object):
        raise TypeError("give a list of images (paths or arrays), not a single one; for a "
                        "stacked [N, H, W] array pass list(array)")
    return list(images)


def load(path: str, *, step: int | None = None, batch_size: int = 32,
         workers: int = 8) -> Model:
    """The model of a run workdir (checkpoint `step`, default the latest), of its checkpoints/
    directory, or of a folder written by `chexficient export-model`."""
    path = os.fspath(path)
    if batch_size < 1 or workers < 1:
        raise ValueError(f"batch_size and workers must be >= 1, got {batch_size} and {workers}")
    encoders = Encoders.from_checkpoint(path, step=step, batch_size=batch_size)
    return Model(encoders, stored_size=stored_size(encoders.config), workers=workers)
