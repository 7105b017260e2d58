"""`chexficient export-model --workdir=W --out=DIR [--step=N] [--force]`: the command around
`chexficient.export_model.export_model` (model.safetensors, config.json, tokenizer)."""

from __future__ import annotations

from absl import flags, logging

from chexficient.checkpoint import CheckpointError
from chexficient.export_model import ExportError, export_model

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (or its checkpoints/).")
_OUT = flags.DEFINE_string("out", None, "Folder to write the model to.")
_STEP = flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
_FORCE = flags.DEFINE_bool("force", False, "Replace OUT if it exists.")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.ERROR)  # orbax's restore reports are noise here
    try:
        info = export_model(_WORKDIR.value, _OUT.value, step=_STEP.value, force=_FORCE.value)
    except (ExportError, CheckpointError) as e:
        raise SystemExit(f"chexficient export-model: {e}") from None
    print(f"exported step {info['step']} of {info['workdir']} to {_OUT.value}")
