"""`chexficient train --config=configs/pretrain.py:tiny --workdir=DIR [--config.a.b=value ...]`.

Starting in a workdir that holds a checkpoint resumes it; the resolved config is written to
DIR/config.json. Mistyped config keys fail at launch, naming the key.
"""

from __future__ import annotations

import json

from absl import flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file and its argument, e.g. "
                                          "configs/pretrain.py:tiny,batch_size=128; then "
                                          "--config.a.b=value sets any field.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, plots).")
_STOP_AT = flags.DEFINE_integer("stop_at_step", None, "End early after checkpointing this step "
                                "(as a preemption would); rerun the same command to resume.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    """Trains (or resumes) the run of --config in --workdir; the first process prints its
    summary as JSON."""
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
    from pretrain.train import train

    summary = train(_CONFIG.value, _WORKDIR.value, stop_at_step=_STOP_AT.value)
    import jax  # initialised by `train` (jax.distributed first)

    if jax.process_index() == 0:  # one summary in a multi-host job's merged log
        print(json.dumps(summary, indent=2, sort_keys=True))
