"""The README's main job: five arms on synthetic_cxr/tiny, one seed, about 10 minutes on 2 CPU cores."""

import ml_collections


def get_config(arg=None):
    del arg
    return ml_collections.ConfigDict(dict(
        dataset="synthetic_cxr/tiny", preset="tiny,batch_size=64,epochs=6",
        reference="tiny,batch_size=64,epochs=6", seeds=(0,),
        bench="quick,max_eval=200,seg_steps=40,rg_steps=300,n_resamples=200,reference=0"))
