"""The synthetic world's renderer against another git revision's, in one process.

Loads chexficient/data/synthetic/ as it was at --rev (`git show`) as a separate package,
renders the same --images records of the current world at --size with both renderers,
checks that their images and masks are byte-identical, then times both batch by batch,
alternating which goes first, and prints CPU milliseconds per record and `speedup` (the
revision's time over the working tree's). Timing both in one process, interleaved, keeps
the ratio meaningful on a machine that is busy with other work.

    python benchmarks/render_against.py --rev HEAD~1 [--images 256] [--size 128] [--reps 6]
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path


from chexficient.data.synthetic import render
from chexficient.data.synthetic.world import World, WorldConfig

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "chexficient/data/synthetic"


def load_revision(rev: str, into: str):
    """The render module of `rev`: its synthetic package written to `into` as `synthetic_rev`."""
    git = lambda *a: subprocess.run(["git", "-C", str(ROOT), *a], check=True,  # noqa: E731
                                    capture_output=True, text=True).stdout
    target = Path(into) / "synthetic_rev"
    target.mkdir()
    for path in git("ls-tree", "--name-only", f"{rev}:{PACKAGE}").split():
        if path.endswith(".py"):
            source = git("show", f"{rev}:{PACKAGE}/{path}")
            (target / path).write_text(source.replace("chexficient.data.synthetic", "synthetic_rev"))
    sys.path.insert(0, into)
    return importlib.import_module("synthetic_rev.render")


def batches(images: int, size: int) -> list[dict]:
    """Stacked render batches of the first `images` train records (the world's batch size)."""
    world = World(WorldConfig(image_size=size, sizes={"train": images}))
    return [world.render_input("train", first)[1] for first in range(0, images, world.config.batch)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", required=True, help="git revision to compare against")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--reps", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        renderers = {"rev": load_revision(args.rev, tmp).render, "new": render.render}
        work = batches(args.images, args.size)
        for batch in work:  # compiles both, and checks every byte
            old, new = (fn(batch, args.size) for fn in renderers.values())
            if old[0].tobytes() != new[0].tobytes() or old[1].tobytes() != new[1].tobytes():
                raise SystemExit(f"the renderers differ on a batch at {args.size} px")
        print(f"identical: {len(work) * len(work[0]['seed'])} records at {args.size} px")
        seconds = dict.fromkeys(renderers, 0.0)
        for rep in range(args.reps):
            for k, batch in enumerate(work):
                for name in (list(renderers) if (k + rep) % 2 else list(renderers)[::-1]):
                    start = time.process_time()
                    renderers[name](batch, args.size)
                    seconds[name] += time.process_time() - start
    records = args.reps * len(work) * len(work[0]["seed"])
    print(f"cpu_ms_per_record rev={1e3 * seconds['rev'] / records:.3f} "
          f"new={1e3 * seconds['new'] / records:.3f} speedup={seconds['rev'] / seconds['new']:.3f}")


if __name__ == "__main__":
    main()
