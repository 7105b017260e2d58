"""CheXficient's rule and schedule: prototype quantile curation for the first epoch, then the subset.

`--config=configs/chexficient.py:tiny`. The curator keeps pairs between the 85th and 95th
distance percentile of each of K=6 online prototypes, drops those above, and caps the
central rest at 10 per cluster by farthest-point sampling; kept ids form the frozen subset.
"""

from pretrain.config import base_config


def get_config(arg: str | None = None):
    c = base_config(arg)
    c.curator = dict(
        name="chexficient", num_prototypes=6, warmup_batches=10, kmeans_iters=20, ema_decay=0.9,
        sinkhorn_iters=3, sinkhorn_epsilon=0.5, q_outlier=0.95, q_support=0.85,
        max_per_cluster=10, central_sampling="farthest")
    c.schedule = dict(name="chexficient", curation_epochs=1.0, budget=0.0, offline="")
    return c
