"""What adapters receive: a CLIP and its tokenizer as batched, jitted numpy-in/numpy-out functions.

Adapters never touch training code: they see embeddings and feature maps (big_vision's
"evaluators get predict functions"). The model itself stays reachable (`model`) for the
adapters' optional fine-tuning modes.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from chexficient import checkpoint, export_model
from chexficient.data import registry
from chexficient.data import tokenizer as tokenizer_lib
from chexficient.data.tokenizer import Tokenizer
from chexficient.models import CLIP, build_model

# Jitted at module level with the graph static: checkpoints of one architecture (the arms of
# an experiment, a run's milestones) share one compiled function per input shape.
@functools.partial(jax.jit, static_argnames=("graphdef", "output"))
def _image_outputs(state, images, *, graphdef, output: str):
    emb, aux = nnx.merge(graphdef, state).encode_image(images)
    return emb if output == "embed" else aux[output]


@functools.partial(jax.jit, static_argnames="graphdef")
def _text_embed(state, tokens, mask, *, graphdef):
    return nnx.merge(graphdef, state).encode_text(tokens, mask)


@functools.partial(jax.jit, static_argnames="graphdef")
def _classify(state, images, *, graphdef):
    return jax.nn.sigmoid(nnx.merge(graphdef, state).classify(images))


def batched(fn: Callable, arrays: Sequence[np.ndarray], batch_size: int):
    """Applies `fn` to fixed-size batches (the last one padded), so it compiles once per size."""
    n = len(arrays[0])
    if n == 0:
        raise ValueError("no inputs to encode")
    outs = []
    for start in range(0, n, batch_size):
        chunk = [a[start:start + batch_size] for a in arrays]
        pad = batch_size - len(chunk[0])
        if pad:
            chunk = [np.concatenate([c, np.repeat(c[-1:], pad, axis=0)]) for c in chunk]
        outs.append(jax.tree.map(lambda x: np.asarray(x)[:batch_size - pad], fn(*chunk)))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def load_tokenizer(data_config: ml_collections.ConfigDict) -> Tokenizer:
    """The tokenizer a run was trained with: the one stored beside its pretraining dataset.

    Never trains a new one: other ids would silently scramble every text embedding.
    """
    builder = registry.prepared_builder(data_config.name, data_config.get("data_dir") or None)
    path = registry.tokenizer_path(builder, data_config.get("vocab_size", 4000))
    if not os.path.exists(path):
        raise FileNotFoundError(f"tokenizer {path} of dataset {data_config.name!r} is missing: "
                                "the text tower cannot be used without the ids it was trained on")
    return Tokenizer(path)


def pretraining_tokenizer(config: ml_collections.ConfigDict) -> Tokenizer | None:
    """`load_tokenizer` of a run's config, or None for a supervised run on data without report
    text (it was trained with none: its text tower is never used)."""
    try:
        return load_tokenizer(config.data)
    except FileNotFoundError:
        if config.get("loss") == "supervised":
            return None
        raise


NO_TOKENIZER = ("this supervised run was trained on data without report text and has no "
                "tokenizer: it encodes no text")


class NotApplicable(ValueError):
    """The adapter's task does not apply to this model by design (a supervised reference has no
    text tower to retrieve with): the suite notes it and goes on, without counting an error."""


class Encoders:
    """Frozen image and text towers of one CLIP, plus the run config they came from.

    Batches are split over this process's devices (parameters replicated on each), so
    `batch_size` is rounded up to a multiple of the device count.
    """

    def __init__(self, model: CLIP, tokenizer: Tokenizer | None, config: ml_collections.ConfigDict, *,
                 batch_size: int = 64):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        devices = jax.local_devices()
        self.batch_size = -(-batch_size // len(devices)) * len(devices)
        self.image_size = int(config.model.image.image_size)
        self.text_len = int(config.data.text_len)
        mesh = Mesh(np.array(devices), ("data",))
        self._rows = NamedSharding(mesh, P("data"))
        graphdef, state = nnx.split(model)
        self._image = functools.partial(_image_outputs, graphdef=graphdef)
        self._text = functools.partial(_text_embed, graphdef=graphdef)
        self._classify = functools.partial(_classify, graphdef=graphdef)
        self._state = jax.device_put(state, NamedSharding(mesh, P()))

    def _on_devices(self, fn: Callable) -> Callable:
        """`fn` with its array arguments split by rows over the devices."""
        return lambda *arrays: fn(self._state, *jax.device_put(arrays, self._rows))

    @classmethod
    def from_checkpoint(cls, path: str, *, step: int | None = None,
                        batch_size: int = 64) -> Encoders:
        """A run directory's checkpoint `step` (default: the latest), or a folder written by
        `chexficient export-model` (one step: `step` must be None); CheckpointError if it
        cannot be read.

        The tokenizer is the run's own copy; runs from before it was kept fall back to the one
        beside their pretraining dataset.
        """
        if export_model.is_export(path):
            if step is not None:
                raise ValueError(f"{path} is an exported model (one step); step={step} applies "
                                 "to a run's checkpoints")
            model, config, tokenizer = export_model.read_export(path)
            return cls(model, tokenizer, config, batch_size=batch_size)
        model, config = checkpoint.load_model(path, step=step)
        tokenizer = tokenizer_lib.load_saved(checkpoint.run_dir(path))
        return cls(model, tokenizer or pretraining_tokenizer(config), config, batch_size=batch_size)

    @classmethod
    def random_init(cls, config: ml_collections.ConfigDict, *, tokenizer: Tokenizer | None = None,
                    seed: int = 0, batch_size: int = 64) -> Encoders:
        """The same architecture untrained: the reference every pretrained encoder must beat.

        `tokenizer` defaults to the one beside the config's pretraining dataset."""
        tokenizer = tokenizer or pretraining_tokenizer(config)
        config = ml_collections.ConfigDict(config.to_dict())
        if not config.model.text.vocab_size:
            config.model.text.vocab_size = tokenizer.vocab_size
        model = build_model(config.model, nnx.Rngs(seed))
        return cls(model, tokenizer, config, batch_size=batch_size)

    def _images(self, images: np.ndarray, output: str):
        images = np.asarray(images, np.float32)
        expected = (self.image_size, self.image_size, 1)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(
                f"images must be [B, {', '.join(map(str, expected))}], got {images.shape}")
        fn = self._on_devices(functools.partial(self._image, output=output))
        return batched(fn, [images], self.batch_size)

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """[B,S,S,1] normalised images -> [B,D] unit-norm embeddings."""
        return self._images(images, "embed")

    def image_features(self, images: np.ndarray) -> np.ndarray:
        """[B,S,S,1] -> pooled pre-projection features [B,W] (what linear probes read)."""
        return self._images(images, "pooled")

    def image_tokens(self, images: np.ndarray) -> np.ndarray:
        """[B,S,S,1] -> final patch tokens [B,N,W] (what the report decoder attends to)."""
        return self._images(images, "tokens")

    def image_feature_maps(self, images: np.ndarray) -> list[np.ndarray]:
        """[B,S,S,1] -> patch grids [B,h,w,W] from several depths, shallow to deep."""
        return self._images(images, "features")

    @property
    def supervised(self) -> bool:
        """Whether the model is the supervised reference: a classifier head, no trained text tower."""
        return self.config.get("loss") == "supervised"

    def classify(self, images: np.ndarray) -> np.ndarray:
        """[B,S,S,1] -> [B,14] probabilities of the supervised head (findings in FINDINGS order)."""
        if self.model.classifier is None:
            raise ValueError("this checkpoint has no classifier head (not a supervised reference)")
        images = np.asarray(images, np.float32)
        return batched(self._on_devices(self._classify), [images], self.batch_size)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Report or prompt strings -> [B,D] unit-norm embeddings."""
        if self.tokenizer is None:
            raise NotApplicable(NO_TOKENIZER)
        tokens, mask = self.tokenizer.encode(list(texts), self.text_len)
        return batched(self._on_devices(self._text), [tokens, mask], self.batch_size)
