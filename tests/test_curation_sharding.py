"""1 vs 8 (simulated) devices, explicit and auto meshes: every curator selects the same rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json
import jax, jax.numpy as jnp, ml_collections, numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P
from curation import make_curator

assert jax.device_count() == 8, jax.devices()
explicit = NamedSharding(jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,)), P("data"))
auto = NamedSharding(jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,)), P("data"))
single = jax.devices()[0]
B, D = 128, 16
rng = np.random.default_rng(0)
centers = rng.normal(size=(5, D)) * 2

def batch(step):
    r = np.random.default_rng(step)
    topic = r.integers(0, 5, B)
    image = centers[topic] + r.normal(size=(B, D))
    emb = {"image": image, "text": image + 0.5 * r.normal(size=(B, D)),
           "ref_image": image, "ref_text": image + 0.2 * r.normal(size=(B, D))}
    losses = {"learner": r.random(B) + 1, "reference": r.random(B)}
    return ({k: np.asarray(v, np.float32) for k, v in emb.items()},
            {k: np.asarray(v, np.float32) for k, v in losses.items()})

def run(name, overrides, place):
    cfg = ml_collections.ConfigDict({"curator": dict(name=name, prototypes={"warmup_batches": 2},
                                                     **overrides)})
    curator = make_curator(cfg)
    select, update = jax.jit(curator.select), jax.jit(curator.update)
    emb, _ = batch(100)
    state = curator.init(jax.random.key(0), place(emb))
    kept = []
    for step in range(3):
        emb, losses = batch(step)
        emb, losses = place(emb), place(losses)
        keep, info = select(state, emb, losses, jax.random.key(step))
        state = update(state, emb, keep)
        kept.append(np.asarray(info["indices"])[np.asarray(info["weights"]) > 0].tolist())
    return kept

placements = {"one": lambda tree: jax.device_put(tree, single),
              "explicit": lambda tree: jax.device_put(tree, explicit),
              "auto": lambda tree: jax.device_put(tree, auto)}
cases = {
    "chexficient": ("chexficient", {}),
    "loss": ("loss", {}),
    "jest": ("jest", {"jest": {"n_chunks": 4}}),
    "combined": ("combined", {}),
}
out = {case: {where: run(*args, place) for where, place in placements.items()}
       for case, args in cases.items()}
print("RESULT " + json.dumps(out))
"""


def test_one_and_eight_devices_select_the_same_rows():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    results = json.loads(line[len("RESULT "):])
    for case, runs in results.items():
        assert all(len(step) > 0 for step in runs["one"]), case
        assert runs["one"] == runs["explicit"] == runs["auto"], case
