"""Orbax checkpoints of a run: model, optimizer, step, RNG, curator, ledger and data-iterator state.

One checkpoint holds items `model` (parameters only, so downstream tools restore just
that), `train` (everything else that makes resume exact), `data` (the grain iterator
state, JSON) and `meta` (resolved config and run phase). Orbax writes each step to a
temporary directory and renames it, so a checkpoint appears whole or not at all.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp

FINGERPRINT_KEYS = ("model", "loss", "data.name", "data.image_size", "data.text_len", "curator")
"""Config entries a checkpoint is bound to: resuming with other values is refused."""

MILESTONES = "milestones"
STEP_SEPARATOR = "@"
"""`PATH@STEP` names one step of a run's checkpoints (or of its milestones) wherever a model is loaded."""


class _ReadOnlyNotice(logging.Filter):
    """Drops orbax's warning that a reader's directory is read only: every read of a milestone
    or a checkpoint opens one, and the warning says only what was asked for."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Given directory is read only")


logging.getLogger("absl").addFilter(_ReadOnlyNotice())


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupt, incomplete, or from an incompatible config."""


def fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The structural part of a config, as plain JSON values."""
    full = json.loads(config.to_json())
    out = {}
    for key in FINGERPRINT_KEYS:
        value = full
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[key] = value
    return out


def config_diff(saved: dict, current: dict, names: tuple[str, str] = ("checkpoint", "config"),
                prefix: str = "") -> list[str]:
    """One line per key whose value differs between two JSON configs (nested keys dotted),
    naming both values with `names` ("KEY: checkpoint has A, config has B")."""
    lines = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += config_diff(a, b, names, f"{prefix}{key}.")
        elif a != b:
            lines.append(f"{prefix}{key}: {names[0]} has {a!r}, {names[1]} has {b!r}")
    return lines


class Checkpointer:
    """Saves every `every_steps` steps (asynchronously) and restores the latest, checking it first.

    `every_steps` <= 0 saves nothing periodically: only the forced saves (a phase's end) happen.
    """

    def __init__(self, directory: str, *, every_steps: int, max_to_keep: int, async_save: bool = True):
        self.directory = os.path.abspath(directory)
        self.every_steps = every_steps
        options = ocp.CheckpointManagerOptions(  # should_save() is the save policy
            max_to_keep=max_to_keep, enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True)
        self._manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_names=("model", "train", "data", "meta"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def should_save(self, step: int) -> bool:
        """At multiples of `every_steps`, or when the cluster signals a preemption."""
        periodic = self.every_steps > 0 and step % self.every_steps == 0
        return periodic or self._manager.reached_preemption(step)

    def save(self, step: int, model_state, train_state, data_state: dict, meta: dict,
             force: bool = False) -> bool:
        args = ocp.args.Composite(
            model=ocp.args.StandardSave(model_state), train=ocp.args.StandardSave(train_state),
            data=ocp.args.JsonSave(data_state), meta=ocp.args.JsonSave(meta))
        return self._manager.save(step, args=args, force=force)

    def restore(self, abstract_model, abstract_train, config: ml_collections.ConfigDict,
                step: int | None = None):
        """Returns (model_state, train_state, data_state, meta) of `step` (default: latest).

        Raises CheckpointError naming the directory and the cause when the checkpoint is
        unreadable or was written under a config with another model, data or curator.
        """
        step = self.latest_step() if step is None else step
        where = os.path.join(self.directory, str(step))
        try:
            meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # orbax raises many types for unreadable files
            raise CheckpointError(f"checkpoint {where} is corrupt or incomplete (its metadata "
                                  f"cannot be read: {type(e).__name__}: {e})") from e
        differences = config_diff(meta.get("fingerprint", {}), fingerprint(config))
        if differences:
            run = os.path.dirname(self.directory)
            raise CheckpointError(
                f"checkpoint {where} was written by an incompatible config (its model, loss, "
                "dataset or curator differ, so its state would be meaningless):\n  "
                + "\n  ".join(differences) + "\nTo continue that run, set those keys back "
                "(--config.KEY=VALUE). To train the changed config, use a new --workdir; add "
                f"--config.init_from.path={run} to start from that run's weights (where the "
                "model's shape is unchanged).")
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                model=ocp.args.StandardRestore(abstract_model),
                train=ocp.args.StandardRestore(abstract_train),
                data=ocp.args.JsonRestore()))
        except Exception as e:
            if "not compatible with the stored shape" in str(e):  # readable, but shaped otherwise
                raise CheckpointError(
                    f"checkpoint {where} holds state of other shapes than this config builds: a "
                    "curated run's state is shaped by the rows it scores a step, so set "
                    "batch_size and schedule.curate_batch_size back to the run's; every run's "
                    "ledger by its training pool (a value per record), so set data.subset and "
                    f"data.mixture back to the run's ({type(e).__name__}: {e})") from e
            raise CheckpointError(f"checkpoint {where} is corrupt or incomplete: "
                                  f"{type(e).__name__}: {e}") from e
        return restored["model"], restored["train"], restored["data"], meta

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


class Milestones:
    """Model-only checkpoints at every `spacing` of the full-data run's FLOPs, never deleted.

    They let a run be read at any compute it passed through: the full-data run at the compute a
    curated run spent (the equal-compute comparison), or any run's learning curve. Each is
    `milestones/<step>` (orbax: `model` and `meta` with step, FLOPs and compute fraction).
    """

    def __init__(self, directory: str, *, spacing: float, full_flops: float):
        if not 0 < spacing <= 1:
            raise ValueError(f"checkpoint.milestones={spacing}: a fraction of full-data compute in (0, 1]")
        self.directory, self.spacing, self.full_flops = os.path.abspath(directory), spacing, full_flops
        self._manager = ocp.CheckpointManager(
            self.directory, item_names=("model", "meta"),
            options=ocp.CheckpointManagerOptions(enable_async_checkpointing=True,
                                                 cleanup_tmp_directories=True))

    def _crossed(self, flops: float) -> int:
        """How many milestones `flops` has reached (a hair of float slack at the boundary)."""
        return int(math.floor(flops / (self.spacing * self.full_flops) + 1e-9))

    def maybe_save(self, step: int, flops_before: float, flops_after: float, model_state) -> bool:
        """Saves after the step that crossed a milestone (once, also across a resume)."""
        if self._crossed(flops_after) <= self._crossed(flops_before) or step in self._manager.all_steps():
            return False
        meta = dict(step=step, flops=flops_after, compute_fraction=flops_after / self.full_flops)
        return self._manager.save(step, args=ocp.args.Composite(
            model=ocp.args.StandardSave(model_state), meta=ocp.args.JsonSave(meta)), force=True)

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def milestones(path: str) -> list[dict]:
    """The milestones of a run (`workdir` or `workdir/milestones`), in step order: each
    {'step', 'flops', 'compute_fraction', 'path'} where `path` loads with `load_model`."""
    directory = path if os.path.basename(os.path.normpath(path)) == MILESTONES else os.path.join(path, MILESTONES)
    if not os.path.isdir(directory):
        return []
    reader = ocp.CheckpointManager(os.path.abspath(directory), item_names=("model", "meta"),
                                   options=ocp.CheckpointManagerOptions(
                                       read_only=True, save_interval_steps=0, create=False))
    out = []
    for step in sorted(reader.all_steps()):
        meta = reader.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        out.append(dict(meta, path=f"{os.path.abspath(directory)}{STEP_SEPARATOR}{step}"))
    return out


def split_step(path: str) -> tuple[str, int | None]:
    """('runs/full/milestones', 48) from 'runs/full/milestones@48'; (path, None) without a step."""
    base, sep, step = path.rpartition(STEP_SEPARATOR)
    if sep and step.isdigit():
        return base, int(step)
    return path, None


def _checkpoint_dir(path: str) -> str | None:
    path = split_step(path)[0]
    for candidate in (os.path.join(path, "checkpoints"), path):
        if os.path.isdir(candidate) and any(n.isdigit() for n in os.listdir(candidate)):
            return os.path.abspath(candidate)
    return None


def has_checkpoint(path: str) -> bool:
    """Whether a workdir (or a checkpoints/ directory) holds a checkpoint."""
    return _checkpoint_dir(path) is not None


def find_checkpoint_dir(path: str) -> str:
    """The absolute checkpoints/ directory of a workdir, or `path` itself if it is one (orbax
    reads absolute paths only); errors clearly when neither holds a checkpoint."""
    found = _checkpoint_dir(path)
    if found is None:
        raise CheckpointError(f"no checkpoint found in {path!r} (expected {path}/checkpoints/<step>/)")
    return found


RUN_TOKENIZER = "tokenizer.model"
"""The run's copy of its tokenizer, beside config.json: checkpoints carry their token ids."""


def run_dir(path: str) -> str:
    """The workdir of `path` (a workdir or its checkpoints/ directory)."""
    return os.path.dirname(find_checkpoint_dir(path).rstrip("/"))


def _reader(ckpt_dir: str) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(ckpt_dir, item_names=("model", "train", "data", "meta"),
                                 options=ocp.CheckpointManagerOptions(
                                     read_only=True, save_interval_steps=0, create=False))


def latest_step(path: str) -> int:
    """The last complete checkpoint step of a workdir (or of its checkpoints/ directory)."""
    return int(_reader(find_checkpoint_dir(path)).latest_step())


@functools.lru_cache(maxsize=8)
def _abstract_model(model_json: str) -> tuple:
    """(graphdef, parameter shapes on this process's first device, other state) of the model
    config `model_json`: traced once per architecture, not once per checkpoint (a learning
    curve loads every milestone of every arm of one architecture)."""
    from flax import nnx

    from chexficient.models import build_model

    model_config = ml_collections.ConfigDict(json.loads(model_json))
    abstract = nnx.eval_shape(lambda: build_model(model_config, nnx.Rngs(0)))
    graphdef, abstract_params, rest = nnx.split(abstract, nnx.Param, ...)
    here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # whatever mesh wrote it
    abstract_params = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here), abstract_params)
    return graphdef, abstract_params, rest


