"""The full experiment: the five arms on synthetic_cxr/small (20k pairs), 3 seeds, mean and spread.

    chexficient quickstart --experiment=small --out=runs/small              # CPU scale
    chexficient quickstart --experiment=small:clean --out=runs/small_clean  # the control

Scales: `cpu` (default) trains the `tiny` model at 64 px for two epochs per arm, about half an
hour per pool on a 2-core CPU; `accel` trains the `small` model at 128 px for 20 epochs and
runs the `full` benchmark, the size for one accelerator. `clean` uses synthetic_cxr/small_clean,
a pool without near-duplicates, mismatched reports or degraded images: the control where
curation has little to remove. Arguments combine: `small:clean,accel`.
"""

import ml_collections

SCALES = {
    "cpu": dict(preset="tiny,batch_size=128,epochs=2", reference="tiny,batch_size=64,epochs=8",
                bench="quick,max_train=1024,max_eval=512,seg_steps=60,rg_steps=100,"
                      "n_resamples=200,reference=0"),
    "accel": dict(preset="small,batch_size=256,epochs=20", reference="small,batch_size=128,epochs=20",
                  bench="full,reference=0"),
}


def get_config(arg=None):
    words = [w for w in (arg or "").split(",") if w]
    unknown = set(words) - set(SCALES) - {"clean"}
    if unknown:
        raise ValueError(f"unknown small experiment arguments {sorted(unknown)}; "
                         f"valid: {sorted(SCALES)} and 'clean'")
    scale = "accel" if "accel" in words else "cpu"
    dataset = "synthetic_cxr/small_clean" if "clean" in words else "synthetic_cxr/small"
    return ml_collections.ConfigDict(dict(dataset=dataset, seeds=(0, 1, 2), **SCALES[scale]))
