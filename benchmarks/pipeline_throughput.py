"""Training input-pipeline throughput: prints `examples_per_s=<float>`.

Times `pipeline.make_loader` in training mode (read, validate, shuffle, augment, batch,
tokenize) after a warm-up, building the dataset first if needed. The target of issue 2 is
2,000 examples/s at 128 px on 2 cores; `ratio` is the measured rate over that target (>= 1
passes). Pin cores with taskset to measure a 2-core budget on a bigger machine. On a shared
machine, `examples_per_cpu_s` (CPU time of this process and grain's workers) is the steadier
figure.

With `--against_by_record R` it instead alternates, R times each in one process, the loader
as it is (whole batches read by their place in the stream) with the same loader reading
records one at a time (as it does with `on_error="skip"`), and prints each way's median
milliseconds and CPU milliseconds per batch and their ratios: what reading by the batch saves.

    python benchmarks/pipeline_throughput.py [--dataset synthetic_cxr/tiny] [--data_dir DIR]
        [--image_size 128] [--batch_size 128] [--workers 2] [--batches 40] [--warmup 5]
        [--against_by_record 0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import ml_collections
import psutil  # installed with tensorflow-datasets

from chexficient.data import pipeline, registry

TARGET_EXAMPLES_PER_S = 2000.0


def loader_config(args: argparse.Namespace) -> ml_collections.ConfigDict:
    """A training `config.data` with the pretraining configs' augmentation."""
    return ml_collections.ConfigDict(dict(
        name=args.dataset, data_dir=args.data_dir, image_size=args.image_size, text_len=64,
        vocab_size=4000, on_error="raise", subset="", worker_count=args.workers,
        read_threads=args.read_threads,
        augment=dict(enabled=True, crop_scale=(0.85, 1.0), rotate_deg=5.0, brightness=0.1,
                     contrast=0.1, noise_std=0.02)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="synthetic_cxr/tiny")
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--read_threads", type=int, default=0, help="0: the pipeline's default")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--against_by_record", type=int, default=0, metavar="R",
                        help="alternate with reading record by record, R times each")
    args = parser.parse_args()
    registry.prepare(args.dataset, args.data_dir)
    print(f"dataset={args.dataset} image_size={args.image_size} batch_size={args.batch_size} "
          f"workers={args.workers} read_threads={args.read_threads} "
          f"cores={len(os.sched_getaffinity(0))} load_avg={os.getloadavg()[0]:.1f}")
    if args.against_by_record:
        compare(args)
        return
    examples, wall, cpu = measure(loader_config(args), args)
    rate = examples / wall
    print(f"examples_per_s={rate:.1f}")
    print(f"ratio={rate / TARGET_EXAMPLES_PER_S:.2f} (target {TARGET_EXAMPLES_PER_S:.0f} "
          "examples/s at 128 px on 2 cores)")
    # On a shared machine the wall-clock rate depends on other load; CPU time does not.
    print(f"examples_per_cpu_s={examples / cpu:.1f} (this process and its workers: two "
          f"otherwise idle cores, kept busy, would give {2 * examples / cpu:.0f} examples/s)")


def measure(config: ml_collections.ConfigDict, args: argparse.Namespace
            ) -> tuple[int, float, float]:
    """Examples, wall seconds and CPU seconds of --batches batches after --warmup."""
    loader = pipeline.make_loader(config, "train", train=True, batch_size=args.batch_size,
                                  seed=0, shard=(0, 1))
    for _ in range(args.warmup):  # worker start-up and first reads
        next(loader)
    cpu_start, start = cpu_seconds(), time.perf_counter()
    examples = sum(len(next(loader)["index"]) for _ in range(args.batches))
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    loader.close()
    return examples, wall, cpu


def compare(args: argparse.Namespace) -> None:
    """Whole batches against record by record, alternated; medians of ms and CPU ms a batch."""
    ways = {"whole_batches": loader_config(args), "by_record": loader_config(args)}
    ways["by_record"].on_error = "skip"  # the loader then reads records one at a time
    times: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    for repeat in range(args.against_by_record):
        for way in (list(ways) if repeat % 2 == 0 else list(ways)[::-1]):
            _, wall, cpu = measure(ways[way], args)
            times[way].append((1e3 * wall / args.batches, 1e3 * cpu / args.batches))
    out = {}
    for way, pairs in times.items():
        out[f"{way}_ms"] = statistics.median(ms for ms, _ in pairs)
        out[f"{way}_cpu_ms"] = statistics.median(cpu for _, cpu in pairs)
    print(" ".join(f"{k}={v:.1f}" for k, v in out.items()))
    print(f"by_record_over_whole_batches: wall {out['by_record_ms'] / out['whole_batches_ms']:.3f}"
          f" cpu {out['by_record_cpu_ms'] / out['whole_batches_cpu_ms']:.3f}")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its live children (grain's workers)."""
    me = psutil.Process()
    processes = [me] + me.children(recursive=True)
    total = 0.0
    for p in processes:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


if __name__ == "__main__":  # grain's worker processes are spawned: they re-import this file
    main()
