"""`chexficient quickstart --out=DIR [--experiment=NAME[:ARG]]`: the headline experiment.

Builds the experiment's synthetic dataset, trains its arms, benchmarks them and writes the
table to DIR (see `chexficient.quickstart.run_quickstart`).
"""

from __future__ import annotations

from absl import flags

from chexficient.quickstart import experiment_names, run_quickstart

_OUT = flags.DEFINE_string("out", "runs/quickstart", "Directory for the arms, benchmark and table.")
_EXPERIMENT = flags.DEFINE_string(
    "experiment", "quickstart",
    "configs/experiments/NAME.py[:ARG]: " + ", ".join(experiment_names()) + ". quickstart "
    "(synthetic_cxr/tiny, ~10 min on a CPU), ci (tests), small (the full experiment: 3 seeds; "
    "small:clean is its control, small:accel its accelerator scale), large (accelerators).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset directory (else $CHEXFICIENT_DATA_DIR, "
                                "else ~/.cache/chexficient/data).")


def main(argv: list[str]) -> None:
    """Runs --experiment into --out (see `chexficient.quickstart.run_quickstart`)."""
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
    run_quickstart(_OUT.value, experiment=_EXPERIMENT.value, data_dir=_DATA_DIR.value)
