"""CheXficient's rule and schedule: prototype quantile curation for the first epoch, then the subset.

`--config=configs/chexficient.py:tiny`. Per step the curator assigns each pair of the global
batch to one of K=6 online prototypes, drops pairs above the 95th distance percentile of
their cluster, keeps those between the 85th and 95th, and caps the central rest per cluster,
chosen by farthest-point sampling. Ids kept during `curation_epochs` form the frozen subset
the remaining epochs train on (docs/curation.md).

The paper caps the central pairs at 10 per cluster for its global batch of 480 (about 22.5%
kept). The kept share falls with the batch (docs/curation.md), so the cap here scales with
the scored batch, `round(10 * rows / 480)` (at least 1), to keep the paper's share at our
batch sizes; `--config.curator.chexficient.max_per_cluster=10` restores the literal rule.
The rule scores `batch_size` rows a step unless the preset argument `curate_batch_size=N`
gives more: at small batches (64) too few rows train per curate step for CLIP to learn,
and scoring 4x the batch trains about a batch (docs/curation.md). The cap follows the preset
arguments (`batch_size=`, `curate_batch_size=`); a `--config.batch_size` or
`--config.schedule.curate_batch_size` override leaves it at the preset's value.
"""

from pretrain.config import base_config


def get_config(arg: str | None = None):
    c = base_config(arg)
    c.curator.name = "chexficient"
    scored = c.schedule.curate_batch_size or c.batch_size
    c.curator.chexficient.max_per_cluster = max(1, round(10 * scored / 480))
    c.schedule.name = "chexficient"
    c.schedule.curation_epochs = 1.0
    return c
