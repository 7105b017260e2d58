"""The README's main job: every arm on synthetic_cxr/tiny, one seed, about 10 minutes on 2 CPU cores.

The bench runs what the table shows (zero-shot, retrieval and the 1% probe on the test split;
`chexficient bench` runs the dense adapters); milestones every 5% of full-data compute give
the equal-compute row and the learning curves.
"""

import ml_collections


def get_config(arg=None):
    del arg
    return ml_collections.ConfigDict(dict(
        dataset="synthetic_cxr/tiny", preset="tiny,batch_size=64,epochs=6",
        reference="tiny,batch_size=64,epochs=6", seeds=(0,), milestones=0.05,
        # The CheXficient arm's curation epoch scores 128 rows a step (16 steps of the 2,048
        # pairs): at 64 it trains 7 to 19 rows a step and ends in the collapsed state. The
        # cap follows the scored batch (round(10 * 128 / 480)); k-means starts after 3 batches,
        # not 10, so the rule, not the warm-up's random pick, chooses for 13 of the 16 steps
        # (docs/experiments.md#the-quickstart).
        overrides=dict(chexficient=dict(
            schedule=dict(curate_batch_size=128),
            curator=dict(chexficient=dict(max_per_cluster=3), prototypes=dict(warmup_batches=3)))),
        bench="quick,adapters=zero_shot+retrieval+linear_probe,max_eval=256,splits=test,"
              "probe_fractions=0.01,n_resamples=200"))
