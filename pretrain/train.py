"""The pretraining loop, read top to bottom: setup, data, model, state, steps, restore, loop.

One plain loop serves every schedule. A run is a list of phases: `full` (every row of every
batch trains), `curate` (the curator selects `capacity` rows of each super-batch inside the
jitted step and only those train; every kept id goes to the ledger) and `subset` (plain
training on the records the ledger holds). CheXficient's schedule is curate-then-subset.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec as P

from chexficient import checkpoint as ckpt_lib
from chexficient import compilation_cache, parallel, run_log
from chexficient.io import write_atomic, write_json_atomic
from chexficient.data import mixture, pipeline, registry
from chexficient.data.tokenizer import Tokenizer
from chexficient.models import build_model, pretrained
from pretrain import optimizer, schedule
from pretrain.collapse import CollapseWatch
from pretrain import steps as steps_lib
from pretrain.steps import BATCH_KEYS
from pretrain.flops import FlopLedger

def save_ledger(workdir: str, ledger: dict[str, np.ndarray]) -> None:
    """ledger.npz: per pool record, the step it was first kept (-1: never), last score and cluster."""
    tmp = os.path.join(workdir, "ledger.tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in ledger.items()})
    os.replace(tmp, os.path.join(workdir, "ledger.npz"))


def note(message: str) -> None:
    """One line of the run's story (phase, evaluation, checkpoint) above the progress bar, from
    the first process only: what a run shows besides warnings at the default verbosity."""
    if jax.process_index() == 0:
        run_log.note(message)


@contextlib.contextmanager
def closed_on_error(*resources):
    """Closes `resources` (those not None) if the block raises, then re-raises: a run that
    ends in an error leaves no metrics file, event writer or checkpoint manager open."""
    try:
        yield
    except BaseException:
        for resource in resources:
            if resource is not None:
                resource.close()
        raise


def stop_run(reason: str, step: int, checkpointer: ckpt_lib.Checkpointer) -> None:
    """Ends a diverged run with a message naming the last good checkpoint to resume from (or
    saying there is none, so the run starts again)."""
    checkpointer.wait()
    latest = checkpointer.latest_step()
    remedy = "lower optim.lr or raise optim.warmup_frac"
    where = (f"The last good checkpoint is step {latest} in {checkpointer.directory} ({remedy}, "
             "then resume from it)." if latest is not None else
             f"No checkpoint was saved before it in {checkpointer.directory}: {remedy} and "
             "start the run again.")
    raise FloatingPointError(f"{reason} at step {step}; stopping. {where}")


def check_finite(metrics: dict, step: int, checkpointer: ckpt_lib.Checkpointer) -> dict[str, float]:
    """Metrics as floats; a NaN or infinite loss stops the run."""
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not math.isfinite(values["loss"]):
        stop_run(f"loss became {values['loss']}", step, checkpointer)
    return values


def init_towers_from(model, path: str, towers: str, tokenizer: Tokenizer | None = None):
    """Copies the image and/or text tower (with its projection, and its token head where both
    models have one) from another run's checkpoint. A text tower trained on another tokenizer's
    ids than this run's `tokenizer`, or a parameter of another shape, is an error naming it."""
    valid = {"both": ("image", "text"), "image": ("image",), "text": ("text",)}
    if towers not in valid:
        raise ValueError(f"init_from.towers={towers!r}; valid: {', '.join(valid)}")
    source, source_config = ckpt_lib.load_model(path)
    if "text" in valid[towers]:
        check_same_tokenizer(path, source_config, tokenizer)
    for tower in valid[towers]:
        for name in (tower, f"{tower}_proj", f"{tower}_local_proj"):
            target, origin = getattr(model, name), getattr(source, name)
            if target is not None and origin is not None:
                check_same_shapes(name, nnx.state(target, nnx.Param), nnx.state(origin, nnx.Param),
                                  path)
                nnx.update(target, nnx.state(origin, nnx.Param))
    note(f"{'image and text towers' if towers == 'both' else towers + ' tower'} from {path}")
    return model


