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
        bench="quick,adapters=zero_shot+retrieval+linear_probe,max_eval=256,splits=test,"
              "probe_fractions=0.01,n_resamples=200"))
