"""The downstream benchmark's config and its presets (`configs/bench.py` wraps `bench_config`).

Presets: `quick` runs every adapter on one tiny checkpoint in minutes on a 2-core CPU
(capped splits, short decoder training, few bootstrap resamples); `full` runs the protocols
at their usual sizes. Arguments after the preset override its values, e.g.
`:quick,max_train=256,reference=0`; any field can also be set with `--config.a.b=value`.
"""

from __future__ import annotations

import ml_collections

from chexficient.presets import parse_preset_arg

ADAPTERS = ("zero_shot", "retrieval", "linear_probe", "segmentation", "report_generation")

_EVERYTHING = dict(adapters="+".join(ADAPTERS), splits="test+test_shift",
                   probe_fractions="0.01+0.1+1", seg_fractions="0.01+0.1+1", decoding="greedy+beam")
PRESETS: dict[str, dict] = {
    "quick": dict(max_train=512, max_eval=256, n_resamples=100, draws=3, seg_steps=300,
                  seg_width=32, rg_steps=300, rg_width=96, rg_max_len=48, beams=2, samples=4,
                  overlays=3, reference=True, **_EVERYTHING),
    "full": dict(max_train=0, max_eval=0, n_resamples=1000, draws=5, seg_steps=2000,
                 seg_width=64, rg_steps=3000, rg_width=256, rg_max_len=96, beams=4, samples=16,
                 overlays=6, reference=True, **_EVERYTHING),
}
"""Multi-valued arguments join their values with '+': `adapters=zero_shot+retrieval`,
`splits=test`, `probe_fractions=0.01+1`."""


def _many(value: str, cast=str) -> tuple:
    return tuple(cast(v) for v in value.split("+") if v)


def _parse(arg: str | None) -> ml_collections.ConfigDict:
    return parse_preset_arg(arg, PRESETS, "quick", what="bench")


def bench_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """The bench config of a preset ("quick" or "full") plus `key=value` overrides."""
    a = _parse(arg)
    c = ml_collections.ConfigDict()
    c.preset = a.preset
    c.seed = 0
    c.batch_size = 64  # encoder inference batch
    c.adapters = _many(a.adapters)
    c.reference = a.reference  # add a randomly initialised encoder of the same architecture

    # Empty name: each checkpoint is evaluated on its own pretraining dataset (its config.data).
    # An eval split of downstream.data.OPTIONAL_SPLITS (test_shift: the synthetic world's other
    # site) that the dataset lacks is left out, so the default scores a real dataset on test.
    c.data = dict(name="", data_dir="", train_split="train", eval_splits=_many(a.splits),
                  max_examples=dict(train=a.max_train, default=a.max_eval), on_error="raise")

    c.zero_shot = dict(findings=(), uncertain_as=1,
                       prompts=(),  # () = zero_shot.RADIOLOGY_PROMPTS; or (pos, neg) templates
                       bootstrap=dict(n_resamples=a.n_resamples, level=0.95))
    c.retrieval = dict(ks=(1, 5, 10))
    c.linear_probe = dict(
        findings=(), uncertain_as=1, fractions=_many(a.probe_fractions, float), draws=a.draws, C=1.0,
        max_iter=1000,
        finetune=dict(enabled=False, steps=500, batch_size=32, learning_rate=1e-4))
    c.segmentation = dict(
        fractions=_many(a.seg_fractions, float), draws=a.draws,
        # Target name -> names of the dataset's mask channels (builders' MASK_CHANNELS), their
        # union; {} = the dataset's default targets (segmentation.MaskChannels).
        targets={}, finetune=False,
        steps=a.seg_steps, batch_size=16, learning_rate=1e-3, width=a.seg_width,
        image_skip=True, overlays=a.overlays)
    c.report_generation = dict(
        max_len=a.rg_max_len, width=a.rg_width, depth=2, heads=4, steps=a.rg_steps,
        batch_size=32, learning_rate=1e-3, decoding=_many(a.decoding), beams=a.beams,
        length_penalty=1.0, samples=a.samples)
    c.plots = True
    return c
