"""`chexficient bench --checkpoints=DIR[,DIR...] --config=configs/bench.py:quick --out=OUT`.

The command around `downstream.suite.run_bench`; exit status 1 if any checkpoint or adapter
failed (the others still ran and are reported).
"""

from __future__ import annotations

import os

from absl import flags
from ml_collections import config_flags

from downstream.suite import run_bench

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                               "configs", "bench.py") + ":quick"

_CHECKPOINTS = flags.DEFINE_list("checkpoints", None, "Run directories (or their checkpoints/ or "
                                  "milestones/), each optionally PATH@STEP for one step.")
_OUT = flags.DEFINE_string("out", None, "Output directory for results and figures.")
_CONFIG = config_flags.DEFINE_config_file("config", _DEFAULT_CONFIG,
                                          "Bench config, e.g. configs/bench.py:quick.")


def main(argv: list[str]) -> int:
    """Runs the suite on --checkpoints into --out; returns 1 if any checkpoint or adapter failed."""
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _OUT.value:
        raise SystemExit("--out=DIR is required")
    summary = run_bench(_CHECKPOINTS.value or [], _CONFIG.value, _OUT.value)
    print(f"wrote {os.path.join(_OUT.value, 'results.md')}")
    return 1 if any(summary["errors"].values()) else 0
