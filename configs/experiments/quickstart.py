"""The README's main job: every arm on synthetic_cxr/tiny, one seed, about 10 minutes on 2 CPU cores.

The bench reads only what the table shows (the test split, the 1% probe, Dice with all masks,
greedy reports); milestones every 5% of full-data compute give the equal-compute row and the
learning curves.
"""

import ml_collections


def get_config(arg=None):
    del arg
    return ml_collections.ConfigDict(dict(
        dataset="synthetic_cxr/tiny", preset="tiny,batch_size=64,epochs=6",
        reference="tiny,batch_size=64,epochs=6", seeds=(0,), milestones=0.05,
        bench="quick,max_eval=256,splits=test,probe_fractions=0.01,seg_fractions=1,"
              "decoding=greedy,seg_steps=60,rg_steps=300,n_resamples=200"))
