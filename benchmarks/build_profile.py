"""Where the synthetic world's build time goes: CPU milliseconds per record of each stage.

Times, on --images train records at --size px, the Python side of a record (its study: patient,
pose, report; its phantom), each jitted render stage on batches of the world's size (setup:
rays and shape coefficients; primitives: per-pixel intervals, blobs, the additive line
integral and the vessel texture; compose: lungs, fluid, noise, masks; detect: blur, unsharp
mask, grid, tone curve) and the zlib compression the TFDS writer applies to each mask. Each
batch goes through the stages in order, as in a build, --reps times over; on a busy machine
the shares are the figure to read. The build's own rate is benchmarks/build_throughput.py's.

    python benchmarks/build_profile.py [--images 256] [--size 128] [--reps 5]
"""

from __future__ import annotations

import argparse
import time
import zlib
from collections.abc import Callable

import jax

from chexficient.data.synthetic import render
from chexficient.data.synthetic.world import World, WorldConfig


def timed(seconds: dict[str, float], name: str, fn: Callable[[], object]):
    """fn() with its CPU time (all threads, device work included) added to seconds[name]."""
    start = time.process_time()
    out = jax.block_until_ready(fn())
    seconds[name] = seconds.get(name, 0.0) + time.process_time() - start
    return out


def make_batch(world: World, first: int, seconds: dict[str, float]) -> None:
    """Makes records first..first+batch-1 stage by stage, as World.records does, timing each."""
    size, split = world.config.image_size, "train"
    studies = timed(seconds, "study", lambda: [world.study(split, i) for i in
                                               range(first, first + world.config.batch)])
    phantoms = timed(seconds, "phantom", lambda: [world._phantom(s.patient, split) for s in studies])
    batch = render.stack(phantoms, [s.imaging for s in studies], [s.index for s in studies])
    setup = timed(seconds, "setup", lambda: render._setup_jit(batch, size=size))
    prims = timed(seconds, "primitives", lambda: render._primitives_jit(batch, setup, size=size))
    line, masks = timed(seconds, "compose", lambda: render._compose_jit(prims, batch, size=size))
    timed(seconds, "detect", lambda: jax.device_get(render._detect_jit(line, batch, size=size)))
    timed(seconds, "mask zlib", lambda: [zlib.compress(m.tobytes()) for m in jax.device_get(masks)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    world = World(WorldConfig(image_size=args.size, sizes={"train": args.images}))
    starts = range(0, args.images - world.config.batch + 1, world.config.batch)  # full batches
    make_batch(world, 0, {})  # compiles every stage
    seconds: dict[str, float] = {}
    for _ in range(args.reps):
        for first in starts:
            make_batch(world, first, seconds)
    records = args.reps * len(starts) * world.config.batch
    total = sum(seconds.values())
    for name, s in seconds.items():
        print(f"{name}: {1e3 * s / records:.3f} ms/record ({100 * s / total:.0f}%)")
    print(f"total: {1e3 * total / records:.3f} ms/record (CPU, all threads)")


if __name__ == "__main__":
    main()
