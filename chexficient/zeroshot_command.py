"""`chexficient zeroshot --checkpoint=W --images=... --out=probs.csv [--labels=a,b,c]`.

One row per image, one column per label: the probability of the label's positive prompt
against its negative one, as the benchmark scores zero-shot classification (the bench's
findings and prompts unless `--labels` / `--prompt` say otherwise).
"""

from __future__ import annotations

import functools
import math
import sys

from absl import flags

from chexficient import inference
from chexficient import inference_flags as common

flags.adopt_module_key_flags(common)  # `--help` lists the shared flags

_LABELS = flags.DEFINE_list("labels", [], "Labels to score (default: the bench's findings).")
_SCALE = flags.DEFINE_string("scale", "1", "Similarities are multiplied by this before the "
                             "softmax: 1 (the bench's and CheXzero's), a number, or 'model' "
                             "(the model's learned inverse temperature).")
_PROMPTS = flags.DEFINE_multi_string(
    "prompt", [], "A 'POSITIVE|NEGATIVE' template pair with {finding} or {Finding} "
    "(repeatable: the pairs' embeddings are averaged; default: the bench's pair).")


def _prompt_pairs() -> list[tuple[str, str]]:
    pairs = [tuple(p.split("|")) for p in _PROMPTS.value]
    bad = [p for p, pair in zip(_PROMPTS.value, pairs) if len(pair) != 2]
    if bad:
        raise SystemExit(f"--prompt must be 'POSITIVE|NEGATIVE', got {bad}")
    return pairs


def main(argv: list[str]) -> None:
    if common.TEXTS.value:  # a shared flag that would otherwise be ignored without a word
        raise SystemExit("zeroshot reads no --texts: name findings with --labels (and prompts "
                         "with --prompt); `chexficient retrieve` ranks the lines of a text file")
    labels = inference.label_names(_LABELS.value or None)  # checked before any image is read
    prompts = inference.prompt_pairs(_prompt_pairs())
    if _SCALE.value != "model":
        try:
            scale = float(_SCALE.value)
        except ValueError:
            scale = float("nan")
        if not math.isfinite(scale):
            raise SystemExit(f"--scale must be a finite number or 'model', got {_SCALE.value!r}")
    model = common.load_model()
    paths = common.images_from_flags(argv)
    if _SCALE.value == "model":
        scale = model.logit_scale
    result = common.embed(model, paths, read=functools.partial(
        model.read_and_score, labels=labels, prompts=prompts, scale=scale))
    rows = [[paths[i], *(f"{p:.6f}" for p in row)] for i, row in zip(result.kept, result.embeddings)]
    common.write_csv(common.OUT.value, ["image", *labels], rows)
    common.write_skipped(result)
    print(f"wrote {len(rows)} x {len(labels)} probabilities to {common.OUT.value}",
          file=sys.stderr)
