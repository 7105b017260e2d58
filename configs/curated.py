"""The default online curator: score = w_loss * loss score + w_rarity * prototype rarity.

`--config=configs/curated.py:tiny`. Rarity is the distance to the pair's prototype,
normalised within its cluster; outliers above `q_outlier` are dropped first. Selects
`loss.keep_fraction` of every super-batch for the whole run (continuous schedule).
"""

from pretrain.config import base_config


def get_config(arg: str | None = None):
    c = base_config(arg)
    c.curator.name = "combined"
    c.curator.loss.score = "learner"
    c.curator.loss.keep_fraction = 0.25
    c.schedule.name = "continuous"
    return c