def check_same_tokenizer(path: str, source_config: ml_collections.ConfigDict,
                         tokenizer: Tokenizer | None) -> None:
    """Refuses to copy a text tower whose token ids come from another tokenizer than the run's
    (another dataset's): its embedding rows would stand for other pieces, or lie out of range."""
    from chexficient.data import tokenizer as tokenizer_lib

    theirs = tokenizer_lib.load_saved(ckpt_lib.run_dir(ckpt_lib.split_step(path)[0]))
    if tokenizer is None or theirs is None or theirs.model_proto == tokenizer.model_proto:
        return
    raise ValueError(
        f"init_from.path={path!r}: its text tower was trained on the token ids of another "
        f"tokenizer (that of {source_config.data.get('mixture') or source_config.data.name}) "
        "than this run's; its rows would stand for other pieces. Copy the image tower only "
        "(--config.init_from.towers=image), or train on the dataset that run was trained on")


def check_same_shapes(name: str, target: nnx.State, origin: nnx.State, path: str) -> None:
    """Every parameter of `origin` (from `path`) has the shape of its counterpart in `target`."""
    ours = dict(nnx.to_flat_state(target))
    for key, value in nnx.to_flat_state(origin):
        mine = ours.get(key)
        if mine is not None and mine.value.shape != value.value.shape:
            raise ValueError(
                f"init_from.path={path!r}: {name}.{'.'.join(map(str, key))} has shape "
                f"{tuple(value.value.shape)} there and {tuple(mine.value.shape)} in this model: "
                "set the model fields (image size, widths, depths) to that run's, or copy only "
                "the other tower (--config.init_from.towers)")


def keep_run_tokenizer(workdir: str, tokenizer: Tokenizer) -> None:
    """Stores the tokenizer in the run (`tokenizer.model`, or `tokenizer.json` for a BERT
    checkpoint's WordPiece), so its checkpoints are self-contained:
    evaluating on another dataset, or after the pretraining data moved, uses the same ids.
    A resumed run whose dataset now has another tokenizer is an error, not a silent mix, on
    every process (all read the same file, so none waits for a process that stopped); the copy
    a launch refused before its first checkpoint left is replaced (no state holds its ids) by
    the first process."""
    path = os.path.join(workdir, tokenizer.file_name)
    trained = ckpt_lib.has_checkpoint(workdir) or os.path.isdir(
        os.path.join(workdir, ckpt_lib.MILESTONES))
    if trained and os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() != tokenizer.model_proto:
                raise ValueError(f"{path} differs from the tokenizer of dataset(s) in this config: "
                                 "the run was started with other token ids; use a new workdir")
        return
    if jax.process_index() == 0:
        write_atomic(path, tokenizer.model_proto)


def full_data_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
    """The steps of full-data training for the run's length: what compute fractions divide by."""
    return config.total_steps or int(round(config.total_epochs * steps_per_epoch))


def budget_steps(config: ml_collections.ConfigDict, step_flops: float) -> int:
    """Sets `config.total_steps` from the compute budget `config.total_flops`; returns it."""
    if config.schedule.name != "full":
        raise ValueError(f"total_flops needs schedule 'full' (a curated run's step costs vary), "
                         f"got schedule {config.schedule.name!r}")
    if step_flops <= 0:
        raise ValueError("total_flops: this backend gives no FLOP estimate for the train step")
    config.total_steps = max(1, int(round(config.total_flops / step_flops)))
    note(f"compute budget {config.total_flops:.3g} FLOPs: {config.total_steps} steps of "
         f"{step_flops:.3g}")
    return config.total_steps


PATH_KEYS = ("data.data_dir", "data.subset", "init_from.path", "reference.path")
"""Config fields naming files or folders: a run records them absolute."""


def absolute_paths(config: ml_collections.ConfigDict | dict) -> None:
    """Makes the set `PATH_KEYS` fields of `config` (a ConfigDict or its JSON) absolute, in
    place, from the working directory: config.json then names the same folders when the run is
    resumed, exported or evaluated from another directory."""
    for key in PATH_KEYS:
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.get(part) or {}
        if node.get(leaf):
            node[leaf] = os.path.abspath(os.path.expanduser(node[leaf]))


