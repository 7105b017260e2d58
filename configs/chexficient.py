"""CheXficient's rule and schedule: prototype quantile curation for the first epoch, then the subset.

`--config=configs/chexficient.py:tiny`. Per step the curator assigns each pair of the global
batch to one of K=6 online prototypes, drops pairs above the 95th distance percentile of
their cluster, keeps those between the 85th and 95th, and caps the central rest at 10 per
cluster by farthest-point sampling. Ids kept during `curation_epochs` form the frozen subset
the remaining epochs train on (reference/curation.md).
"""

from pretrain.config import base_config


def get_config(arg: str | None = None):
    c = base_config(arg)
    c.curator.name = "chexficient"
    c.schedule.name = "chexficient"
    c.schedule.curation_epochs = 1.0
    return c
