"""The quickstart's preflight line: before anything trains, this machine's float32 matmul
peak, the FLOPs the experiment's training will spend and how long that should take.

Part of the quickstart's front door (it sees `pretrain`). It costs seconds: the peak is a few
large matmuls, and each FLOP count is XLA's cost analysis of a train step compiled on
abstract inputs (nothing is run).
"""

from __future__ import annotations

import dataclasses

import ml_collections

ARM_FRACTIONS = {"full": 1.0, "chexficient": 0.27, "random": 0.21, "learnability": 0.92,
                 "combined": 0.92, "supervised": 1.0}
"""Each arm's training FLOPs as a fraction of the full-data run's, as the quickstart measured
them (docs/experiments.md): CheXficient scores every pair of its first epoch and trains on the
~21% it keeps, the random subset trains on as many pairs without scoring, learnability and
the combined score run the reference model on every super-batch, the supervised reference
trains for the full run's FLOPs."""

ACHIEVED_FRACTION = 0.2
"""The share of the matmul peak whole training runs achieve. On the 2-core CPU
(docs/experiments.md, a peak of about 460 GFLOP/s) the quickstart's full arm trained 192
steps of 23 GFLOP (4.5 TFLOP) in 37 s of wall time, 0.26 of the peak, and the learnability
arms about as much; the short curated arms reached 0.1 to 0.15 (compilation, evaluation and
checkpoints weigh more in them). Over all arms that is a little above 0.2."""


@dataclasses.dataclass(frozen=True)
class Preflight:
    """The preflight's figures: peak FLOP/s, training FLOPs (one seed's full-data run and
    reference model, the whole experiment's) and the estimated training time."""

    peak_flops: float
    full_run_flops: float
    reference_flops: float
    total_flops: float
    seconds: float
    arms: tuple[str, ...]
    seeds: int

    def line(self) -> str:
        """One line: the peak, the FLOPs with the assumed arm fractions, the time estimate."""
        fractions = " + ".join(f"{arm} {_fraction(ARM_FRACTIONS[arm])}" for arm in self.arms)
        reference = (f", plus {self.reference_flops / 1e12:.2g} TFLOP for the reference model"
                     if self.reference_flops else "")
        seeds = f"{self.seeds} seed{'s' if self.seeds > 1 else ''}"
        return (f"preflight: float32 matmul peak {self.peak_flops / 1e9:.0f} GFLOP/s; training "
                f"will spend about {self.total_flops / 1e12:.2g} TFLOP (the full-data run's "
                f"{self.full_run_flops / 1e12:.2g} TFLOP x ({fractions}){reference}, x {seeds}): "
                f"about {_duration(self.seconds)} at {ACHIEVED_FRACTION:g} of the peak "
                "(the dataset build and the benchmark suite come on top)")


def _fraction(value: float) -> str:
    return f"{value:g}" if value == 1.0 else f"~{value:g}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def run_flops(config: ml_collections.ConfigDict) -> float:
    """Training FLOPs of a full-data run of `config` as the trainer counts them: XLA's FLOPs
    of one compiled full-data step times the steps of its epochs over its pool (the dataset
    must be built)."""
    from pretrain import standalone
    from pretrain.train import full_data_steps, resolve

    config, _, parts, _ = resolve(config)
    pool = sum(part.size for part in parts)
    return standalone.step_flops(config, pool) * full_data_steps(config, pool // config.batch_size)


def estimate(spec: ml_collections.ConfigDict, *, data_dir: str) -> Preflight:
    """The preflight of the quickstart experiment `spec` on the dataset built in `data_dir`."""
    from chexficient.machine import matmul_peak_flops
    from chexficient.quickstart import arm_config, experiment_arms, reference_config

    seed, arms = spec.seeds[0], experiment_arms(spec)
    full = run_flops(arm_config("full", spec, data_dir=data_dir, seed=seed, reference=""))
    reference = 0.0
    if {"learnability", "combined"} & set(arms):
        reference = run_flops(reference_config(spec, data_dir=data_dir, seed=seed))
    total = len(spec.seeds) * (full * sum(ARM_FRACTIONS[arm] for arm in arms) + reference)
    peak = matmul_peak_flops()
    return Preflight(peak_flops=peak, full_run_flops=full, reference_flops=reference,
                     total_flops=total, seconds=total / (ACHIEVED_FRACTION * peak), arms=arms,
                     seeds=len(spec.seeds))