def resolve(config: ml_collections.ConfigDict
            ) -> tuple[ml_collections.ConfigDict, str, list, Tokenizer | None]:
    """The run's own copy of `config` as config.json records it (paths absolute, pretrained
    architectures and the tokenizer's vocabulary filled in), with its data dir, pool parts and
    tokenizer: None for a supervised run on data without report text, whose unused text tower
    then gets `data.vocab_size` ids. A CLIP run needs report text in every part (`report_positions`)."""
    data_dir = registry.resolve_data_dir(config.data.data_dir or None)
    parts = mixture.parts(config.data, config.data.train_split, data_dir)
    config = ml_collections.ConfigDict(config.to_dict())  # private, unlocked copy
    absolute_paths(config)
    config.model = pretrained.resolve(config.model)  # a pretrained tower's architecture
    if config.model.text.pretrained:
        config.data.tokenizer = config.model.text.pretrained
    if config.loss != "supervised":  # before a tokenizer is trained on the parts' reports
        mixture.report_positions(parts, config.data.get("on_error", "raise"))
    tokenizer = mixture.load_tokenizer(config.data, parts)
    if not config.model.text.vocab_size:
        config.model.text.vocab_size = (tokenizer.vocab_size if tokenizer is not None
                                        else config.data.vocab_size)
    if config.model.text.pretrained and config.model.text.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"model.text.vocab_size={config.model.text.vocab_size} but the "
                         f"tokenizer has {tokenizer.vocab_size} ids")
    return config, data_dir, parts, tokenizer


def planned_end(plan: schedule.Plan, phases: list[schedule.Phase], phase_index: int,
                ledger: dict) -> int:
    """The step the run ends at under its config, as far as known at `phase_index`: exact once
    the subset is fixed, else the estimate a fresh run starts its learning-rate schedule from."""
    if phases[-1].end_step < 0 and phase_index >= len(phases) - 1:
        return plan.subset_end_step(plan.phase_indices("subset", ledger))
    return plan.initial_total_steps()


def continue_at(plan: schedule.Plan, phases: list[schedule.Phase], phase_index: int, step: int,
                old_end: int, ledger: dict) -> tuple[int, int]:
    """(phase index, end step) of a restored run under the current config: a changed
    `total_steps` / `total_epochs` moves the end (reopening the last phase of a finished run,
    where the chexficient schedule adds subset epochs); an end before `step` is an error."""
    new_end = planned_end(plan, phases, min(phase_index, len(phases) - 1), ledger)
    if new_end < step:
        raise ValueError(
            f"total_steps / total_epochs now end the run at step {new_end}, before step {step} "
            "its checkpoint restored: set an end at or after that step, or use a new --workdir")
    if new_end != old_end:
        note(f"{'extending' if new_end > old_end else 'shortening'} the run: end step "
             f"{old_end} -> {new_end} (total_steps / total_epochs changed; the learning rate "
             "follows the new end)")
    if phase_index == len(phases) and new_end > step:
        phase_index -= 1
    return phase_index, new_end


def check_eval_split(config: ml_collections.ConfigDict, data_dir: str | None) -> None:
    """Fails at launch, not at the first evaluation, when a dataset of the run lacks the
    evaluation split (PadChest and Open-I have only 'train'); warns when the split holds
    fewer records than one evaluation batch (evaluation then measures nothing)."""
    try:
        size = sum(p.size for p in mixture.parts(config.data, config.eval.split, data_dir))
    except ValueError as e:
        raise ValueError(f"{e}: the run's evaluation cannot read it; set --config.eval.split to a "
                         "split every dataset has, or --config.eval.every_steps=0") from None
    if size < config.eval.batch_size:
        logging.warning("the %r split has %d records, fewer than eval.batch_size=%d: evaluation "
                        "will report no metrics (lower --config.eval.batch_size)",
                        config.eval.split, size, config.eval.batch_size)


def place_state(init_state, params, shardings):
    """`init_state(params)` laid out by `shardings`, from host copies of `params`: towers
    copied from a checkpoint (`init_from`) sit on one device, which a jit over a mesh of
    several devices does not take its arguments from."""
    return jax.jit(init_state, out_shardings=shardings)(jax.device_get(params))


def check_batch_sizes(config: ml_collections.ConfigDict, devices: int) -> None:
    """Fails at launch, before the workdir is written, when a batch the run reads does not
    split evenly over the devices: each process reads batch / processes rows and splits them
    over its own devices (first step or first evaluation would fail deep in the run)."""
    sizes = {"batch_size": config.batch_size,
             "schedule.curate_batch_size": config.schedule.curate_batch_size}
    if config.eval.every_steps:
        sizes["eval.batch_size"] = config.eval.batch_size
    for key, size in sizes.items():
        if size % devices:
            raise ValueError(
                f"{key}={size} does not split over the {devices} devices of this run "
                f"({jax.process_count()} process(es)): set --config.{key} to a multiple of "
                f"{devices}, or run on fewer devices")


