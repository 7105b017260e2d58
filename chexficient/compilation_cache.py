"""JAX's persistent compilation cache for the `chexficient` command: a train or eval step
compiled once is read back by every later run of the same program (the quickstart's arms share
most of theirs), instead of being compiled again.

The cache lives in $JAX_COMPILATION_CACHE_DIR when that is set, else in
~/.cache/chexficient/jax; CHEXFICIENT_COMPILATION_CACHE=0 turns it off. Entries are keyed by
the program, the JAX version and the devices, so a stale entry is never used. Every program
is stored, the small ones too: a model's initialisation alone is some forty programs of
50-100 ms each (3 s of a run's setup on a 2-core CPU, 0.6 s read back from the cache).
A process with several CPU devices compiles afresh (`off_for_cpu_collectives`).
"""

from __future__ import annotations

import os

ENV_OFF = "CHEXFICIENT_COMPILATION_CACHE"
DEFAULT_DIR = "~/.cache/chexficient/jax"


def enable(directory: str | None = None) -> str | None:
    """Points JAX at `directory` (default: the cache directory above; created if missing);
    returns it, or None when off."""
    if os.environ.get(ENV_OFF, "1") == "0":
        return None
    import jax

    directory = os.path.expanduser(
        directory or os.environ.get("JAX_COMPILATION_CACHE_DIR") or DEFAULT_DIR)
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return directory


def off_for_cpu_collectives() -> bool:
    """Turns the cache off in a process with several CPU devices; returns whether it did.

    A train step that XLA:CPU compiled for several devices of one process and that is read
    back from the cache deadlocks at its first step (its devices wait at different
    all-gathers, then abort; jax 0.10.2, 2 or 4 devices, default mesh), where the same
    program compiled afresh runs. Call it before the process's first compilation (JAX
    decides once whether to use the cache)."""
    import jax

    if jax.default_backend() != "cpu" or jax.local_device_count() == 1:
        return False
    jax.config.update("jax_enable_compilation_cache", False)
    return True
