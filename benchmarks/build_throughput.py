"""Build speed and memory of the synthetic world: prints images/s and peak RSS per stage.

Three figures at --size px: `render` (World.records alone: phantoms, projection, reports,
on --workers threads), `build` (the whole `synthetic_cxr` TFDS build to ArrayRecord, a train
split of --images records, timed after a warm-up build so that the one-off XLA compilation
is excluded) and the peak RSS of builds of --images and 4 x --images records, each in its own
process (flat memory: the second is not 4 times the first). The target is 1,000 images/s
at 128 px on a 2-core machine; `ratio` is the measured build rate over it. `cpu_ms`
is CPU time per image (all threads): on an idle machine the rate approaches cores / cpu_ms.

    python benchmarks/build_throughput.py [--images 2048] [--size 128] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

TARGET_IMAGES_PER_S = 1000.0


def _build(n: int, size: int, data_dir: str, name: str) -> None:
    from chexficient.data.builders.synthetic_cxr import SyntheticCxr, SyntheticCxrConfig

    config = SyntheticCxrConfig(name=name, train=n, validation=0, test=0, test_shift=0, image_size=size)
    SyntheticCxr(config=config, data_dir=data_dir, file_format="array_record").download_and_prepare()


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(images: int, size: int, workers: int) -> dict[str, float]:
    from chexficient.data.synthetic.world import World, WorldConfig

    world = World(WorldConfig(image_size=size, sizes={"train": images}))
    for _ in world.records("train", 0, 2 * world.config.batch, workers=workers):  # compile
        pass
    wall, cpu = _timed(lambda: sum(1 for _ in world.records("train", workers=workers)))
    out = {"render_images_per_s": images / wall, "render_cpu_ms": 1e3 * cpu / images}
    with tempfile.TemporaryDirectory() as tmp:
        _build(64, size, tmp, "warmup")
        wall, cpu = _timed(lambda: _build(images, size, tmp, "bench"))
    out.update(build_images_per_s=images / wall, build_cpu_ms=1e3 * cpu / images)
    return out


def peak_rss_mb(images: int, size: int) -> float:
    """Peak RSS of a fresh process that builds `images` records."""
    code = ("import sys, resource, tempfile; sys.path.insert(0, %r); import build_throughput as b; "
            "d = tempfile.mkdtemp(); b._build(%d, %d, d, 'rss'); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
            % (os.path.dirname(os.path.abspath(__file__)), images, size))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip_rss", action="store_true", help="skip the two peak-RSS builds")
    args = parser.parse_args()
    result = {"images": args.images, "size": args.size, "workers": args.workers, "cpus": os.cpu_count(),
              "load_avg_1m": os.getloadavg()[0]}
    result.update(measure(args.images, args.size, args.workers))
    result["ratio"] = result["build_images_per_s"] / TARGET_IMAGES_PER_S
    if not args.skip_rss:
        result["peak_rss_mb"] = peak_rss_mb(args.images, args.size)
        result["peak_rss_mb_4x"] = peak_rss_mb(4 * args.images, args.size)
    result["this_process_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for key, value in result.items():
        print(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
