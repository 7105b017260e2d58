"""What the input pipeline costs the train step when both share a small machine's cores.

For the full-data arm's step and the CheXficient arm's curate step (configs/pretrain.py,
configs/chexficient.py at --preset and --batch on --dataset), times --steps steps in the
trainer's loop (batch to device, step, the step before's metrics read one step late) three
ways, interleaved --repeats times in one process (in turn, the order reversed every other
time):

- `memory`: one batch from the loader, read before and fed again every step (the bare step);
- `prefetched`: --steps batches from the loader, all read before the timing;
- `live`: batches read from the loader while the steps run, as in training.

Per step it prints milliseconds and CPU milliseconds (all threads of the process) per step,
each way's median over the repeats, and `live / prefetched`: the steady-state cost of reading,
augmenting and tokenising beside the step (the run's `perf/pairs_per_s` between metric writes
against the bare step). `prefetched / memory` near 1 says the batches' content does not change
the step's time. Like the `chexficient` command, the script restarts itself with huge pages
for malloc (chexficient/allocator.py).

    python benchmarks/pipeline_contention.py [--preset tiny] [--batch 64] [--steps 30]
        [--repeats 4] [--dataset synthetic_cxr/tiny] [--data_dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, Iterator

import jax
import numpy as np

from chexficient import allocator, parallel
from chexficient.data import pipeline, registry
from pretrain import standalone
from pretrain.steps import BATCH_KEYS
from pretrain.train import resolve
from run_throughput import arm_config

STEPS = {"full": ("full", "full"), "curate": ("chexficient", "curate")}
"""Step timed -> (arm whose config builds it, its name among the built steps)."""


def host_batches(loader: Iterator[dict]) -> Iterator[dict[str, np.ndarray]]:
    """The loader's batches, only the fields the train step reads."""
    for batch in loader:
        yield {k: v for k, v in batch.items() if k in BATCH_KEYS}


def timed_steps(step: Callable, state: dict, batches: Iterator[dict], steps: int, mesh
                ) -> tuple[float, float, dict]:
    """Wall and CPU seconds per step of `steps` calls in the trainer's loop; the state after."""
    wall, cpu, pending = time.perf_counter(), time.process_time(), None
    for _ in range(steps):
        state, metrics = step(state, parallel.host_to_global(next(batches), mesh))
        if pending is not None:
            jax.device_get(pending)
        pending = metrics
    jax.device_get(pending)
    jax.block_until_ready(state)
    return ((time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps, state)


def measure(name: str, args: argparse.Namespace, data_dir: str) -> dict[str, float]:
    """Median ms and CPU ms per step of step `name` fed from memory, prefetched and live."""
    arm, step_name = STEPS[name]
    run = argparse.Namespace(**{**vars(args), "steps": 0})  # the run: the preset's epochs
    config, _, parts, _ = resolve(arm_config(arm, run, data_dir))
    built = standalone.build(config, sum(part.size for part in parts))
    mesh = parallel.make_mesh(config.mesh)
    loader = host_batches(pipeline.make_loader(config.data, config.data.train_split, train=True,
                                               batch_size=config.batch_size, seed=config.seed))
    one = next(loader)
    state = built.state
    step = built.steps[step_name].lower(state, parallel.host_to_global(one, mesh)).compile()
    _, _, state = timed_steps(step, state, iter(lambda: one, None), 3, mesh)  # warm-up
    times: dict[str, list[tuple[float, float]]] = {"memory": [], "prefetched": [], "live": []}
    for repeat in range(args.repeats):
        read = [next(loader) for _ in range(args.steps)]
        ways = [("memory", iter(lambda: one, None)), ("prefetched", iter(read)), ("live", loader)]
        for way, source in ways[::-1] if repeat % 2 else ways:  # the order alternates
            wall, cpu, state = timed_steps(step, state, source, args.steps, mesh)
            times[way].append((wall, cpu))
    out = {}
    for way, pairs in times.items():
        out[f"{way}_ms"] = 1e3 * statistics.median(w for w, _ in pairs)
        out[f"{way}_cpu_ms"] = 1e3 * statistics.median(c for _, c in pairs)
    out["live_over_prefetched"] = out["live_ms"] / out["prefetched_ms"]
    out["prefetched_over_memory"] = out["prefetched_ms"] / out["memory_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--dataset", default="synthetic_cxr/tiny")
    parser.add_argument("--data_dir", default="", help="default: $CHEXFICIENT_DATA_DIR or the cache")
    args = parser.parse_args()
    allocator.reexec_with_huge_pages()
    data_dir = registry.resolve_data_dir(args.data_dir or None)
    registry.prepare(args.dataset, data_dir)
    results = {name: measure(name, args, data_dir) for name in STEPS}
    for name, r in results.items():
        print(f"{name}: " + " ".join(f"{k}={v:.4g}" for k, v in r.items()))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
