"""Where the train step's time goes: XLA's own per-op trace, summed by kind of fused op.

Runs the same step as `train_throughput.py` under `jax.profiler` (with XLA's CPU op tracing
on) and prints milliseconds per step for each kind of fused op (`ynn_fusion`: matmuls handed
to YNNPACK; `multiply_tanh_fusion`: GELU; `copy_*`: transposes; ...), then the top ops.
On CPU the ops of one step run on several threads at once, so the sum exceeds the step time.

    python benchmarks/train_step_profile.py --preset tiny --batch 128
"""

from __future__ import annotations

import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_cpu_enable_xprof_traceme=true").strip()

import argparse  # noqa: E402
import collections  # noqa: E402
import glob  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402

from pretrain.standalone import random_batch  # noqa: E402
from train_throughput import build_step  # noqa: E402

HOST_EVENTS = re.compile(r"^\$|Thunk|Pjit|Slinky|Execute|ParseArguments")


def op_times(trace_dir: str, steps: int) -> collections.Counter:
    """Milliseconds per step of every XLA op in the perfetto trace written to `trace_dir`."""
    path = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)[0]
    with gzip.open(path) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    times: collections.Counter = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not HOST_EVENTS.search(event["name"]):
            times[event["name"]] += event.get("dur", 0) / 1000 / steps
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--stem", default="patch", choices=("patch", "conv"))
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    step, state, config = build_step(args.preset, args.batch, "float32", args.stem)
    batch = random_batch(config)
    for _ in range(3):
        state, _ = step(state, batch)
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(args.steps):
                state, _ = step(state, batch)
            jax.block_until_ready(state)
        times = op_times(trace_dir, args.steps)
    kinds: collections.Counter = collections.Counter()
    for name, ms in times.items():
        kinds[re.sub(r"(\.\d+)+$", "", name)] += ms
    total = sum(kinds.values())
    print(f"op time summed over threads: {total:.1f} ms/step")
    for kind, ms in kinds.most_common(args.top):
        print(f"{ms:8.1f} ms  {100 * ms / total:5.1f}%  {kind}")
    print("top ops:")
    for name, ms in times.most_common(args.top):
        print(f"{ms:8.2f} ms  {name}")


if __name__ == "__main__":
    main()
