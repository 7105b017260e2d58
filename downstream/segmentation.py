"""Segmentation: a U-Net-style decoder over the image tower's feature grids, scored by Dice.

Targets are unions of mask channels, named as the dataset's builder names them
(`MASK_CHANNELS`); by default the builder's `MASK_TARGETS` (synthetic world: lungs = left +
right lung, heart, pathology), else one target per channel. Where an empty mask means "not
annotated" (NIH's boxes), only images with a mask pixel in a target's channels are used. The
encoder stays frozen (its grids are computed once), or with `config.finetune` a copy of it
trains with the decoder. Below 100% of the masks, one decoder per label draw (`config.draws`
seeded subsets, each with its own decoder init): Dice is the mean over draws, with their
spread. Overlays of the first eval images are written for the largest fraction.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx

from chexficient.data import registry
from downstream import metrics, plots, training
from downstream.data import BenchData, MissingFieldsError, Split, label_draws, mean_over_draws
from downstream.encoders import Encoders
from downstream.unet import UNetDecoder


def target_masks(masks: np.ndarray, targets: dict[str, tuple[int, ...]]) -> np.ndarray:
    """[n,S,S,C] 0/1 masks -> [n,S,S,T]: target t is the union of its channels."""
    masks = masks if masks.ndim == 4 else masks[..., None]
    return np.stack([masks[..., list(ch)].max(axis=-1) for ch in targets.values()], axis=-1)


@dataclasses.dataclass(frozen=True)
class MaskChannels:
    """A dataset's mask channels as its builder declares them: their names in channel order,
    the default targets, and whether an empty mask means "not annotated" rather than "none"."""

    dataset: str
    names: tuple[str, ...]
    default_targets: dict[str, tuple[str, ...]]
    empty_means_unannotated: bool

    @classmethod
    def of(cls, dataset: str) -> MaskChannels:
        """From the builder of `dataset` (`MASK_CHANNELS`, optional `MASK_TARGETS` and
        `EMPTY_MASK_MEANS_UNANNOTATED`); default targets are one per channel."""
        builder = registry.builder_class(dataset.partition("/")[0])
        names = tuple(builder.MASK_CHANNELS)
        targets = getattr(builder, "MASK_TARGETS", None) or {name: (name,) for name in names}
        return cls(dataset, names, {k: tuple(v) for k, v in targets.items()},
                   getattr(builder, "EMPTY_MASK_MEANS_UNANNOTATED", False))

    def targets(self, configured: Mapping[str, Sequence[str] | str]) -> dict[str, tuple[int, ...]]:
        """Target name -> channel numbers of the `configured` targets (name -> channel names;
        empty: the defaults), in name order as a ConfigDict keeps them. A target naming a
        channel this dataset lacks (one of another dataset, or a number) is refused with the
        dataset's channel names."""
        given = {name: (chs,) if isinstance(chs, str) else tuple(chs)
                 for name, chs in configured.items()}
        named = dict(sorted((given or self.default_targets).items()))
        for name, chs in named.items():
            if not chs or any(c not in self.names for c in chs):
                example = {self.names[0]: (self.names[0],)}
                raise MissingFieldsError(
                    f"adapter 'segmentation': target {name!r} = {list(chs)} must name one or more "
                    f"mask channels of dataset {self.dataset!r}, which are {list(self.names)}. "
                    f"Set --config.segmentation.targets to target name -> channel names, e.g. "
                    f"\"{example}\", or to {{}} for its default targets "
                    f"{list(self.default_targets)}")
        return {name: tuple(self.names.index(c) for c in chs) for name, chs in named.items()}


def annotated(split: Split, targets: dict[str, tuple[int, ...]], dataset: str) -> Split:
    """The images of `split` with a mask pixel in a target's channels: the annotated ones of a
    dataset whose empty masks mean "not annotated" (NIH's boxes), the only ones to use."""
    rows = np.flatnonzero(target_masks(split.masks, targets).any(axis=(1, 2, 3)))
    logging.info("segmentation: %d of %d images of %s:%s have a mask pixel in the targets' "
                 "channels; the rest (not annotated) are left out", len(rows), len(split),
                 dataset, split.name)
    if not len(rows):
        raise MissingFieldsError(
            f"adapter 'segmentation': no image of split {split.name!r} of dataset {dataset!r} "
            f"(of {len(split)} read) has a mask pixel in the channels of targets "
            f"{list(targets)}, and there an empty mask means 'not annotated'; use a split with "
            f"annotated images (--config.data.train_split / eval_splits) or read more of it "
            f"(max_train=0 / max_eval=0)")
    return split.take(rows)


def segmentation_loss(logits: jax.Array, target: jax.Array) -> jax.Array:
    """Binary cross-entropy plus soft Dice loss, averaged over targets."""
    target = target.astype(jnp.float32)
    bce = optax.sigmoid_binary_cross_entropy(logits, target).mean()
    prob = jax.nn.sigmoid(logits)
    inter = jnp.sum(prob * target, axis=(1, 2))
    dice = (2 * inter + 1) / (jnp.sum(prob, axis=(1, 2)) + jnp.sum(target, axis=(1, 2)) + 1)
    return bce + jnp.mean(1 - dice)


class Segmenter(nnx.Module):
    """Fine-tuning mode: a trainable copy of the image tower feeding the decoder."""

    def __init__(self, encoders: Encoders, decoder: UNetDecoder):
        self.tower, self.decoder = nnx.clone(encoders.model.image), decoder

    def __call__(self, images: jax.Array) -> jax.Array:
        return self.decoder(self.tower(images)[1]["features"], images)


def _grids(batch: dict) -> list:
    """The feature grids `f0`, `f1`, ... of a batch, shallow to deep."""
    return [batch[f"f{i}"] for i in range(sum(k.startswith("f") for k in batch))]


