"""Per-example loss selection: learner loss, RHO-LOSS / learnability with a reference model.

`--config=configs/learnability.py:tiny` (learner loss, no reference) or add
`--config.curator.loss.score=learnability --config.reference.path=REF_WORKDIR`.
Keeps `loss.keep_fraction` of every super-batch, by top-k or temperature sampling.
"""

from pretrain.config import base_config


def get_config(arg: str | None = None):
    c = base_config(arg)
    c.curator.name = "loss"
    c.curator.loss.score = "learner"
    c.curator.loss.keep_fraction = 0.25
    c.schedule.name = "continuous"
    return c
