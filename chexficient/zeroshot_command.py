"""`chexficient zeroshot --checkpoint=W --images=... --out=probs.csv [--labels=a,b,c]`.

One row per image, one column per label: the probability of the label's positive prompt
against its negative one, as the benchmark scores zero-shot classification (the bench's
findings and prompts unless `--labels` / `--prompt` say otherwise).
"""

from __future__ import annotations

import sys

from absl import flags

from chexficient import inference_flags as common
from downstream.data import finding_names

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
    prompts = _prompt_pairs()
    if _SCALE.value != "model":
        try:
            float(_SCALE.value)
        except ValueError:
            raise SystemExit(f"--scale must be a number or 'model', got {_SCALE.value!r}") from None
    model = common.load_model()
    paths = common.images_from_flags(argv)
    result = common.embed(model, paths)
    labels = _LABELS.value or finding_names(())
    scale = model.logit_scale if _SCALE.value == "model" else float(_SCALE.value)
    probs = model.zero_shot_embeddings(result.embeddings, labels, prompts or None, scale=scale)
    rows = [[paths[i], *(f"{p:.6f}" for p in row)] for i, row in zip(result.kept, probs)]
    common.write_csv(common.OUT.value, ["image", *labels], rows)
    common.write_skipped(result)
    print(f"wrote {len(rows)} x {len(labels)} probabilities to {common.OUT.value}",
          file=sys.stderr)
