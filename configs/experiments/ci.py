"""The quickstart at test size: the micro world, two epochs, a trimmed benchmark (minutes)."""

import ml_collections


def get_config(arg=None):
    if arg:
        raise ValueError(f"the ci experiment takes no arguments, got {arg!r}")
    return ml_collections.ConfigDict(dict(
        dataset="synthetic_cxr/micro", preset="tiny,batch_size=64,epochs=2",
        reference="tiny,batch_size=32,epochs=2", seeds=(0,), milestones=0.25,
        # 4 curation steps (8 for combined): k-means after 1 (2) batches, so the rules select;
        # 3 central pairs per cluster, so the subset holds more than a batch.
        overrides=dict(chexficient=dict(curator=dict(prototypes=dict(warmup_batches=1),
                                                     chexficient=dict(max_per_cluster=3))),
                       combined=dict(curator=dict(prototypes=dict(warmup_batches=2)))),
        bench="quick,adapters=zero_shot+retrieval+linear_probe,max_train=128,max_eval=64,"
              "splits=test,probe_fractions=0.01,n_resamples=10"))
