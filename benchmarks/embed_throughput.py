"""`chexficient embed` throughput against decoding alone, in one process: prints images/s.

Writes N grey 1024 x 1024 8-bit PNGs (a ramp, a bright square and noise, about what a
radiograph costs to decode), then times over the same files, after a warm-up, in rounds
whose phases take turns (medians reported): decoding alone (the builders' reader in the same
thread pool), decoding plus preprocessing, and the embed command's code path (`Model.read_and_embed`: decode, preprocess, embed on
the devices). The goal is embedding at >= 70% of the decode-only rate. The model is a
randomly initialised `tiny` one (`--preset`), or `--checkpoint` (a run or an export).

    python benchmarks/embed_throughput.py [--n 1000] [--size 1024] [--preset tiny]
        [--checkpoint W] [--batch_size 32] [--workers 8] [--rounds 3] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from flax import nnx
from PIL import Image

from chexficient import inference
from chexficient.data.builders._common import ordered_map, read_pixels
from chexficient.data.tokenizer import Tokenizer
from chexficient.export_model import write_export
from chexficient.models import build_model
from pretrain.config import base_config

GOAL = 0.70


def write_pngs(folder: str, n: int, size: int) -> list[str]:
    """`n` distinct grey PNGs (reused when already there)."""
    rng = np.random.default_rng(0)
    base = np.linspace(0, 200, size, dtype=np.float32)[None, :].repeat(size, 0)
    base[size // 4: size // 2, size // 4: size // 2] = 255
    paths = []
    for i in range(n):
        path = os.path.join(folder, f"{i:05d}.png")
        if not os.path.exists(path):
            noise = rng.integers(0, 24, (size, size), dtype=np.uint8)
            Image.fromarray(np.clip(base + noise + i % 16, 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def random_model(preset: str, folder: str, batch_size: int, workers: int) -> inference.Model:
    """A randomly initialised model of `preset`, exported and loaded as the command loads one."""
    config = base_config(preset)
    corpus = ["Small left pleural effusion.", "No acute findings.", "Mild cardiomegaly."] * 20
    tokenizer = Tokenizer.train(corpus, os.path.join(folder, "bench"), vocab_size=64)
    config.model.text.vocab_size = tokenizer.vocab_size
    model = build_model(config.model, nnx.Rngs(0))
    write_export(model, config, tokenizer, os.path.join(folder, "model"), force=True)
    return inference.load(os.path.join(folder, "model"), batch_size=batch_size, workers=workers)


def rates(phases: dict, paths: list[str], rounds: int) -> dict[str, float]:
    """Images/s of each phase over `paths`: the median of `rounds` rounds, the phases taking
    turns within each round so that a change in the machine's load hits all of them."""
    seconds = {name: [] for name in phases}
    for _ in range(rounds):
        for name, fn in phases.items():
            start = time.perf_counter()
            fn(paths)
            seconds[name].append(time.perf_counter() - start)
    return {name: len(paths) / float(np.median(s)) for name, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the PNGs go (default: a temp dir)")
    args = parser.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="embed_throughput_")
    os.makedirs(folder, exist_ok=True)
    paths = write_pngs(folder, args.n, args.size)
    model = (inference.load(args.checkpoint, batch_size=args.batch_size, workers=args.workers)
             if args.checkpoint else
             random_model(args.preset, folder, args.batch_size, args.workers))

    def drain(fn):
        return lambda items: sum(1 for _ in ordered_map(fn, items, workers=args.workers))

    phases = {"decode": drain(read_pixels), "prepare": drain(model.preprocess),
              "embed": model.read_and_embed}
    for fn in phases.values():  # warm-up: compilation, first reads
        fn(paths[:2 * model.encoders.batch_size])
    load_before = os.getloadavg()[0]
    measured = rates(phases, paths, args.rounds)
    decode, prepare, embed = measured["decode"], measured["prepare"], measured["embed"]
    print(f"images={args.n} size={args.size} model={args.checkpoint or args.preset} "
          f"image_size={model.image_size} batch_size={model.encoders.batch_size} "
          f"workers={args.workers} rounds={args.rounds} cores={os.cpu_count()} "
          f"load_average={load_before:.1f}->{os.getloadavg()[0]:.1f}")
    print(f"decode_only={decode:.1f}/s decode_and_preprocess={prepare:.1f}/s "
          f"embed={embed:.1f}/s ratio_to_decode={embed / decode:.2f} "
          f"({'meets' if embed / decode >= GOAL else 'misses'} the {GOAL:.0%} goal)")


if __name__ == "__main__":
    main()