def load_model(path: str, step: int | None = None):
    """Restores a run's model for evaluation or init-from: returns (model, config).

    `path` is a workdir (with config.json and checkpoints/), its checkpoints/ or milestones/
    directory, optionally with `@STEP` (default: the latest step, or `step`). The parameters
    land on this process's first device, whatever mesh wrote them.
    """
    from flax import nnx

    path, at = split_step(path)
    step = at if step is None else step
    ckpt_dir = find_checkpoint_dir(path)
    config_path = os.path.join(run_dir(path), "config.json")
    if not os.path.exists(config_path):
        raise CheckpointError(f"{config_path} is missing: cannot rebuild the model of {path!r}")
    with open(config_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    graphdef, abstract_params, rest = _abstract_model(json.dumps(config.model.to_dict(),
                                                                 sort_keys=True))
    manager = _reader(ckpt_dir)
    step = manager.latest_step() if step is None else step
    if step not in manager.all_steps():
        raise CheckpointError(f"{ckpt_dir} has no checkpoint of step {step}; it has steps "
                              f"{sorted(manager.all_steps())}")
    try:
        params = manager.restore(step, args=ocp.args.Composite(
            model=ocp.args.StandardRestore(abstract_params)))["model"]
    except Exception as e:
        raise CheckpointError(f"checkpoint {ckpt_dir}/{step} cannot be read: "
                              f"{type(e).__name__}: {e}") from e
    if jax.tree.leaves(rest):
        raise CheckpointError("the model holds non-parameter state, which checkpoints do not keep")
    return nnx.merge(graphdef, params, rest), config
