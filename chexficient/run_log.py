"""What a long job leaves in its workdir: metrics as JSONL and TensorBoard events, and plots.

TensorBoard events are written by tensorboardX, so no TensorFlow is needed to log or to view.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping

import numpy as np


class MetricWriter:
    """Appends `{"step": s, name: value, ...}` lines to metrics.jsonl and scalars to TensorBoard."""

    def __init__(self, workdir: str, *, tensorboard: bool = True):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "metrics.jsonl")
        _drop_torn_tail(self.path)
        self._file = open(self.path, "a", buffering=1)
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        values = {k: float(np.asarray(v)) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": int(step), **values}) + "\n")
        if self._tb is not None:
            for name, value in values.items():
                self._tb.add_scalar(name, value, int(step))

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _drop_torn_tail(path: str) -> None:
    """Cuts off a last line a killed process left half-written (no newline), so that a resumed
    run's rows start on a line of their own and the file stays valid JSONL."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def read_metrics(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metrics.jsonl -> {name: (steps, values)}; a resumed run's repeated steps keep the last value."""
    series: dict[str, dict[int, float]] = defaultdict(dict)
    with open(path) as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                step = row.pop("step")
                for name, value in row.items():
                    series[name][step] = value
    return {name: (np.array(sorted(v)), np.array([v[s] for s in sorted(v)])) for name, v in series.items()}


def plot_metrics(metrics_path: str, out_path: str, names: list[str] | None = None) -> str:
    """One panel per metric (every one by default) against step; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = read_metrics(metrics_path)
    names = [n for n in (names or sorted(series)) if n in series]
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    width, height = 4 * cols, 2.8 * rows
    # Fixed margins (inches) instead of tight_layout, which measured 1.3 s of a 2.8 s plot.
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, gridspec_kw=dict(
        left=0.5 / width, right=1 - 0.15 / width, bottom=0.45 / height, top=1 - 0.3 / height,
        wspace=0.35, hspace=0.65))
    for ax, name in zip(axes.flat, names):
        steps, values = series[name]
        # A metric logged once (a run shorter than log_every_steps) is a dot, not an empty panel.
        ax.plot(steps, values, lw=1.2, marker="o" if len(steps) == 1 else None, ms=4)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    tmp = out_path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, out_path)
    return out_path


class Throughput:
    """Training pairs/s between metric writes, and training seconds so far: the `perf/` metrics.

    Time spent inside `paused()` (evaluation, checkpoint saves) is left out, as big_vision's
    chrono does, so the rate is the train step's and comparable across eval settings.
    """

    def __init__(self, *, step: int, batch_size: int):
        self.batch_size, self._step = batch_size, step
        self._mark = time.perf_counter()
        self._train_s, self._interval_s, self._pairs = 0.0, 0.0, 0

    def set_batch_size(self, step: int, batch_size: int) -> None:
        """Steps from `step` on read `batch_size` pairs (a curate phase scores more than a batch)."""
        self._pairs += (step - self._step) * self.batch_size
        self.batch_size, self._step = batch_size, step

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        self._interval_s += time.perf_counter() - self._mark
        try:
            yield
        finally:
            self._mark = time.perf_counter()

    def measure(self, step: int) -> dict[str, float]:
        """Pairs/s since the last call (steps `self._step`..`step`) and the running train time."""
        now = time.perf_counter()
        seconds, self._mark = self._interval_s + now - self._mark, now
        self._train_s += seconds
        pairs = self._pairs + (step - self._step) * self.batch_size
        self._step, self._interval_s, self._pairs = step, 0.0, 0
        return {"perf/pairs_per_s": pairs / seconds if seconds > 0 else 0.0,
                "perf/train_s": self._train_s}


def note(message: str) -> None:
    """A plain stderr line that keeps a progress bar intact (tqdm redraws it below)."""
    from tqdm.auto import tqdm

    tqdm.write(message, file=sys.stderr)


class Progress:
    """A tqdm bar over steps showing loss, pairs/s and ETA; silent when disabled (other hosts)."""

    def __init__(self, *, total: int, initial: int, batch_size: int, enabled: bool = True):
        from tqdm.auto import tqdm

        self.batch_size = batch_size
        self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                         disable=not enabled)
        self._last = initial

    def set_total(self, total: int) -> None:
        self._bar.total = total
        self._bar.refresh()

    def update(self, step: int, metrics: Mapping[str, float]) -> None:
        self._bar.update(step - self._last)
        self._last = step
        rate = self._bar.format_dict.get("rate") or 0.0
        shown = {"loss": metrics.get("loss"), "kept": metrics.get("kept_fraction")}
        postfix = {k: f"{v:.3f}" for k, v in shown.items() if v is not None}
        postfix["pairs/s"] = f"{rate * self.batch_size:.0f}"
        self._bar.set_postfix(postfix, refresh=False)

    def close(self) -> None:
        self._bar.close()
