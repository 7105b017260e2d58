"""Atomic writes: a file or a folder appears whole under its name or not at all."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np


def write_atomic(path: str, data: bytes | str) -> None:
    """Writes `data` to a temporary file beside `path` (mode 0644), then renames it into place."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-" + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(out: str, *, force: bool = False) -> Iterator[str]:
    """Yields a temporary folder beside `out` to fill; renames it to `out` when the block ends
    (replacing `out` only with `force`), or removes it when the block raises."""
    out = os.path.abspath(out)
    if os.path.exists(out) and not force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = tempfile.mkdtemp(dir=os.path.dirname(out), prefix=".tmp-" + os.path.basename(out))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json_atomic(path: str, obj: Any) -> None:
    """`obj` as indented, key-sorted JSON (numpy scalars as floats), written atomically."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def save_arrays(path: str, **arrays: Any) -> None:
    """numpy arrays as an .npz file, written atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
