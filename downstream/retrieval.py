"""Image-report retrieval: image-to-text and text-to-image Recall@K and mean rank.

Identical reports are merged first (the field's protocol): an image's query succeeds on its
report's unique text, and a text's query succeeds on any image that carries it. Reports are
identical when the text tower reads them so (the same tokens after truncation to
`data.text_len`): such texts embed identically, and as separate candidates they would tie, which
counts against the query. Records with an empty report are left out and counted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import ml_collections
import numpy as np

from chexficient.io import save_arrays
from downstream import metrics
from downstream.data import BenchData
from downstream.encoders import NO_TOKENIZER, Encoders, NotApplicable


def retrieval_ranks(image_emb: np.ndarray, text_emb: np.ndarray, text_of_image: np.ndarray
                    ) -> dict[str, np.ndarray]:
    """1-based rank of the first relevant candidate per query, both ways: {'i2t': [images],
    't2i': [unique texts]}, from unit embeddings of images and of unique texts.

    text_of_image[i] is the row of `text_emb` holding image i's (merged) report.
    """
    sims = image_emb @ text_emb.T
    relevant = text_of_image[:, None] == np.arange(len(text_emb))[None, :]
    return {"i2t": metrics.first_relevant_rank(sims, relevant),
            "t2i": metrics.first_relevant_rank(sims.T, relevant.T)}


def merge_reports(encoders: Encoders, reports: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Unique reports as the text tower reads them (first-seen text of each) and, per report,
    the position of its unique one: reports with the same tokens after truncation to the
    tower's `text_len` embed identically, so they are one candidate, not a tie."""
    if encoders.tokenizer is None:
        raise NotApplicable(NO_TOKENIZER)
    ids, mask = encoders.tokenizer.encode(list(reports), encoders.text_len)
    _, inverse = metrics.merge_duplicates([row[keep].tobytes() for row, keep in zip(ids, mask)])
    first = np.unique(inverse, return_index=True)[1]  # first report of each, in first-seen order
    return [reports[i] for i in first], inverse


def retrieval_metrics(ranks: dict[str, np.ndarray], ks: Sequence[int]) -> dict[str, float]:
    """Recall@K and mean rank of each direction's ranks."""
    out = {}
    for direction, r in ranks.items():
        out.update({f"{direction}/R@{k}": v for k, v in metrics.recall_at_k(r, ks).items()})
        out[f"{direction}/mean_rank"] = float(np.mean(r))
    return out


def run(encoders: Encoders, data: BenchData, config: ml_collections.ConfigDict) -> dict[str, float]:
    """Retrieval metrics on every eval split, keys `<split>/i2t/R@1`, ..."""
    data.require("retrieval", ("image", "report"), data.eval_splits)
    if encoders.supervised:
        raise NotApplicable("a supervised reference has no trained text tower to retrieve with")
    out = {}
    for split_name in data.eval_splits:
        split = data.split(split_name)
        keep = np.array([bool(r.strip()) for r in split.reports])
        if not keep.any():
            raise ValueError(f"split {split_name!r} of dataset {data.name!r} has no non-empty "
                             "reports to retrieve")
        texts, inverse = merge_reports(encoders, [r for r, k in zip(split.reports, keep) if k])
        ranks = retrieval_ranks(encoders.embed_images(split.images[keep]),
                                encoders.embed_texts(texts), inverse)
        result = retrieval_metrics(ranks, tuple(config.ks))
        if config.get("out_dir"):  # per-query ranks, for paired tests between checkpoints
            save_arrays(os.path.join(config.out_dir, f"retrieval_ranks_{split_name}.npz"),
                        ids=np.asarray([i for i, k in zip(split.ids, keep) if k]), **ranks)
        result.update(n_images=float(keep.sum()), n_unique_texts=float(len(texts)),
                      n_empty_reports_skipped=float((~keep).sum()))
        out.update({f"{split_name}/{k}": v for k, v in result.items()})
    return out
