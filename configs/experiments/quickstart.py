"""The README's main job: every arm on synthetic_cxr/tiny, one seed, about 10 minutes on 2 CPU cores.

The bench runs what the table shows (zero-shot, retrieval and the 1% probe on the test split;
`chexficient bench` runs the dense adapters); milestones every 5% of full-data compute give
the equal-compute row and the learning curves.
"""

import ml_collections


def get_config(arg=None):
    if arg:
        raise ValueError(f"the quickstart experiment takes no arguments, got {arg!r}")
    return ml_collections.ConfigDict(dict(
        dataset="synthetic_cxr/tiny", preset="tiny,batch_size=64,epochs=6",
        reference="tiny,batch_size=64,epochs=6", seeds=(0,), milestones=0.05,
        # The CheXficient arm's curation epoch scores 512 pairs a step, about the paper's 480
        # (4 steps of the 2,048, the cap per cluster round(10 * 512 / 480) = 11, k-means after
        # the first): scoring the batch of 64 trains 7 to 10 pairs a step and ends in the
        # collapsed state in 4 of 5 seeds (docs/experiments.md#the-quickstart).
        overrides=dict(chexficient=dict(
            schedule=dict(curate_batch_size=512),
            curator=dict(chexficient=dict(max_per_cluster=11), prototypes=dict(warmup_batches=1)))),
        bench="quick,adapters=zero_shot+retrieval+linear_probe,max_eval=256,splits=test,"
              "probe_fractions=0.01,n_resamples=200"))
