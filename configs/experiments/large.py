"""The five arms on synthetic_cxr/large (200k pairs) with the `base` model: for accelerators."""

import ml_collections


def get_config(arg=None):
    if arg:
        raise ValueError(f"the large experiment takes no arguments, got {arg!r}")
    return ml_collections.ConfigDict(dict(
        dataset="synthetic_cxr/large", preset="base,batch_size=480,epochs=20",
        reference="base,batch_size=480,epochs=20", seeds=(0, 1, 2), bench="full,reference=0"))
