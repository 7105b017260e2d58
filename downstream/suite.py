"""The benchmark suite: every configured adapter on every checkpoint, side by side.

Runs every configured adapter on every checkpoint (plus, optionally, a randomly initialised
encoder of the same architecture as the reference column), each on the eval splits, and
writes OUT/results.json, OUT/results.md, OUT/results.csv, OUT/config.json and the figures. A checkpoint that
cannot be read, or an adapter that fails (e.g. a dataset without the fields it needs), is
reported with the names of both; everything else still runs. Each finished cell (column x
adapter) is kept with the digest of its inputs, so an interrupted bench rerun into the same
OUT reuses the cells it finished and recomputes only those missing or of another config; the
files of cells not finished by the run (a column or adapter dropped, a failure) are removed,
so OUT holds exactly the run's columns x adapters.
"""

from __future__ import annotations

import glob
import hashlib
import importlib
import json
import os
import pkgutil
import shutil
import time
from collections.abc import Callable, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from tqdm.auto import tqdm

import downstream
from chexficient import checkpoint, export_model
from chexficient.data import mixture
from chexficient.findings import FINDINGS
from chexficient.io import write_atomic
from downstream import plots, report
from downstream.data import BenchData
from downstream.encoders import Encoders, NotApplicable

REFERENCE = "random_init"
CELL = "result.json"
"""Each finished cell's metrics, in `OUT/<column>/<adapter>/`, with the digest of what made
them: a rerun into the same OUT reuses a cell whose digest matches and recomputes the others."""

def column_names(paths: Sequence[str]) -> list[str]:
    """Short, unique column names: the run directory's name, `-milestones` for a milestone and
    `@STEP` where the path names a step (`runs/full/milestones@48` -> `full-milestones@48`),
    numbered when names repeat."""
    def name(path: str) -> str:
        base, step = checkpoint.split_step(path)
        base = os.path.normpath(base)
        folder = os.path.basename(base) or base
        if folder in ("checkpoints", checkpoint.MILESTONES):
            run = os.path.basename(os.path.dirname(base))
            folder = run + ("-milestones" if folder == checkpoint.MILESTONES else "")
        return folder + (f"{checkpoint.STEP_SEPARATOR}{step}" if step is not None else "")

    base = [name(p) for p in paths]
    return [b if base.count(b) == 1 else f"{b}#{i + 1}" for i, b in enumerate(base)]


def expand_milestones(paths: Sequence[str]) -> list[str]:
    """`paths` with each run's milestones folder named without a step (`runs/full/milestones`)
    replaced by every milestone it holds, in step order (`runs/full/milestones@48`, ...): one
    column per milestone, a run's downstream learning curve. Other paths are kept as given."""
    out = []
    for path in paths:
        base, step = checkpoint.split_step(path)
        found = (checkpoint.milestones(base) if step is None and
                 os.path.basename(os.path.normpath(base)) == checkpoint.MILESTONES else [])
        out += ([f"{os.path.normpath(base)}{checkpoint.STEP_SEPARATOR}{m['step']}" for m in found]
                or [path])
    return out


def read_at(path: str) -> dict[str, float]:
    """The step a checkpoint path is read at ({'step'}: a run's latest unless named, an
    export's), and a milestone's `compute_fraction` of full-data training; {} if unreadable
    (the column's error says why)."""
    base, step = checkpoint.split_step(path)
    try:
        if os.path.basename(os.path.normpath(base)) == checkpoint.MILESTONES:
            found = {m["step"]: m for m in checkpoint.milestones(base)}
            m = found[max(found) if step is None else step]
            return dict(step=m["step"], compute_fraction=m["compute_fraction"])
        if export_model.is_export(path):
            with open(os.path.join(path, "config.json")) as f:
                return dict(step=json.load(f)["export"]["step"])
        return dict(step=checkpoint.latest_step(path) if step is None else step)
    except (checkpoint.CheckpointError, KeyError, ValueError, OSError):
        return {}


def _source(path: str, at: dict[str, float]) -> str:
    """`path (step S, F of full-data compute)` for results.md's list of columns."""
    parts = ([f"step {at['step']}"] if "step" in at else []) + (
        [f"{at['compute_fraction']:.3f} of full-data compute"] if "compute_fraction" in at else [])
    return f"{path} ({', '.join(parts)})" if parts else path


