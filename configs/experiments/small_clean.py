"""Control for the full experiment: the same arms on a pool with no near-duplicates, no
mismatched reports and no degraded images (synthetic_cxr/small_clean), 3 seeds."""

import ml_collections


def get_config(arg=None):
    del arg
    return ml_collections.ConfigDict(dict(
        dataset="synthetic_cxr/small_clean", preset="small,batch_size=256,epochs=20",
        reference="small,batch_size=128,epochs=20", seeds=(0, 1, 2), bench="full,reference=0"))