# Module-level (not lambdas), so the decoders of every label draw share one compiled step.
def _decoder_loss(decoder: UNetDecoder, batch: dict) -> jax.Array:
    return segmentation_loss(decoder(_grids(batch), batch["image"]), batch["mask"])


def _decode(decoder: UNetDecoder, image: jax.Array, *grids: jax.Array) -> jax.Array:
    return decoder(list(grids), image)


def _segmenter_loss(segmenter: Segmenter, batch: dict) -> jax.Array:
    return segmentation_loss(segmenter(batch["image"]), batch["mask"])


def _segment(segmenter: Segmenter, images: jax.Array) -> jax.Array:
    return segmenter(images)


def _train_and_predict(encoders: Encoders, decoder: UNetDecoder, train_images: np.ndarray,
                       train_targets: np.ndarray, eval_images: dict[str, np.ndarray],
                       features: dict | None, rows: np.ndarray, config: ml_collections.ConfigDict,
                       seed: int) -> dict[str, np.ndarray]:
    """Trains `decoder` on `rows` of the train split; returns eval logits per split.

    `features` holds the frozen encoder's grids per split (None when fine-tuning).
    """
    fit = dict(steps=config.steps, batch_size=config.batch_size,
               learning_rate=config.learning_rate, seed=seed)
    if config.finetune:
        module = Segmenter(encoders, decoder)
        training.fit(module, _segmenter_loss,
                     {"image": train_images[rows], "mask": train_targets[rows]},
                     desc="fine-tune segmenter", **fit)
        predict = training.predictor(module, _segment, encoders.batch_size)
        return {s: predict(x) for s, x in eval_images.items()}
    arrays = {f"f{i}": grid[rows] for i, grid in enumerate(features["train"])}
    training.fit(decoder, _decoder_loss,
                 {**arrays, "image": train_images[rows], "mask": train_targets[rows]},
                 desc="segmentation decoder", **fit)
    predict = training.predictor(decoder, _decode, encoders.batch_size)
    return {s: predict(eval_images[s], *features[s]) for s in eval_images}


def _read_splits(data: BenchData, targets: dict[str, tuple[int, ...]], annotated_only: bool
                 ) -> tuple[Split, dict[str, Split], dict[str, float]]:
    """The train split, the eval splits and, with `annotated_only`, each split's count of
    images left out as not annotated (`<split>/n_not_annotated_left_out`)."""
    splits = {s: data.split(s, with_mask=True) for s in (data.train_split, *data.eval_splits)}
    counts = {}
    if annotated_only:
        kept = {s: annotated(split, targets, data.name) for s, split in splits.items()}
        counts = {f"{s}/n_not_annotated_left_out": float(len(splits[s]) - len(kept[s]))
                  for s in splits}
        splits = kept
    return splits[data.train_split], {s: splits[s] for s in data.eval_splits}, counts


def run(encoders: Encoders, data: BenchData, config: ml_collections.ConfigDict) -> dict[str, float]:
    """Dice per target and mean, per label fraction and eval split: `<split>/<pct>%/dice/...`
    (and where empty masks mean "not annotated", the images left out per split)."""
    data.require("segmentation", ("image", "mask"), (data.train_split, *data.eval_splits))
    channels = MaskChannels.of(data.name)
    if len(channels.names) != data.mask_channels():
        raise MissingFieldsError(
            f"dataset {data.name!r} was built with {data.mask_channels()} mask channel(s), but "
            f"its builder names {len(channels.names)} ({list(channels.names)}): rebuild it")
    targets = channels.targets(config.targets)
    train, evals, out = _read_splits(data, targets, channels.empty_means_unannotated)
    train_targets = target_masks(train.masks, targets)
    features = None
    if not config.finetune:
        features = {"train": encoders.image_feature_maps(train.images),
                    **{s: encoders.image_feature_maps(e.images) for s, e in evals.items()}}
    grids = features["train"] if features else encoders.image_feature_maps(train.images[:1])
    truth = {s: target_masks(split.masks, targets) for s, split in evals.items()}
    eval_images = {s: split.images for s, split in evals.items()}
    for fraction in config.fractions:
        draws, per_draw = label_draws(len(train), fraction, config.draws, config.seed), []
        for draw, (seed, rows) in enumerate(draws):
            decoder = UNetDecoder(
                feature_width=grids[0].shape[-1], num_levels=len(grids),
                out_channels=len(targets), image_size=encoders.image_size, width=config.width,
                grid_size=grids[0].shape[1],
                image_channels=train.images.shape[-1] if config.image_skip else 0,
                rngs=nnx.Rngs(seed))
            logits = _train_and_predict(encoders, decoder, train.images, train_targets,
                                        eval_images, features, rows, config, seed)
            result = {}
            for s, split in evals.items():
                dice = metrics.dice_per_image(logits[s] > 0, truth[s])  # [n, T]
                prefix = f"{s}/{fraction * 100:g}%"
                result.update({f"{prefix}/dice/{name}": float(dice[:, t].mean())
                               for t, name in enumerate(targets)})
                result.update({f"{prefix}/dice/mean": float(dice.mean()),
                               f"{prefix}/n_train": float(len(rows)),
                               f"{prefix}/draws": float(len(draws))})
                if (draw == 0 and fraction == max(config.fractions) and config.overlays
                        and config.get("out_dir")):
                    plots.segmentation_overlays(
                        os.path.join(config.out_dir, f"segmentation_{s}.png"),
                        split.images[:config.overlays], truth[s][:config.overlays],
                        logits[s][:config.overlays] > 0, list(targets))
            per_draw.append(result)
        out.update(mean_over_draws(per_draw))
    return out
