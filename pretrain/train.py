"""The pretraining loop, read top to bottom: setup, data, model, state, steps, restore, loop.

One plain loop serves every schedule. A run is a list of phases: `full` (every row of every
batch trains), `curate` (the curator selects `capacity` rows of each super-batch inside the
jitted step and only those train; every kept id goes to the ledger) and `subset` (plain
training on the records the ledger holds). CheXficient's schedule is curate-then-subset.
"""

from __future__ import annotations

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
from chexficient import parallel, run_log
from chexficient.io import write_atomic, write_json_atomic
from chexficient.data import mixture, pipeline, registry
from chexficient.data.tokenizer import Tokenizer
from chexficient.models import build_model, pretrained
from pretrain import optimizer, schedule
from pretrain import steps as steps_lib
from pretrain.steps import BATCH_KEYS
from pretrain.flops import FlopLedger

def save_ledger(workdir: str, ledger: dict[str, np.ndarray]) -> None:
    """ledger.npz: per pool record, the step it was first kept (-1: never), last score and cluster."""
    tmp = os.path.join(workdir, "ledger.tmp.npz")
    np.savez(tmp, **{k: np.asarray(v) for k, v in ledger.items()})
    os.replace(tmp, os.path.join(workdir, "ledger.npz"))


def stop_run(reason: str, step: int, checkpointer: ckpt_lib.Checkpointer) -> None:
    """Ends a diverged run with a message naming the last good checkpoint to resume from."""
    checkpointer.wait()
    raise FloatingPointError(
        f"{reason} at step {step}; stopping. The last good checkpoint is step "
        f"{checkpointer.latest_step()} in {checkpointer.directory} (lower optim.lr or raise "
        "optim.warmup_frac, then resume from it).")


def check_finite(metrics: dict, step: int, checkpointer: ckpt_lib.Checkpointer) -> dict[str, float]:
    """Metrics as floats; a NaN or infinite loss stops the run."""
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not math.isfinite(values["loss"]):
        stop_run(f"loss became {values['loss']}", step, checkpointer)
    return values


def init_towers_from(model, path: str, towers: str):
    """Copies the image and/or text tower (with its projection, and its token head where both
    models have one) from another run's checkpoint."""
    valid = {"both": ("image", "text"), "image": ("image",), "text": ("text",)}
    if towers not in valid:
        raise ValueError(f"init_from.towers={towers!r}; valid: {', '.join(valid)}")
    source, _ = ckpt_lib.load_model(path)
    for tower in valid[towers]:
        for name in (tower, f"{tower}_proj", f"{tower}_local_proj"):
            target, origin = getattr(model, name), getattr(source, name)
            if target is not None and origin is not None:
                nnx.update(target, nnx.state(origin, nnx.Param))
    return model


def keep_run_tokenizer(workdir: str, tokenizer: Tokenizer) -> None:
    """Stores the tokenizer in the run (`tokenizer.model`, or `tokenizer.json` for a BERT
    checkpoint's WordPiece), so its checkpoints are self-contained:
    evaluating on another dataset, or after the pretraining data moved, uses the same ids.
    A resumed run whose dataset now has another tokenizer is an error, not a silent mix."""
    path = os.path.join(workdir, tokenizer.file_name)
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() != tokenizer.model_proto:
                raise ValueError(f"{path} differs from the tokenizer of dataset(s) in this config: "
                                 "the run was started with other token ids; use a new workdir")
        return
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
    logging.info("compute budget %.3g FLOPs: %d steps of %.3g", config.total_flops,
                 config.total_steps, step_flops)
    return config.total_steps


