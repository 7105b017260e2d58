"""Draws the README figure: 16 synthetic studies, one focused on each finding, with masks.

Renders the first 16 records of the world's stratified `test` split (record i shows finding
i mod 14: No Finding, then each observation) plus two of the held-out `test_shift` site, and
writes them with `chexficient.data.visualize.save_grid`.

    python benchmarks/synthetic_grid.py [--out docs/synthetic_grid.png] [--size 256] [--seed 0]
"""

from __future__ import annotations

import argparse

from chexficient.data.synthetic.world import World, WorldConfig
from chexficient.data.visualize import save_grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs/synthetic_grid.png")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    world = World(WorldConfig(seed=args.seed, image_size=args.size, sizes={"test": 14, "test_shift": 2}))
    records = list(world.records("test")) + list(world.records("test_shift"))
    save_grid(records, args.out, n=16)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
