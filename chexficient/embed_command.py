"""`chexficient embed --checkpoint=W --images=PATH_OR_GLOB... --out=emb.npz` (or `--texts=FILE`).

Writes `embeddings` [N, D] (unit rows, float32) with `paths` (or `texts`), one row per input
in order; see `chexficient.inference_flags` for inputs and unreadable images.
"""

from __future__ import annotations

import sys

import numpy as np

from absl import flags

from chexficient import inference_flags as common

flags.adopt_module_key_flags(common)  # `--help` lists the shared flags


def main(argv: list[str]) -> None:
    model = common.load_model()
    if common.TEXTS.value:
        if len(argv) > 1 or common.IMAGES.value:
            raise SystemExit("give --texts or images, not both")
        texts = common.texts_from_flags()
        common.write_npz(common.OUT.value, embeddings=model.embed_texts(texts),
                         texts=np.array(texts))
        print(f"wrote {len(texts)} text embeddings to {common.OUT.value}", file=sys.stderr)
        return
    paths = common.images_from_flags(argv)
    result = common.embed(model, paths)
    common.write_npz(common.OUT.value, embeddings=result.embeddings,
                     paths=np.array([paths[i] for i in result.kept]))
    common.write_skipped(result)
    print(f"wrote {len(result.kept)} image embeddings to {common.OUT.value}", file=sys.stderr)
