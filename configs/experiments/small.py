"""The full experiment: the five arms on synthetic_cxr/small (20k pairs), 3 seeds, mean and spread.

`chexficient quickstart --experiment=small --out=runs/small`. Hours on a CPU; minutes on an
accelerator. `small_clean.py` is the control where curation has little to remove.
"""

import ml_collections


def get_config(arg=None):
    del arg
    return ml_collections.ConfigDict(dict(
        dataset="synthetic_cxr/small", preset="small,batch_size=256,epochs=20",
        reference="small,batch_size=128,epochs=20", seeds=(0, 1, 2), bench="full,reference=0"))
