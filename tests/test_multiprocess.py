"""Two JAX processes on one machine (jax.distributed on localhost, CPU collectives by gloo), each
with two simulated devices, run `chexficient train` on micro with the CheXficient curator.

One chain of runs checks both claims: a 1-device run stops at step 2; two processes x two
devices resume its checkpoint and finish; one process with one device resumes their step-6
checkpoint and finishes again. Each is compared with one uninterrupted process of four
devices at the same global batch: losses, kept ids, final parameters and optimizer state.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import data_states

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# `chexficient train`, appending to $RECORD/process_<id>.jsonl each training batch this process
# loaded: its phase's seed, its stream position and its records' pool positions.
TRAIN = """
import json, os, sys
from chexficient import cli
from chexficient.data import pipeline

class Recorded:
    def __init__(self, it, path, seed):
        self._it, self._path, self._seed = it, path, seed
    def __iter__(self):
        return self
    def __next__(self):
        at = self._it.get_state()["next_index"]
        batch = next(self._it)
        with open(self._path, "a") as f:
            f.write(json.dumps([self._seed, at, batch["index"].tolist()]) + "\\n")
        return batch
    def __getattr__(self, name):
        return getattr(self._it, name)

make_loader = pipeline.make_loader
def recorded(*args, train, **kwargs):
    it = make_loader(*args, train=train, **kwargs)
    path = os.path.join(os.environ["RECORD"], f"process_{os.environ.get('JAX_PROCESS_ID', 0)}.jsonl")
    return Recorded(it, path, kwargs["seed"]) if train else it
pipeline.make_loader = recorded
cli.main(["chexficient", "train", *sys.argv[1:]])
"""


def _flags(micro, workdir: str) -> list[str]:
    """A small model on micro under the CheXficient schedule: curate 4 steps, then the subset
    to step 7, a checkpoint every 2 steps, none deleted."""
    return [f"--workdir={workdir}",
            "--config=configs/chexficient.py:tiny,batch_size=32,res=64,width=64,twidth=64,"
            "embed=64,text_len=32,depth=1,tdepth=1",
            f"--config.data.name={micro.name}", f"--config.data.data_dir={micro.data_dir}",
            "--config.total_epochs=2", "--config.schedule.curation_epochs=0.5",
            "--config.curator.prototypes.warmup_batches=2",
            "--config.curator.chexficient.max_per_cluster=2",
            "--config.checkpoint.every_steps=2", "--config.checkpoint.max_to_keep=10",
            "--config.log_every_steps=1", "--config.eval.every_steps=0",
            "--config.progress=False"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(micro, workdir: str, record: str, *, processes: int, devices: int, env: dict,
           extra: tuple[str, ...] = ()) -> list[subprocess.Popen]:
    """`processes` local processes of one run, each with `devices` CPU devices, recording the
    batches each loads under `record`."""
    os.makedirs(record, exist_ok=True)
    env = dict(env, RECORD=record, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    if processes > 1:
        env.update(JAX_COORDINATOR_ADDRESS=f"localhost:{_free_port()}",
                   JAX_NUM_PROCESSES=str(processes))
    command = [sys.executable, "-c", TRAIN, *_flags(micro, workdir), *extra]
    return [subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=dict(env, JAX_PROCESS_ID=str(i)) if processes > 1 else env)
            for i in range(processes)]


def _stderr(processes: list[subprocess.Popen]) -> list[str]:
    """Each process's stderr once it has exited; only the first prints the run's summary
    (a JSON object on stdout, where gloo also says how it connected)."""
    outputs = [p.communicate(timeout=600) for p in processes]
    assert not any("{" in out for out, _ in outputs[1:]), outputs[1][0][-3000:]
    return [err for _, err in outputs]


def _wait(processes: list[subprocess.Popen]) -> list[str]:
    """Each process's stderr, once all have exited 0."""
    errors = _stderr(processes)
    for p, err in zip(processes, errors):
        assert p.returncode == 0, err[-3000:]
    return errors


GLOO_CROSSTALK = "Received data size doesn't match expected size"
"""XLA:CPU sends every gloo message under one tag: two collectives of a step in flight at once
now and then take each other's messages, and the run aborts (docs/pretraining.md)."""


