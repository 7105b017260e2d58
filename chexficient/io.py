"""Atomic file writes: a file appears whole under its name or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


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


def write_json_atomic(path: str, obj: Any) -> None:
    """`obj` as indented, key-sorted JSON (numpy scalars as floats), written atomically."""
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")