def train(config: ml_collections.ConfigDict, workdir: str, *, stop_at_step: int | None = None) -> dict:
    """Runs (or resumes) the pretraining described by `config` in `workdir`; returns the summary.

    `stop_at_step` ends the process early as a preemption would (after checkpointing that
    step); calling `train` again on the same workdir resumes exactly.
    """
    # ----------------------------------------------------------------- setup
    t_start = time.time()
    parallel.maybe_initialize_distributed(config)
    os.makedirs(workdir, exist_ok=True)
    data_dir = registry.resolve_data_dir(config.data.data_dir or None)
    parts = mixture.parts(config.data, config.data.train_split, data_dir)
    config = ml_collections.ConfigDict(config.to_dict())  # private, unlocked copy
    config.model = pretrained.resolve(config.model)  # a pretrained tower's architecture
    if config.model.text.pretrained:
        config.data.tokenizer = config.model.text.pretrained
    tokenizer = mixture.load_tokenizer(config.data, parts)
    if tokenizer is None:
        raise ValueError(f"{config.data.name} has no report text to pretrain a text tower on")
    if not config.model.text.vocab_size:
        config.model.text.vocab_size = tokenizer.vocab_size
    if config.model.text.pretrained and config.model.text.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"model.text.vocab_size={config.model.text.vocab_size} but the "
                         f"tokenizer has {tokenizer.vocab_size} ids")
    if jax.process_index() == 0:
        write_json_atomic(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
        keep_run_tokenizer(workdir, tokenizer)
    writer = run_log.MetricWriter(workdir) if jax.process_index() == 0 else None

    # ----------------------------------------------------------------- data
    pool_size = sum(part.size for part in parts)
    batch = config.batch_size
    if batch % jax.process_count():
        raise ValueError(f"batch_size={batch} is not divisible by the {jax.process_count()} processes")
    steps_per_epoch = pool_size // batch
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size={batch} exceeds the {pool_size} training records of "
                         f"{config.data.get('mixture') or config.data.name}")

    def loader(indices: np.ndarray | None, phase_index: int, train_mode: bool = True):
        return pipeline.make_loader(
            config.data, config.data.train_split, train=train_mode,
            batch_size=batch // jax.process_count(),
            seed=config.seed + 1000 * phase_index, indices=indices)

    # ----------------------------------------------------------------- mesh & model
    mesh = parallel.make_mesh(config.mesh)
    model = build_model(config.model, nnx.Rngs(config.seed))
    if not ckpt_lib.has_checkpoint(workdir):
        pretrained.load(model, config.model)  # a resumed run restores its own weights instead
    if config.init_from.path:
        model = init_towers_from(model, config.init_from.path, config.init_from.towers)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if jax.tree.leaves(rest):
        raise ValueError("models must keep all their state in nnx.Param (found other state)")
    tx = optimizer.make_optimizer(config.optim, params)

    reference = None  # (graphdef, params) of a frozen model scoring reference losses
    if config.reference.path:
        ref_model, _ = ckpt_lib.load_model(config.reference.path)
        ref_graphdef, ref_params = nnx.split(ref_model, nnx.Param)
        reference = (ref_graphdef, jax.device_put(ref_params, NamedSharding(mesh, P())))

    def reference_embed() -> dict[str, np.ndarray]:
        """The reference model's embeddings of the whole pool, in record order (for offline rules)."""
        fn = jax.jit(steps_lib.embed_fn(reference[0]))
        out = {"image": [], "text": []}
        for b in pipeline.make_loader(config.data, config.data.train_split, train=False,
                                      batch_size=batch, seed=0, num_epochs=1, shard=(0, 1)):
            img, txt = jax.device_get(fn(reference[1], {k: b[k] for k in BATCH_KEYS}))
            out["image"].append(img)
            out["text"].append(txt)
        return {k: np.concatenate(v) for k, v in out.items()}

    plan = schedule.make(config, pool_size=pool_size, batch_size=batch,
                         embed_dim=config.model.embed_dim,
                         reference_embed=reference_embed if reference is not None else None)

    # ----------------------------------------------------------------- state
    def init_state(params):
        return dict(
            params=params, opt=tx.init(params), step=jnp.zeros((), jnp.int32),
            rng=jax.random.key_data(jax.random.key(config.seed + 1)),
            total_steps=jnp.asarray(plan.initial_total_steps(steps_per_epoch), jnp.int32),
            curator=plan.curator_state, ledger=plan.empty_ledger())

    abstract = jax.eval_shape(init_state, params)
    shardings = parallel.param_sharding(abstract, mesh)
    state = jax.jit(init_state, out_shardings=shardings)(params)
    del params, model

    # ----------------------------------------------------------------- steps
    steps = steps_lib.build_steps(config, graphdef, tx, plan.curator, reference)
    batch_sharding = parallel.batch_sharding(mesh)
    abstract_batch = steps_lib.abstract_batch(batch, config.data.image_size, config.data.text_len,
                                              batch_sharding)
    jit_step = lambda fn: jax.jit(fn, donate_argnums=0, out_shardings=(shardings, None))
    step_fns = {"full": jit_step(steps.full), "subset": jit_step(steps.full),
                "curate": jit_step(steps.curate)}
    eval_fn = jax.jit(steps.eval)
    params_finite = jax.jit(lambda p: jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(p)])))
    flops = FlopLedger()
    if config.total_flops:  # a compute budget: the run's length in steps follows from it
        state["total_steps"] = jax.device_put(jnp.asarray(
            budget_steps(config, flops.per_call("full", step_fns["full"], state, abstract_batch)),
            jnp.int32), shardings["total_steps"])
        if jax.process_index() == 0:
            write_json_atomic(os.path.join(workdir, "config.json"), json.loads(config.to_json()))
    milestones = None
    if config.checkpoint.get("milestones"):
        milestones = ckpt_lib.Milestones(
            os.path.join(workdir, ckpt_lib.MILESTONES), spacing=config.checkpoint.milestones,
            full_flops=flops.per_call("full", step_fns["full"], state, abstract_batch)
            * full_data_steps(config, steps_per_epoch))

    # ----------------------------------------------------------------- restore
    checkpointer = ckpt_lib.Checkpointer(
        os.path.join(workdir, "checkpoints"), every_steps=config.checkpoint.every_steps,
        max_to_keep=config.checkpoint.max_to_keep)
    phase_index, data_state = 0, None
    if checkpointer.latest_step() is not None:
        abstract_params = abstract["params"]
        abstract_train = {k: v for k, v in abstract.items() if k != "params"}
        model_state, train_state, data_state, meta = checkpointer.restore(
            abstract_params, abstract_train, config)
        state = jax.device_put(dict(train_state, params=model_state), shardings)
        phase_index = meta["phase_index"]
        flops.load(meta.get("flops", {}))
        logging.info("resumed %s at step %d (phase %s)", workdir, int(state["step"]), phase_index)

    # ----------------------------------------------------------------- evaluator
    def evaluate() -> dict[str, float]:
        eval_loader = pipeline.make_loader(
            config.data, config.eval.split, train=False,
            batch_size=config.eval.batch_size // jax.process_count(), seed=0, num_epochs=1)
        totals: dict[str, list[float]] = {}
        for i, b in enumerate(eval_loader):
            if i >= config.eval.max_batches or len(b["index"]) * jax.process_count() < config.eval.batch_size:
                break  # in-batch retrieval is measured on full batches only
            out = eval_fn(state["params"], parallel.host_to_global(
                {k: b[k] for k in BATCH_KEYS}, mesh))
            for k, v in out.items():
                totals.setdefault(f"val/{k}", []).append(float(v))
        return {k: float(np.mean(v)) for k, v in totals.items()}

    # ----------------------------------------------------------------- loop
    phases = plan.phases(steps_per_epoch)
    step = int(state["step"])
    last_metrics: dict[str, float] = {}
    progress = run_log.Progress(total=int(state["total_steps"]), initial=step,
                                batch_size=batch, enabled=config.progress and jax.process_index() == 0)
    throughput = run_log.Throughput(step=step, batch_size=batch)
    stopped_early = False
    while phase_index < len(phases):
        phase = phases[phase_index]
        indices = plan.phase_indices(phase.name, jax.device_get(state["ledger"]))
        end_step = phase.end_step if phase.end_step >= 0 else plan.subset_end_step(
            indices, steps_per_epoch)
        if phase.name == "subset" and indices is not None:
            state["total_steps"] = jax.device_put(jnp.asarray(end_step, jnp.int32),
                                                  shardings["total_steps"])
            progress.set_total(end_step)
        it = iter(loader(indices, phase_index))
        if data_state:
            it.set_state(data_state)
        data_state = None
        pending = None  # metrics of the step before: read one step late so the host never waits
        while step < end_step:
            b = parallel.host_to_global({k: v for k, v in next(it).items() if k in BATCH_KEYS}, mesh)
            spent_before = flops.spent()
            step_fn = flops.compiled(phase.name, step_fns[phase.name], state, b)
            state, metrics = step_fn(state, b)
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
            if config.eval.every_steps and (step % config.eval.every_steps == 0 or is_last):
                with throughput.paused():
                    val = evaluate()
                if writer:
                    writer.write(step, val)
                last_metrics.update(val)
            if checkpointer.should_save(step) or step == end_step:
                check_finite(pending, step, checkpointer)
                if not bool(params_finite(state["params"])):
                    stop_run("parameters became NaN or infinite", step, checkpointer)
                meta = dict(fingerprint=ckpt_lib.fingerprint(config),
                            phase_index=phase_index + (step == end_step), flops=flops.state())
                with throughput.paused():
                    checkpointer.save(step, state["params"],
                                      {k: v for k, v in state.items() if k != "params"},
                                      it.get_state() if step < end_step else {}, meta, force=True)
            progress.update(step, last_metrics)
            if stop_at_step is not None and step >= stop_at_step:
                stopped_early = True
                break
        if stopped_early:
            break
        phase_index += 1
        if jax.process_index() == 0:
            save_ledger(workdir, jax.device_get(state["ledger"]))
    progress.close()
    checkpointer.close()
    if milestones is not None:
        milestones.close()

    # ----------------------------------------------------------------- summary
    summary = dict(
        step=step, stopped_early=stopped_early, pool_size=pool_size, wall_time_s=time.time() - t_start,
        data_fraction=plan.data_fraction(jax.device_get(state["ledger"])),
        **flops.summary(full_step_fn=step_fns["full"], state=state, batch=abstract_batch,
                        full_steps=full_data_steps(config, steps_per_epoch)),
        **{k: float(v) for k, v in last_metrics.items()})
    if writer:
        writer.close()
        write_json_atomic(os.path.join(workdir, "summary.json"), summary)
        os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
        run_log.plot_metrics(os.path.join(workdir, "metrics.jsonl"),
                             os.path.join(workdir, "plots", "metrics.png"))
        if plan.curator_name != "none" and not stopped_early:
            plan.write_report(workdir, jax.device_get(state["ledger"]), data_dir,
                              summary["compute_fraction"])
    return summary
