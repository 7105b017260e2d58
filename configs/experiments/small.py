"""The full experiment: the arms on synthetic_cxr/small (20k pairs), 3 seeds, mean and spread.

    chexficient quickstart --experiment=small --out=runs/small              # CPU scale
    chexficient quickstart --experiment=small:clean --out=runs/small_clean  # the control

Scales: `cpu` (default) trains the `tiny` model at 64 px for five epochs per arm (five, so the
CheXficient arm's curation epoch, which scores every pair, weighs under 30% of full-data
compute), without the loss-based arms (learnability, combined: each costs about 90% of
full-data training here; the quickstart runs them), about 20 minutes per seed on a 2-core CPU;
`accel` trains the `small` model at 128 px for 20 epochs with every arm and runs the `full`
benchmark, the size for one accelerator. `clean` uses synthetic_cxr/small_clean, a pool
without near-duplicates, mismatched reports or degraded images: the control where curation
has little to remove. `seeds=N` runs seeds 0..N-1 (default 3). Arguments combine:
`small:clean,accel,seeds=1`.
"""

import ml_collections

ALL_ARMS = ("full", "chexficient", "random", "learnability", "combined", "supervised")
SCALES = {
    "cpu": dict(preset="tiny,batch_size=128,epochs=5", reference="tiny,batch_size=64,epochs=8",
                arms=("full", "chexficient", "random", "supervised"), milestones=0.05,
                bench="quick,adapters=zero_shot+retrieval+linear_probe,max_train=1024,"
                      "max_eval=512,splits=test,probe_fractions=0.01,n_resamples=200"),
    "accel": dict(preset="small,batch_size=256,epochs=20", reference="small,batch_size=128,epochs=20",
                  arms=ALL_ARMS, milestones=0.05, bench="full,reference=0"),
}


def get_config(arg=None):
    words = [w for w in (arg or "").split(",") if w]
    seeds = [w for w in words if w.startswith("seeds=")]
    words = [w for w in words if not w.startswith("seeds=")]
    unknown = set(words) - set(SCALES) - {"clean"}
    if unknown or len(seeds) > 1:
        raise ValueError(f"unknown small experiment arguments {sorted(unknown) or seeds}; "
                         f"valid: {sorted(SCALES)}, 'clean' and one 'seeds=N'")
    count = int(seeds[0].split("=")[1]) if seeds else 3
    if count < 1:
        raise ValueError(f"small experiment: seeds={count}, need at least 1")
    scale = "accel" if "accel" in words else "cpu"
    dataset = "synthetic_cxr/small_clean" if "clean" in words else "synthetic_cxr/small"
    return ml_collections.ConfigDict(dict(dataset=dataset, seeds=tuple(range(count)),
                                          **SCALES[scale]))
