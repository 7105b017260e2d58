"""Spots a contrastive run sitting in the collapsed state, from the metrics it already logs.

Collapsed, every image and every report embed alike: each row's softmax over the batch is
uniform, so the loss is log(rows), chance, and its gradients are near zero, so plain training
does not leave it. A fresh model can fall into it within its first steps (too short a warm-up,
too few rows per step) and sit there for the whole run
(docs/pretraining.md#warm-up-and-the-collapsed-state).
"""

from __future__ import annotations

import dataclasses
import math
import os

from chexficient.run_log import read_metrics


@dataclasses.dataclass
class CollapseWatch:
    """Judges each logged step of a softmax-loss run: collapsed when, for `patience` logged
    steps in a row, the loss is within `loss_tol` of log(rows trained) and the gradient norm
    is under `grad_tol`. `update` returns a line to tell the user when the state changes."""

    batch_size: int
    patience: int = 3
    loss_tol: float = 0.01
    grad_tol: float = 0.1
    streak: int = 0
    since: int | None = None  # the first step of the current streak

    @property
    def collapsed(self) -> bool:
        """The verdict at the last step judged."""
        return self.streak >= self.patience

    def update(self, step: int, metrics: dict[str, float]) -> str | None:
        """Judges one logged step (`loss`, `grad_norm`, and `trained_rows` when curating)."""
        if "loss" not in metrics or "grad_norm" not in metrics:
            return None
        rows = metrics.get("trained_rows", self.batch_size)
        chance = math.log(max(rows, 2.0))
        at_chance = (abs(metrics["loss"] - chance) < self.loss_tol
                     and metrics["grad_norm"] < self.grad_tol)
        was = self.collapsed
        if at_chance:
            self.since = step if self.streak == 0 else self.since
            self.streak += 1
        else:
            self.streak, self.since = 0, None
        if self.collapsed and not was:
            return (f"step {step}: collapsed since step {self.since}: the loss sits at "
                    f"log({rows:.0f}) = {chance:.3f}, chance, with gradient norm "
                    f"{metrics['grad_norm']:.3f}; every embedding is alike. A longer warm-up "
                    "(optim.min_warmup_steps), a lower optim.lr or more rows per step (a larger "
                    "batch_size; when curating, schedule.curate_batch_size) get out of it "
                    "(docs/pretraining.md#warm-up-and-the-collapsed-state)")
        if was and not self.collapsed:
            return f"step {step}: out of the collapsed state (loss {metrics['loss']:.3f})"
        return None

    def replay(self, metrics_path: str, until: int) -> None:
        """Judges the steps a resumed run logged up to `until` (metrics.jsonl), silently, so
        that a run killed and resumed ends in the same state as one that ran through."""
        if not os.path.exists(metrics_path):
            return
        series = read_metrics(metrics_path)
        if "loss" not in series or "grad_norm" not in series:
            return
        rows = dict(zip(*series["trained_rows"])) if "trained_rows" in series else {}
        grads = dict(zip(*series["grad_norm"]))
        for step, loss in zip(*series["loss"]):
            if step <= until and step in grads:
                metrics = {"loss": loss, "grad_norm": grads[step]}
                if step in rows:
                    metrics["trained_rows"] = rows[step]
                self.update(int(step), metrics)