def _run_to_the_end(start, tries: int = 3) -> list[str]:
    """Launches `start()` until it succeeds; only XLA:CPU's gloo crosstalk earns a relaunch,
    which resumes from the last checkpoint as after any crash."""
    for _ in range(tries - 1):
        processes = start()
        errors = _stderr(processes)
        if all(p.returncode == 0 for p in processes):
            return errors
        assert any(GLOO_CROSSTALK in e for e in errors), "\n".join(e[-3000:] for e in errors)
    return _wait(start())


def _loaded(record: str, process: int = 0) -> dict[tuple[int, int], list[int]]:
    """{(phase seed, batch number in the phase): the batch's pool positions} that a process
    loaded (a batch read again after a relaunch counts once)."""
    with open(f"{record}/process_{process}.jsonl") as f:
        rows = [json.loads(line) for line in f]
    return {(seed, at // len(index)): index for seed, at, index in rows}


def _losses(workdir: str) -> dict[int, float]:
    """The logged loss of every step (a step logged again after a resume: the last value)."""
    with open(f"{workdir}/metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    return dict(sorted({r["step"]: r["loss"] for r in rows if "loss" in r}.items()))


def _final_state(workdir: str) -> dict[str, np.ndarray]:
    """Every array of the last checkpoint, restored onto this process's one device."""
    items = ("model", "train")
    manager = ocp.CheckpointManager(f"{workdir}/checkpoints", item_names=items,
                                    item_handlers={k: ocp.StandardCheckpointHandler() for k in items})
    step = manager.latest_step()
    here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {k: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=here),
                                manager.item_metadata(step)[k]) for k in items}
    restored = manager.restore(step, args=ocp.args.Composite(
        **{k: ocp.args.StandardRestore(abstract[k]) for k in items}))
    manager.close()
    return {jax.tree_util.keystr(path): np.asarray(x)
            for path, x in jax.tree_util.tree_leaves_with_path(dict(restored))}


def _assert_same_run(got: str, want: str) -> None:
    """Kept ids and integer state (step, RNG, counters) exactly; losses, parameters and
    optimizer state to float tolerance: gloo sums across processes in another order than
    XLA does in one process, so the last bits of a reduction differ."""
    for key in ("first_kept", "cluster", "seen"):
        np.testing.assert_array_equal(np.load(f"{got}/ledger.npz")[key],
                                      np.load(f"{want}/ledger.npz")[key], err_msg=key)
    a, b = _losses(got), _losses(want)
    assert list(a) == list(b) == list(range(1, 8))
    np.testing.assert_allclose(list(a.values()), list(b.values()), rtol=1e-5)
    x, y = _final_state(got), _final_state(want)
    assert x.keys() == y.keys()
    for key in x:
        if x[key].dtype.kind in "iub":
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)
        else:  # Adam moves parameters with a zero gradient by rounding noise: steps of ~lr
            np.testing.assert_allclose(x[key], y[key], atol=1e-4, rtol=1e-4, err_msg=key)


