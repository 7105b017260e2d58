"""Report generation: a small decoder on the frozen image tokens, trained on the train reports.

Greedy and beam decoding on every eval split, scored by BLEU-1..4, ROUGE-L and
clinical-efficacy F1 (our labeler on both sides); side-by-side samples are written as
markdown. Records with an empty report are left out of training and scoring, and counted.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from chexficient.io import write_atomic
from downstream import metrics, training
from downstream.data import BenchData, Split
from downstream.encoders import NO_TOKENIZER, Encoders, NotApplicable
from downstream.report_decoder import ReportDecoder, beam_decode, greedy_decode


def teacher_forcing_loss(decoder: ReportDecoder, batch: dict[str, jax.Array]) -> jax.Array:
    """Mean next-token cross-entropy over real (unpadded) target tokens."""
    ids, mask = batch["ids"], batch["mask"]
    logits = decoder(batch["tokens"], ids[:, :-1])
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:])
    weights = mask[:, 1:].astype(ce.dtype)
    return jnp.sum(ce * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def _nonempty(split: Split) -> tuple[Split, int]:
    keep = np.flatnonzero([bool(r.strip()) for r in split.reports])
    return split.take(keep), len(split) - len(keep)


def _samples_markdown(path: str, split: str, references: list[str],
                      generated: dict[str, list[str]], n: int) -> None:
    """Writes the first `n` references beside each decoding's output (atomically)."""
    lines = [f"# Generated vs reference reports ({split})", ""]
    for i, ref in enumerate(references[:n]):
        lines += [f"## Example {i + 1}", "", f"- **reference**: {ref}"]
        lines += [f"- **{mode}**: {texts[i]}" for mode, texts in generated.items()] + [""]
    write_atomic(path, "\n".join(lines) + "\n")


def run(encoders: Encoders, data: BenchData, config: ml_collections.ConfigDict) -> dict[str, float]:
    """Report metrics per decoding mode and eval split: `<split>/<mode>/bleu4`, ..."""
    data.require("report_generation", ("image", "report"), (data.train_split, *data.eval_splits))
    tok = encoders.tokenizer
    if tok is None:
        raise NotApplicable(NO_TOKENIZER)
    train, skipped = _nonempty(data.split(data.train_split))
    if not len(train):
        raise ValueError(f"train split of dataset {data.name!r} has no non-empty reports")
    ids, mask = tok.encode(train.reports, config.max_len)
    memory = encoders.image_tokens(train.images)
    decoder = ReportDecoder(image_width=memory.shape[-1], vocab_size=tok.vocab_size,
                            max_len=config.max_len, width=config.width, depth=config.depth,
                            heads=config.heads, rngs=nnx.Rngs(config.seed))
    losses = training.fit(decoder, teacher_forcing_loss,
                          {"tokens": memory, "ids": ids, "mask": mask}, steps=config.steps,
                          batch_size=config.batch_size, learning_rate=config.learning_rate,
                          seed=config.seed, desc="report decoder")
    special = dict(bos=tok.bos_id, eos=tok.eos_id, pad=tok.pad_id)
    searches = {"greedy": functools.partial(greedy_decode, **special),
                "beam": functools.partial(beam_decode, beams=config.beams,
                                          length_penalty=config.length_penalty, **special)}
    unknown = set(config.decoding) - set(searches)
    if unknown:
        raise ValueError(f"unknown decoding {sorted(unknown)}; valid: {', '.join(searches)}")
    decode = {mode: training.predictor(decoder, searches[mode], encoders.batch_size)
              for mode in config.decoding}
    out = {"train_loss_final": float(np.mean(losses[-10:])), "n_train": float(len(train)),
           "n_train_empty_skipped": float(skipped)}
    for split_name in data.eval_splits:
        split, skipped = _nonempty(data.split(split_name))
        tokens = encoders.image_tokens(split.images)
        generated = {}
        for mode in config.decoding:
            generated[mode] = tok.decode(decode[mode](tokens))
            scores = metrics.report_metrics(generated[mode], split.reports)
            out.update({f"{split_name}/{mode}/{k}": v for k, v in scores.items()})
        out[f"{split_name}/n_empty_skipped"] = float(skipped)
        if config.samples and config.get("out_dir"):
            _samples_markdown(os.path.join(config.out_dir, f"reports_{split_name}.md"),
                              split_name, split.reports, generated, config.samples)
    return out
