"""Offline baselines: choose a subset once, then train on it.

`--config=configs/offline.py:tiny,method=random,budget=0.25`; methods other than `random`
score the pool with a reference checkpoint: add `--config.reference.path=REF_WORKDIR`.
Methods: random, semdedup, ssl_prototypes, density, hierarchical_kmeans, clip_score.
"""

from pretrain.config import base_config, parse_arg


def get_config(arg: str | None = None):
    a = parse_arg(arg, method="random", budget=0.25)
    preset_args = ",".join(p for p in (arg or "").split(",") if not p.startswith(("method=", "budget=")))
    c = base_config(preset_args)
    c.schedule.name = "offline"
    c.schedule.offline = a.method
    c.schedule.budget = a.budget
    return c
