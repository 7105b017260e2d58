"""What `chexficient embed`, `zeroshot` and `retrieve` share: flags, input lists and outputs.

Images are given as paths, globs or folders (searched recursively for PNG / JPEG / DICOM),
with `--images` or as extra arguments (what a shell makes of an unquoted glob). Outputs are
written atomically; with `--skip_bad` unreadable images are left out, counted and listed in
OUT.skipped.tsv, else the first one stops the command with its name.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import sys
import time
from collections.abc import Sequence

import numpy as np
from absl import flags, logging

from chexficient import inference
from chexficient.data.builders._common import ImageError
from chexficient.io import write_atomic

CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A run workdir (its latest checkpoint), a "
                                 "checkpoint directory, or a folder from `export-model`.")
STEP = flags.DEFINE_integer("step", None, "Checkpoint step of a run (default: the latest).")
IMAGES = flags.DEFINE_multi_string("images", [], "Image files, globs or folders (repeatable).")
TEXTS = flags.DEFINE_string("texts", None, "embed, retrieve: a text file with one report or "
                            "prompt per line (blank lines ignored).")
OUT = flags.DEFINE_string("out", None, "Output file.")
SKIP_BAD = flags.DEFINE_bool("skip_bad", False, "Leave out unreadable images, listing them in "
                             "OUT.skipped.tsv, instead of stopping at the first.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images or texts per batch, split over this "
                                  "machine's devices (rounded up to a multiple of their count).")
WORKERS = flags.DEFINE_integer("workers", 8, "Threads decoding images ahead of the model.")
flags.mark_flags_as_required(["checkpoint", "out"])


def image_paths(items: Sequence[str]) -> list[str]:
    """Paths in the given order: a folder's image files sorted, a glob's matches sorted (none
    is an error), any other item as it is (reading it later says whether it exists)."""
    paths = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(os.path.join(root, name) for root, _, names in os.walk(item)
                           for name in names if name.lower().endswith(inference.IMAGE_SUFFIXES))
            if not found:
                raise SystemExit(f"folder {item} holds no {'/'.join(inference.IMAGE_SUFFIXES)} file")
            paths += found
        elif glob.has_magic(item):
            found = sorted(glob.glob(item, recursive=True))
            if not found:
                raise SystemExit(f"no file matches {item!r}")
            paths += found
        else:
            paths.append(item)
    return paths


def images_from_flags(argv: Sequence[str]) -> list[str]:
    """The images of `--images` and of the extra command-line arguments."""
    paths = image_paths([*IMAGES.value, *argv[1:]])
    if not paths:
        raise SystemExit("no images given: pass --images=PATH_OR_GLOB (or paths after the flags)")
    return paths


def texts_from_flags() -> list[str]:
    """The non-empty lines of --texts."""
    if not TEXTS.value:
        raise SystemExit("--texts=FILE is required")
    if not os.path.isfile(TEXTS.value):
        raise SystemExit(f"--texts={TEXTS.value}: no such file")
    with open(TEXTS.value, encoding="utf-8") as f:
        texts = [line.strip() for line in f if line.strip()]
    if not texts:
        raise SystemExit(f"{TEXTS.value} holds no text")
    return texts


def load_model() -> inference.Model:
    """The model of the flags; the command prints its own summary, so library logs below
    errors (orbax's restore reports) are silenced."""
    logging.set_verbosity(logging.ERROR)
    return inference.load(CHECKPOINT.value, step=STEP.value, batch_size=BATCH_SIZE.value,
                          workers=WORKERS.value)


def embed(model: inference.Model, paths: list[str], read=None) -> inference.ImageEmbeddings:
    """Embeds `paths` (or scores them: `read`, default `model.read_and_embed`) with a progress
    bar, prints the rate; a bad image stops the command naming it unless --skip_bad."""
    read = read or model.read_and_embed
    start = time.perf_counter()
    try:
        result = read(paths, skip_bad=SKIP_BAD.value, progress=True)
    except ImageError as e:
        raise SystemExit(f"{e}\n(pass --skip_bad to leave unreadable images out)") from None
    seconds = time.perf_counter() - start
    print(f"embedded {len(result.kept)} images in {seconds:.1f} s "
          f"({len(result.kept) / max(seconds, 1e-9):.1f} images/s)", file=sys.stderr)
    if not len(result.kept):
        raise SystemExit(f"none of the {len(paths)} images could be read; first: "
                         f"{result.skipped[0].why}")
    return result


def write_skipped(result: inference.ImageEmbeddings) -> None:
    """OUT.skipped.tsv listing the skipped images, when any were."""
    if result.skipped:
        path = OUT.value + ".skipped.tsv"
        lines = [f"{s.name}\t{s.why}".replace("\n", " ") for s in result.skipped]
        write_atomic(path, "image\twhy\n" + "\n".join(lines) + "\n")
        print(f"skipped {len(result.skipped)} unreadable images, listed in {path}",
              file=sys.stderr)


def write_npz(path: str, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())
