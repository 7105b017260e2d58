"""Offline baselines: choose a subset once, then train on it.

`--config=configs/offline.py:tiny,method=random,budget=0.25`; methods other than `random`
score the pool with a reference checkpoint: add `--config.reference.path=REF_WORKDIR`.
Methods: random, semdedup, ssl_prototypes, density, hierarchical_kmeans, clip_score.
Their hyper-parameters (defaults: `curation.offline.default_args()`) are set under
`schedule.offline_args.<method>`, e.g. `--config.schedule.offline_args.semdedup.eps=0.1`
or `--config.schedule.offline_args.ssl_prototypes.keep=easy`; the run's `seed` seeds them.
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