def train(config: ml_collections.ConfigDict, workdir: str, *, stop_at_step: int | None = None) -> dict:
    """Runs (or resumes) the pretraining described by `config` in `workdir`; returns the summary.

    `stop_at_step` ends the process early as a preemption would (after checkpointing that
    step); calling `train` again on the same workdir resumes exactly.
    """
    # ----------------------------------------------------------------- setup
    t_start = time.time()
    parallel.maybe_initialize_distributed(config)
    compilation_cache.off_for_cpu_collectives()
    os.makedirs(workdir, exist_ok=True)
    config, data_dir, parts, tokenizer = resolve(config)
    check_batch_sizes(config, jax.device_count())
    mesh = parallel.make_mesh(config.mesh)  # a mesh that does not fit fails before any write
    resolved = json.loads(config.to_json())  # config.json: as given, before a budget sets steps
    if tokenizer is not None:
        keep_run_tokenizer(workdir, tokenizer)

    # ----------------------------------------------------------------- data
    pool_size = sum(part.size for part in parts)
    batch = config.batch_size
    steps_per_epoch = pool_size // batch
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={batch} exceeds the {pool_size} training records of "
                         f"{config.data.get('mixture') or config.data.name}")

    if config.eval.every_steps:
        check_eval_split(config, data_dir)

    shard = (jax.process_index(), jax.process_count())

    def loader(indices: np.ndarray | None, phase_index: int, rows: int):
        return pipeline.make_loader(
            config.data, config.data.train_split, train=True,
            batch_size=rows // jax.process_count(), seed=config.seed + 1000 * phase_index,
            indices=indices, skip_empty_reports=config.loss != "supervised")

    # ----------------------------------------------------------------- mesh & model
    model = build_model(config.model, nnx.Rngs(config.seed))
    if not ckpt_lib.has_checkpoint(workdir):
        pretrained.load(model, config.model)  # a resumed run restores its own weights instead
    if config.init_from.path:
        model = init_towers_from(model, config.init_from.path, config.init_from.towers, tokenizer)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise ValueError("models must keep all their state in nnx.Param (found other state)")
    tx = optimizer.make_optimizer(config.optim, params)

    reference = None  # (graphdef, params) of a frozen model scoring reference losses
    if config.reference.path:
        ref_model, _ = ckpt_lib.load_model(config.reference.path)
        ref_graphdef, ref_params = nnx.split(ref_model, nnx.Param)
        reference = (ref_graphdef, parallel.from_host(ref_params, NamedSharding(mesh, P())))

    def reference_embed() -> dict[str, np.ndarray]:
        """The reference model's embeddings of the whole pool, in record order (for offline rules)."""
        fn = jax.jit(steps_lib.embed_fn(reference[0]))
        out = {"image": [], "text": []}
        with contextlib.closing(pipeline.make_loader(
                config.data, config.data.train_split, train=False, batch_size=batch, seed=0,
                num_epochs=1, shard=(0, 1))) as pool:
            for b in pool:
                img, txt = jax.device_get(fn(reference[1], {k: b[k] for k in BATCH_KEYS}))
                out["image"].append(img)
                out["text"].append(txt)
        return {k: np.concatenate(v) for k, v in out.items()}

    plan = schedule.make(config, pool_size=pool_size, batch_size=batch,
                         embed_dim=config.model.embed_dim,
                         reference_embed=reference_embed if reference is not None else None)

    # ----------------------------------------------------------------- state
    init_state = functools.partial(steps_lib.initial_state, tx=tx, plan=plan, seed=config.seed,
                                   total_steps=plan.initial_total_steps())

    abstract = jax.eval_shape(init_state, params)
    shardings = parallel.param_sharding(abstract, mesh)
    abstract = jax.tree.map(  # with shardings: a checkpoint restores onto this mesh
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
    state = place_state(init_state, params, shardings)
    del params, model

    # ----------------------------------------------------------------- steps
    steps = steps_lib.build_steps(config, graphdef, tx, plan.curator, reference)
    batch_sharding = parallel.batch_sharding(mesh)
    abstract_batch = steps_lib.abstract_batch(batch, config.data.image_size, config.data.text_len,
                                              batch_sharding)
    jit_step = lambda fn, out: jax.jit(fn, donate_argnums=0, out_shardings=(out, None))
    full_step = jit_step(steps.full, steps_lib.step_input("full", shardings))
    step_fns = {"full": full_step, "subset": full_step, "curate": jit_step(steps.curate, shardings)}
    eval_fn = jax.jit(steps.eval)
    params_finite = jax.jit(lambda p: jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(p)])))
    flops = FlopLedger()
    full_step_flops = lambda: flops.per_call(  # noqa: E731  (compiled once, on first use)
        "full", full_step, steps_lib.step_input("full", state), abstract_batch)
    if config.total_flops:  # a compute budget: the run's length in steps follows from it
        state["total_steps"] = jax.device_put(jnp.asarray(
            budget_steps(config, full_step_flops()), jnp.int32), shardings["total_steps"])
    milestones = None
    if config.checkpoint.get("milestones"):
        milestones = ckpt_lib.Milestones(
            os.path.join(workdir, ckpt_lib.MILESTONES), spacing=config.checkpoint.milestones,
            full_flops=full_step_flops() * full_data_steps(config, steps_per_epoch))

    # ----------------------------------------------------------------- restore
    checkpointer = ckpt_lib.Checkpointer(
        os.path.join(workdir, "checkpoints"), every_steps=config.checkpoint.every_steps,
        max_to_keep=config.checkpoint.max_to_keep)
    phases = plan.phases()
    phase_index, data_state = 0, None
    if checkpointer.latest_step() is not None:
        try:
            model_state, train_state, data, meta = checkpointer.restore(
                abstract["params"], {k: v for k, v in abstract.items() if k != "params"}, config)
        except ckpt_lib.CheckpointError:
            checkpointer.close()  # a refused resume leaves no manager (and its event loop) open
            raise
        state = dict(train_state, params=model_state)
        flops.load(meta.get("flops", {}))
        restored_step = int(state["step"])
        note(f"resuming {workdir} at step {restored_step}")
        phase_index, end = continue_at(plan, phases, meta["phase_index"], restored_step,
                                       int(state["total_steps"]), parallel.to_host(state["ledger"]))
        state["total_steps"] = jax.device_put(np.asarray(end, np.int32), shardings["total_steps"])
        if meta["data_phase"] == phase_index:
            data_state = pipeline.resume_state(
                data["states"], shard,
                plan.phase_batch(phases[phase_index].name) // jax.process_count())

    # The run's files, once the config is known to fit the workdir's checkpoint: a launch
    # refused above leaves the run it was pointed at as it was.
    if jax.process_index() == 0:
        write_json_atomic(os.path.join(workdir, "config.json"), resolved)
    writer = run_log.MetricWriter(workdir) if jax.process_index() == 0 else None

    # ----------------------------------------------------------------- evaluator
    def evaluate() -> dict[str, float]:
        totals: dict[str, list[float]] = {}
        # In-batch retrieval is measured on full batches only; all processes stop together.
        eval_size = sum(p.size for p in mixture.parts(config.data, config.eval.split, data_dir))
        limit = min(config.eval.max_batches, eval_size // config.eval.batch_size)
        with contextlib.closing(pipeline.make_loader(  # stops its workers when left early
                config.data, config.eval.split, train=False,
                batch_size=config.eval.batch_size // jax.process_count(), seed=0,
                num_epochs=1)) as eval_loader:
            for b in parallel.full_batches(eval_loader, config.eval.batch_size, limit):
                out = eval_fn(state["params"], parallel.host_to_global(
                    {k: b[k] for k in BATCH_KEYS}, mesh))
                for k, v in out.items():
                    totals.setdefault(f"val/{k}", []).append(float(v))
        return {k: float(np.mean(v)) for k, v in totals.items()}

    # ----------------------------------------------------------------- loop
    step = int(state["step"])
    watch = CollapseWatch(batch) if writer and config.loss == "softmax" else None
    if watch:
        watch.replay(writer.path, step)
    last_metrics: dict[str, float] = {}
    progress = run_log.Progress(total=int(state["total_steps"]), initial=step,
                                batch_size=batch, enabled=config.progress and jax.process_index() == 0)
    throughput = run_log.Throughput(step=step, batch_size=batch)
    stopped_early = False
    phase_data = contextlib.ExitStack()  # the phase's data iterator: its workers' shared memory
    with closed_on_error(phase_data, progress, writer, milestones, checkpointer):
        while phase_index < len(phases):
            phase = phases[phase_index]
            try:
                indices = plan.phase_indices(phase.name, parallel.to_host(state["ledger"]))
            except ValueError:  # a subset too small to train: the curation's checkpoint lands first,
                checkpointer.wait()  # so a run with a smaller batch resumes from it
                raise
            end_step = phase.end_step if phase.end_step >= 0 else plan.subset_end_step(indices)
            if phase.name == "subset" and indices is not None:
                state["total_steps"] = jax.device_put(np.asarray(end_step, np.int32),
                                                      shardings["total_steps"])
                progress.set_total(end_step)
            rows = plan.phase_batch(phase.name)
            note(f"phase {phase_index + 1}/{len(phases)} {phase.name}: steps {step} -> {end_step}"
                 + (f", on the {len(indices)} records kept" if indices is not None else "")
                 + (f", scoring {rows} rows a step" if rows != batch else ""))
            throughput.set_batch_size(step, rows)
            progress.batch_size = rows
            it = phase_data.enter_context(contextlib.closing(iter(loader(indices, phase_index,
                                                                         rows))))
            if data_state:
                it.set_state(data_state)
            data_state = None
            pending = None  # metrics of the step before: read one step late so the host never waits
            while step < end_step:
                b = parallel.host_to_global({k: v for k, v in next(it).items() if k in BATCH_KEYS}, mesh)
                spent_before = flops.spent()
                given = steps_lib.step_input(phase.name, state)
                step_fn = flops.compiled(phase.name, step_fns[phase.name], given, b)
                out, metrics = step_fn(given, b)
                state = steps_lib.step_output(phase.name, state, out)
                step += 1
                if milestones is not None:
                    milestones.maybe_save(step, spent_before, flops.spent(), state["params"])
                if pending is not None:
                    last_metrics = check_finite(pending, step - 1, checkpointer)
                pending = metrics
                is_last = step == end_step and phase_index == len(phases) - 1
                if step % config.log_every_steps == 0 or is_last:
                    last_metrics = check_finite(pending, step, checkpointer)
                    if writer:
                        writer.write(step, {**last_metrics, **flops.metrics(step),
                                            **throughput.measure(step)})
                    if watch and (message := watch.update(step, last_metrics)):
                        note(message)
                if config.eval.every_steps and (step % config.eval.every_steps == 0 or is_last):
                    with throughput.paused():
                        val = evaluate()
                    if writer:
                        writer.write(step, val)
                    note(f"step {step} evaluation: " + ", ".join(f"{k} {v:.3f}" for k, v in val.items()))
                    last_metrics.update(val)
                if checkpointer.should_save(step) or step == end_step:
                    check_finite(pending, step, checkpointer)
                    if not bool(params_finite(state["params"])):
                        stop_run("parameters became NaN or infinite", step, checkpointer)
                    meta = dict(fingerprint=ckpt_lib.fingerprint(config),
                                phase_index=phase_index + (step == end_step), data_phase=phase_index,
                                flops=flops.state())
                    with throughput.paused():
                        checkpointer.save(step, state["params"],
                                          {k: v for k, v in state.items() if k != "params"},
                                          {"states": parallel.gather_json(it.get_state())}, meta,
                                          force=True)
                    note(f"step {step}: checkpoint saved to {checkpointer.directory}/{step}")
                progress.update(step, last_metrics)
                if stop_at_step is not None and step >= stop_at_step:
                    note(f"stopped at step {step} (--stop_at_step); the same command resumes")
                    stopped_early = True
                    break
            phase_data.close()
            if stopped_early:
                break
            phase_index += 1
            ledger = parallel.to_host(state["ledger"])
            if jax.process_index() == 0 and plan.name != "full":  # a full run selects nothing
                save_ledger(workdir, ledger)
    progress.close()
    checkpointer.close()
    if milestones is not None:
        milestones.close()

    # ----------------------------------------------------------------- summary
    ledger = parallel.to_host(state["ledger"])
    summary = dict(
        step=step, stopped_early=stopped_early, pool_size=pool_size, wall_time_s=time.time() - t_start,
        step_compile_s=flops.compile_seconds, data_fraction=plan.data_fraction(ledger),
        **flops.summary(full_step_fn=full_step, state=steps_lib.step_input("full", state),
                        batch=abstract_batch, full_steps=full_data_steps(config, steps_per_epoch)),
        **{k: float(v) for k, v in last_metrics.items()})
    if watch:
        summary["collapsed"] = watch.collapsed
    if writer:
        writer.close()
        write_json_atomic(os.path.join(workdir, "summary.json"), summary)
        os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
        run_log.plot_metrics(os.path.join(workdir, "metrics.jsonl"),
                             os.path.join(workdir, "plots", "metrics.png"))
        if plan.curator_name != "none" and not stopped_early:
            plan.write_report(workdir, ledger, data_dir,
                              summary["compute_fraction"])
    return summary
