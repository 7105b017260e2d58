"""The downstream benchmark: `chexficient bench --config=configs/bench.py:quick` (or `full`).

Arguments after the preset override its values, e.g. `:quick,max_train=256,reference=0`;
any field can also be set with `--config.a.b=value` (see downstream/config.py).
"""

from downstream.config import bench_config


def get_config(arg: str | None = None):
    return bench_config(arg)
