"""`chexficient retrieve --checkpoint=W --images=... --texts=FILE --k=5 --out=top.csv`.

For each image, the `k` texts (one per line of FILE) closest to it: one CSV row per image and
rank with the text's line number among the texts (0-based), its cosine similarity and the text.
"""

from __future__ import annotations

import sys

from absl import flags

from chexficient import inference
from chexficient import inference_flags as common

flags.adopt_module_key_flags(common)  # `--help` lists the shared flags

_K = flags.DEFINE_integer("k", 5, "Texts per image.")


def main(argv: list[str]) -> None:
    if _K.value < 1:
        raise SystemExit(f"--k must be >= 1, got {_K.value}")
    texts = common.texts_from_flags()
    model = common.load_model()
    paths = common.images_from_flags(argv)
    text_embeddings = model.embed_texts(texts)  # before the images: a supervised model has none
    result = common.embed(model, paths)
    order, scores = inference.top_k(result.embeddings, text_embeddings, _K.value)
    rows = [[paths[i], rank + 1, int(t), f"{s:.6f}", texts[t]]
            for i, ranked, sims in zip(result.kept, order, scores)
            for rank, (t, s) in enumerate(zip(ranked, sims))]
    common.write_csv(common.OUT.value, ["image", "rank", "text_index", "similarity", "text"], rows)
    common.write_skipped(result)
    print(f"wrote the top {order.shape[1]} of {len(texts)} texts for {len(result.kept)} images "
          f"to {common.OUT.value}", file=sys.stderr)