@pytest.mark.slow
def test_two_processes_equal_one_and_checkpoints_move_between_meshes(micro, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jit_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    reference, chain, moved = (str(tmp_path / n) for n in ("reference", "chain", "moved"))
    loaded = {n: str(tmp_path / f"loaded_{n}") for n in ("4", "1", "2x2", "moved")}
    # One process with four devices, uninterrupted; meanwhile one device runs to step 2.
    running = _start(micro, reference, loaded["4"], processes=1, devices=4, env=env)
    _wait(_start(micro, chain, loaded["1"], processes=1, devices=1, env=env,
                 extra=("--stop_at_step=2",)))
    _wait(running)
    # Two processes x two devices resume the one-device checkpoint and finish.
    errors = _run_to_the_end(lambda: _start(micro, chain, loaded["2x2"], processes=2, devices=2,
                                            env=env))
    assert "resuming" in errors[0] and not errors[1]  # the second process prints nothing
    # One device resumes the two processes' checkpoint at step 6 and finishes.
    shutil.copytree(chain, moved)
    shutil.rmtree(f"{moved}/checkpoints/7")
    _wait(_start(micro, moved, loaded["moved"], processes=1, devices=1, env=env))

    # Each process loaded only its half of every global batch: side by side, the same
    # records in the same order as the one process of four devices (and the one device).
    whole = _loaded(loaded["4"])
    first, second = _loaded(loaded["2x2"], 0), _loaded(loaded["2x2"], 1)
    one, after_move = _loaded(loaded["1"]), _loaded(loaded["moved"])
    assert len(whole) == 7 and first.keys() == second.keys() and len(first) == 7 - 2
    assert sorted({**one, **first}) == sorted(whole)  # steps 1-2 on one device, 3-7 on two
    for key in first:
        a, b = first[key], second[key]
        assert len(a) == len(b) == 16 and not set(a) & set(b)
        assert a + b == whole[key]
    for key, batch in {**one, **after_move}.items():
        assert batch == whole[key]
    # One checkpoint per step, written together: arrays from both processes, no leftovers.
    assert sorted(os.listdir(f"{chain}/checkpoints")) == ["2", "4", "6", "7"]
    for item in ("model", "train"):
        assert {"ocdbt.process_0", "ocdbt.process_1"} <= set(os.listdir(f"{chain}/checkpoints/6/{item}"))
    assert data_states(chain, 6) == [{"next_index": (6 - 4) * 16}] * 2  # each process's position
    _assert_same_run(chain, reference)
    _assert_same_run(moved, reference)


# Each process: its batches' row counts for each case, then which it evaluates; and a tree
# on its first device (as a loaded reference model is) put replicated on the global mesh.
AGREE = """
import json, sys
import jax, ml_collections, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from chexficient import parallel

parallel.maybe_initialize_distributed(ml_collections.ConfigDict(dict(distributed=False)))
cases = json.loads(sys.argv[1])
kept = [[len(b["index"]) for b in parallel.full_batches(
            [{"index": np.arange(n)} for n in case[jax.process_index()]], rows=8, limit=3)]
        for case in cases]
mesh = jax.make_mesh((jax.device_count(),), ("data",))
loaded = jax.device_put({"w": np.arange(4.0)}, jax.local_devices()[0])
w = parallel.from_host(loaded, NamedSharding(mesh, P()))["w"]
print(json.dumps({"kept": kept, "w": np.asarray(w.addressable_data(0)).tolist(),
                  "then": parallel.gather_json(jax.process_index())}))
"""


def test_processes_evaluate_the_same_batches_and_share_a_loaded_model():
    """A process whose loader skipped unreadable records (shorter or fewer batches) stops
    evaluating when the others do, and all still meet at the next collective; a model
    loaded onto one device reaches a mesh over both processes (a reference model)."""
    cases = [[[4, 4, 4], [4, 4, 4]],   # all full: every batch up to the limit
             [[4, 3], [4, 4, 4]],      # process 0's second batch lost a record
             [[4], [4, 4, 4]]]         # process 0 ran out of batches
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_PROCESSES="2",
               JAX_COORDINATOR_ADDRESS=f"localhost:{_free_port()}",
               XLA_FLAGS="--xla_force_host_platform_device_count=1")
    processes = [subprocess.Popen([sys.executable, "-c", AGREE, json.dumps(cases)], cwd=REPO,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=dict(env, JAX_PROCESS_ID=str(i))) for i in range(2)]
    outputs = [p.communicate(timeout=120) for p in processes]
    for p, (_, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    for out, _ in outputs:
        result = json.loads(out.strip().splitlines()[-1])
        assert result == {"kept": [[4, 4, 4], [4], [4]], "w": [0.0, 1.0, 2.0, 3.0], "then": [0, 1]}


def test_every_process_refuses_a_resume_with_another_tokenizer(micro, tmp_path):
    """A resumed run whose tokenizer differs fails on both processes with the same error, at
    once: the second one does not go on alone and wait for the first at the coordinator."""
    from chexficient.checkpoint import RUN_TOKENIZER

    workdir = tmp_path / "run"
    (workdir / "checkpoints" / "4").mkdir(parents=True)
    (workdir / RUN_TOKENIZER).write_bytes(b"the ids of another tokenizer")
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    processes = _start(micro, str(workdir), str(tmp_path / "loaded"), processes=2, devices=1,
                       env=env)
    for p, (_, err) in zip(processes, [p.communicate(timeout=60) for p in processes]):
        assert p.returncode != 0 and "other token ids" in err, err[-3000:]
