"""CheXficient's rule and schedule: prototype quantile curation for the first epoch, then the subset.

`--config=configs/chexficient.py:tiny`. Per step the curator assigns each pair of the global
batch to one of K=6 online prototypes, drops pairs above the 95th distance percentile of
their cluster, keeps those between the 85th and 95th, and caps the central rest per cluster,
chosen by farthest-point sampling. Ids kept during `curation_epochs` form the frozen subset
the remaining epochs train on (docs/curation.md).

The paper caps the central pairs at 10 per cluster for its global batch of 480 (about 22.5%
kept). The kept share falls with the batch (docs/curation.md), so the cap here scales with
the batch, `round(10 * batch_size / 480)` (at least 1), to keep the paper's share at our
batch sizes; `--config.curator.chexficient.max_per_cluster=10` restores the literal rule.
"""

from pretrain.config import base_config


def get_config(arg: str | None = None):
    c = base_config(arg)
    c.curator.name = "chexficient"
    c.curator.chexficient.max_per_cluster = max(1, round(10 * c.batch_size / 480))
    c.schedule.name = "chexficient"
    c.schedule.curation_epochs = 1.0
    return c
