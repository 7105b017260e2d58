"""Training-pipeline throughput (read, validate, augment, tokenize, batch): prints `examples_per_s=<float>`.

Builds the dataset if needed, then times `pipeline.make_loader` in training mode (shuffle and
augmentation on) after a warm-up. The target of issue 2 is 2,000 examples/s at 128 px on
2 cores; `ratio` is the measured rate over that target (>= 1 passes). Pin cores with taskset
to measure a 2-core budget on a bigger machine.

    python benchmarks/pipeline_throughput.py [--dataset synthetic_cxr/tiny] [--data_dir DIR]
        [--image_size 128] [--batch_size 128] [--workers 2] [--batches 40] [--warmup 5]
"""

from __future__ import annotations

import argparse
import os
import time

import ml_collections

from chexficient.data import pipeline, registry

TARGET_EXAMPLES_PER_S = 2000.0


def loader_config(args: argparse.Namespace) -> ml_collections.ConfigDict:
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
    parser.add_argument("--read_threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    registry.prepare(args.dataset, args.data_dir)
    loader = pipeline.make_loader(loader_config(args), "train", train=True,
                                  batch_size=args.batch_size, seed=0, shard=(0, 1))
    for _ in range(args.warmup):  # worker start-up and first reads
        next(loader)
    start = time.perf_counter()
    examples = sum(len(next(loader)["index"]) for _ in range(args.batches))
    rate = examples / (time.perf_counter() - start)
    loader.close()
    print(f"dataset={args.dataset} image_size={args.image_size} batch_size={args.batch_size} "
          f"workers={args.workers} read_threads={args.read_threads} "
          f"cores={len(os.sched_getaffinity(0))}")
    print(f"examples_per_s={rate:.1f}")
    print(f"ratio={rate / TARGET_EXAMPLES_PER_S:.2f} (target {TARGET_EXAMPLES_PER_S:.0f} "
          "examples/s at 128 px on 2 cores)")


if __name__ == "__main__":  # grain's worker processes are spawned: they re-import this file
    main()