def adapter_names() -> list[str]:
    """Every adapter of the package: the modules `downstream.<name>` with a `run`. Command
    modules (`*_command`) are not imported: they define absl flags, which another command's
    process (the quickstart's `--out`) already has."""
    return [m.name for m in pkgutil.iter_modules(downstream.__path__)
            if not m.name.endswith("_command")
            and callable(getattr(importlib.import_module(f"downstream.{m.name}"), "run", None))]


def adapter_module(name: str):
    """The adapter `downstream.<name>` (a module with `run`); unknown names list the valid ones."""
    try:
        module = importlib.import_module(f"downstream.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"downstream.{name}":
            raise
        module = None
    if module is None or not callable(getattr(module, "run", None)):
        raise ValueError(f"unknown adapter {name!r}; valid: {', '.join(adapter_names())}")
    return module


class Bench:
    """Holds the datasets (shared across checkpoints of one image size) and the results."""

    def __init__(self, config: ml_collections.ConfigDict, out_dir: str):
        self.config, self.out_dir = config, out_dir
        self.modules = {name: adapter_module(name) for name in config.adapters}
        self.results: report.Results = {}
        self.errors: report.Notes = {}
        self.not_applicable: report.Notes = {}
        self.seconds: dict[str, dict[str, float]] = {}  # column -> adapter -> wall time
        self.reused: list[str] = []  # the cells (column/adapter) a run before had finished
        self._data: dict[tuple, BenchData] = {}

    def data_for(self, encoders: Encoders) -> BenchData:
        """The bench dataset at the encoder's image size: `data.name` of the bench config, else
        the encoder's pretraining dataset (a mixture's first part; an exported subset's whole
        dataset): one dataset, read whole."""
        values = encoders.config.data.to_dict()
        pretrained_on = (mixture.parse(values["mixture"])[0][0] if values.get("mixture")
                         else values["name"])
        values.update(name=self.config.data.name or pretrained_on, mixture="", subset="")
        d = ml_collections.ConfigDict(values)
        d.data_dir = self.config.data.data_dir or d.get("data_dir", "")
        d.on_error = self.config.data.on_error
        key = (d.name, d.data_dir, encoders.image_size)
        if key not in self._data:
            self._data[key] = BenchData(
                d, image_size=encoders.image_size, train_split=self.config.data.train_split,
                eval_splits=tuple(self.config.data.eval_splits),
                max_examples=dict(self.config.data.max_examples),
                batch_size=self.config.batch_size, seed=self.config.seed)
        return self._data[key]

    def load(self, column: str, source: str, make: Callable[[], Encoders]) -> Encoders | None:
        """Builds one column's encoders and runs every adapter on them; None if they fail to load.

        Columns are built and run one at a time, so one model is held in memory at a time.
        """
        try:
            encoders = make()
        except Exception as e:  # noqa: BLE001  (an unreadable checkpoint: report it, go on)
            message = f"{source} cannot be read: {type(e).__name__}: {e}"
            logging.error("%s", message)
            self.errors[column] = {"checkpoint": message}
            return None
        self.run_column(column, encoders, source)
        return encoders

    def run_column(self, column: str, encoders: Encoders, source: str) -> None:
        """Every adapter on one encoder; a failure is recorded and the next adapter runs. A cell
        this OUT already holds for the same encoder, data and adapter config is reused."""
        data = self.data_for(encoders)
        weights = encoder_digest(encoders)
        self.results[column] = {}
        for name, module in tqdm(self.modules.items(), desc=f"bench {column}", unit="adapter"):
            cfg = ml_collections.ConfigDict(self.config[name].to_dict())
            cfg.seed = self.config.seed
            cfg.out_dir = os.path.join(self.out_dir, column, name)
            start = time.perf_counter()
            try:
                digest = cell_digest(name, cfg, data, weights)
                kept = read_cell(cfg.out_dir, digest)
                if kept is not None:
                    self.results[column][name], self.seconds.setdefault(column, {})[name] = kept
                    self.reused.append(f"{column}/{name}")
                    continue
                forget_cell(cfg.out_dir)  # its files are about to change or go
                self.results[column][name] = module.run(encoders, data, cfg)
                self.seconds.setdefault(column, {})[name] = time.perf_counter() - start
                write_cell(cfg.out_dir, digest, self.results[column][name],
                           self.seconds[column][name])
                logging.info("%s on %s: %.1f s", name, column, self.seconds[column][name])
            except NotApplicable as e:
                logging.info("%s does not apply to %s: %s", name, column, e)
                self.not_applicable.setdefault(column, {})[name] = str(e)
            except Exception as e:  # noqa: BLE001  (one adapter's failure must not stop the rest)
                message = (f"adapter {name!r} failed on {source} with dataset {data.name!r}: "
                           f"{type(e).__name__}: {e}")
                logging.error("%s", message)
                self.errors.setdefault(column, {})[name] = message

    def write(self, columns: list[str], meta: dict) -> None:
        """Writes results.json, results.md, results.csv, config.json, timing.json (seconds per
        column and adapter, apart so that equal runs give equal results files) and the zero-shot
        figures, after removing the cells and figures of OUT this run did not make."""
        adapters = list(self.config.adapters)
        prune_cells(self.out_dir, columns,
                    {(c, a) for c, by in self.results.items() for a in by})
        write_atomic(os.path.join(self.out_dir, "results.json"),
                     report.to_json(self.results, self.errors, meta, self.not_applicable))
        sources = {col: _source(path, meta["read_at"].get(col, {}))
                   for col, path in meta["checkpoints"].items()}
        sources[meta.get("reference", REFERENCE)] = "random initialisation (same architecture)"
        write_atomic(os.path.join(self.out_dir, "results.md"), report.to_markdown(
            self.results, self.errors, columns, adapters,
            f"Downstream benchmark ({meta['preset']})", sources, self.not_applicable))
        write_atomic(os.path.join(self.out_dir, "results.csv"),
                     report.to_csv(self.results, columns, adapters))
        write_atomic(os.path.join(self.out_dir, "config.json"), self.config.to_json(indent=2))
        write_atomic(os.path.join(self.out_dir, "timing.json"), json.dumps(self.seconds, indent=2))
        if self.config.plots and "zero_shot" in adapters:
            self._plot_zero_shot(columns)

    def _plot_zero_shot(self, columns: list[str]) -> None:
        for old in glob.glob(os.path.join(glob.escape(self.out_dir), "zero_shot_auroc_*.png")):
            os.remove(old)  # a split or column of an earlier run into this OUT
        for split in self.config.data.eval_splits:
            values = {}
            for column in columns:
                res = self.results.get(column, {}).get("zero_shot", {})
                values[column] = {name: res[f"{split}/auroc/{name}"] for name in FINDINGS
                                  if f"{split}/auroc/{name}" in res}
            if any(values.values()):
                plots.auroc_per_finding(os.path.join(self.out_dir, f"zero_shot_auroc_{split}.png"),
                                        values, f"Zero-shot AUROC per finding ({split})")


def encoder_digest(encoders: Encoders) -> str:
    """sha256 of everything an encoder's scores depend on: its run config, its tokenizer and
    its weights (so a run trained further, or another seed's reference, never matches)."""
    h = hashlib.sha256(encoders.config.to_json(sort_keys=True).encode())
    if encoders.tokenizer is not None:
        h.update(encoders.tokenizer.model_proto)
    for leaf in jax.tree.leaves(nnx.state(encoders.model)):
        h.update(np.ascontiguousarray(np.asarray(leaf)).tobytes())
    return h.hexdigest()


def cell_digest(adapter: str, config: ml_collections.ConfigDict, data: BenchData,
                weights: str) -> str:
    """sha256 of one cell's inputs: the adapter, its config (but where it writes: OUT may be
    named another way or moved), the data read and the encoder."""
    settings = {k: v for k, v in config.to_dict().items() if k != "out_dir"}
    what = dict(adapter=adapter, config=settings, weights=weights, data=data.identity())
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def read_cell(folder: str, digest: str) -> tuple[dict[str, float], float] | None:
    """(metrics, seconds) of the cell finished in `folder` with the same digest, else None."""
    try:
        with open(os.path.join(folder, CELL)) as f:
            kept = json.load(f)
    except (OSError, ValueError):
        return None
    if kept.get("digest") != digest:
        return None
    return kept["results"], kept["seconds"]


def forget_cell(folder: str) -> None:
    """Removes the cell in `folder` (its marker and files) before an adapter writes it again: a
    run stopped half way, or an adapter that fails or does not apply now, must not leave the
    files of another config or checkpoint for the paired tests to read."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)


def bench_columns(out_dir: str, columns: Sequence[str]) -> set[str]:
    """The column folders of OUT the bench made: this run's `columns`, those of the results.json
    an earlier run wrote there, and any folder holding a finished cell (an interrupted run's)."""
    try:
        with open(os.path.join(out_dir, "results.json")) as f:
            earlier = set(json.load(f).get("columns", []))
    except (OSError, ValueError, AttributeError, TypeError):
        earlier = set()
    marked = {os.path.basename(os.path.dirname(os.path.dirname(path)))
              for path in glob.glob(os.path.join(glob.escape(out_dir), "*", "*", CELL))}
    return (set(columns) | earlier | marked) & set(os.listdir(out_dir))  # OUT's own entries


def prune_cells(out_dir: str, columns: Sequence[str], kept: set[tuple[str, str]]) -> None:
    """Removes, with a logged line, every cell folder `OUT/<column>/<adapter>` of the bench's
    columns (`bench_columns`) but the `kept` (column, adapter) pairs, and columns left empty: a
    column or adapter dropped from a rerun into OUT leaves no files for the paired tests or
    plots to read. Other files in OUT are left alone."""
    adapters = set(adapter_names())
    for column in sorted(bench_columns(out_dir, columns) if os.path.isdir(out_dir) else ()):
        folder = os.path.join(out_dir, column)
        if not os.path.isdir(folder):
            continue
        stale = [os.path.join(folder, a) for a in sorted(set(os.listdir(folder)) & adapters)
                 if (column, a) not in kept and os.path.isdir(os.path.join(folder, a))]
        for cell in stale:
            logging.warning("removing %s: not a cell this run finished (an earlier run's "
                            "column or adapter, or one that failed now)", cell)
            shutil.rmtree(cell)
        if stale and not os.listdir(folder):
            os.rmdir(folder)


def write_cell(folder: str, digest: str, results: dict[str, float], seconds: float) -> None:
    """Marks a cell finished, after the adapter wrote its files: its metrics and digest."""
    results = {key: float(value) for key, value in results.items()}
    write_atomic(os.path.join(folder, CELL), json.dumps(
        dict(digest=digest, seconds=seconds, results=results), indent=1) + "\n")


def run_bench(checkpoints: Sequence[str], config: ml_collections.ConfigDict, out_dir: str, *,
              names: Sequence[str] | None = None, reference_name: str = REFERENCE) -> dict:
    """Runs the suite and writes its files; returns the results.json content as a dict.

    Columns are named `names` (default: from the paths, a run's `milestones` folder given
    without a step expanded to one column per milestone) and, with `config.reference`, the
    randomly initialised reference `reference_name`.
    """
    if not checkpoints:
        raise ValueError("no checkpoints given: pass --checkpoints=DIR[,DIR...]")
    if not all(str(path).strip() for path in checkpoints):
        raise ValueError(f"--checkpoints has an empty entry, {list(checkpoints)}: a doubled or "
                         "trailing comma?")
    if names is not None and len(names) != len(checkpoints):
        raise ValueError(f"{len(names)} names for {len(checkpoints)} checkpoints")
    if names is None:
        checkpoints = expand_milestones(checkpoints)
    bench = Bench(config, out_dir)
    columns = list(names) if names is not None else column_names(checkpoints)
    # What the reference copies: the first readable CLIP run's (config, tokenizer), or a
    # supervised run's if no CLIP run reads (its text tower is untrained either way).
    first = None
    for column, path in zip(columns, checkpoints):
        encoders = bench.load(column, f"checkpoint {path!r}",
                              lambda: Encoders.from_checkpoint(path, batch_size=config.batch_size))
        if encoders is not None and (first is None or (first[0].get("loss") == "supervised"
                                                       and encoders.config.get("loss") != "supervised")):
            first = (encoders.config, encoders.tokenizer)
    if config.reference and first is not None:
        columns.append(reference_name)
        bench.load(reference_name, "the randomly initialised reference encoder",
                   lambda: Encoders.random_init(first[0], tokenizer=first[1], seed=config.seed,
                                                batch_size=config.batch_size))
    meta = {"columns": columns, "checkpoints": dict(zip(columns, checkpoints)),
            "read_at": {col: read_at(path) for col, path in zip(columns, checkpoints)},
            "preset": config.get("preset", ""), "reference": reference_name}
    bench.write(columns, meta)
    if bench.reused:
        logging.warning("reused %d cells a bench of the same checkpoints, data and config had "
                        "finished in %s (%s); delete a cell's %s to compute it again",
                        len(bench.reused), out_dir, ", ".join(bench.reused), CELL)
    return json.loads(report.to_json(bench.results, bench.errors, meta, bench.not_applicable))
