"""`chexficient quickstart --out=DIR [--size=default|ci]`: the command around `chexficient.quickstart`."""

from __future__ import annotations

from absl import flags, logging

from chexficient.quickstart import SIZES, run_quickstart

_OUT = flags.DEFINE_string("out", "runs/quickstart", "Directory for the arms, benchmark and table.")
_SIZE = flags.DEFINE_enum("size", "default", list(SIZES), "default: synthetic_cxr/tiny; "
                          "ci: the micro world with a trimmed benchmark (for tests).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset directory (else $CHEXFICIENT_DATA_DIR, "
                                "else ~/.cache/chexficient/data).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every arm.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)
    run_quickstart(_OUT.value, size=_SIZE.value, data_dir=_DATA_DIR.value, seed=_SEED.value)
