"""A FLOP ledger: XLA's cost analysis of each compiled step function times its calls.

It answers "what did this run cost, as a fraction of training on all the data for the same
epochs", counting every forward and backward, scoring passes included.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import jax


def compiled_flops(compiled) -> float:
    """FLOPs of one call of a compiled XLA executable on all its devices (0 where the backend
    gives no estimate). XLA's cost analysis counts one device's share of an SPMD program, so
    it is scaled by the device count: work replicated on every device counts on each."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else {}
    devices = max((s.num_devices for s in jax.tree.leaves(compiled.input_shardings)), default=1)
    return float((analysis or {}).get("flops", 0.0)) * devices


class FlopLedger:
    """Compiles each step function once, remembers each named step's FLOPs, and counts its calls.

    Names that share a jitted function (the `subset` phase trains with the `full` step) share
    its executable: one trace, one compilation. `compile_seconds` is the wall time this process
    spent tracing, lowering and compiling them (or reading them from the compilation cache).
    """

    def __init__(self):
        # (id(jitted), argument shapes) -> (jitted, executable): holding `jitted` keeps its id.
        self._executables: dict[tuple, tuple[Callable, Any]] = {}
        self._by_name: dict[str, Any] = {}
        self.flops_per_call: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.compile_seconds = 0.0

    def compiled(self, name: str, jitted: Callable, *args) -> Callable:
        """The executable of `jitted` for `name`'s arguments (lowered and compiled on first use;
        a name's arguments keep their shapes), with a call of `name` counted."""
        if name not in self._by_name:
            self.per_call(name, jitted, *args)
            self._by_name[name] = self._executable(jitted, args)
        self.calls[name] = self.calls.get(name, 0) + 1
        return self._by_name[name]

    def per_call(self, name: str, jitted: Callable, *args) -> float:
        """FLOPs of one call of `name`, compiling `jitted` on first use (no call is counted)."""
        if name not in self.flops_per_call:
            self.flops_per_call[name] = compiled_flops(self._executable(jitted, args))
        return self.flops_per_call[name]

    def _executable(self, jitted: Callable, args: tuple):
        leaves, treedef = jax.tree.flatten(args)
        key = (id(jitted), treedef, tuple((x.shape, x.dtype) for x in leaves))
        if key not in self._executables:
            start = time.perf_counter()
            self._executables[key] = (jitted, jitted.lower(*args).compile())
            self.compile_seconds += time.perf_counter() - start
        return self._executables[key][1]

    def spent(self) -> float:
        """FLOPs spent so far: each step's FLOPs per call times its calls."""
        return sum(self.flops_per_call.get(n, 0.0) * c for n, c in self.calls.items())

    def metrics(self, step: int) -> dict[str, float]:
        """The metrics-stream view: {"flops/spent": FLOPs so far}."""
        return {"flops/spent": self.spent()}

    def state(self) -> dict:
        """JSON-able, for the checkpoint: a resumed run keeps counting from here."""
        return {"flops_per_call": dict(self.flops_per_call), "calls": dict(self.calls)}

    def load(self, state: dict) -> None:
        """Restores the counts of `state()` from a checkpoint, to keep counting after a resume."""
        self.flops_per_call.update(state.get("flops_per_call", {}))
        self.calls.update(state.get("calls", {}))

    def summary(self, *, full_step_fn: Callable, state, batch, full_steps: int) -> dict[str, float]:
        """Spent FLOPs and their fraction of `full_steps` full-data steps on the same batch size."""
        baseline = self.per_call("full", full_step_fn, state, batch) * max(1, full_steps)
        spent = self.spent()
        return {"flops_spent": spent, "flops_full_data": baseline,
                "compute_fraction": spent / baseline if baseline else float("nan")}
