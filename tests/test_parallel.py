"""Mesh, sharding rules, distributed detection, and 1-device vs 8-device loss/gradient equality.

The 8-device runs happen in a subprocess (this file run as a script with 8 simulated CPU
devices) so the rest of the suite keeps its single device.
"""

import os
import re
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from chexficient.models import build_model
from chexficient.parallel import (distributed_reason, host_to_global, make_mesh, mesh_shape,
                                  param_sharding, param_spec)
from pretrain.flops import compiled_flops
from pretrain.losses import sigmoid_contrastive, softmax_contrastive

MESHES = ((4, 2), (8, 1))
MIN_SIZE = 256  # small enough that the tiny model's matrices are really sharded over fsdp


def tiny_model_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        dtype='float32', embed_dim=16, temperature_init=0.07, bias_init=-10.0,
        image=dict(image_size=16, patch_size=4, width=32, depth=2, heads=2, mlp_ratio=2.0,
                   pool='map', registers=1, feature_layers=(1,)),
        text=dict(vocab_size=64, width=32, depth=2, heads=2, mlp_ratio=2.0, max_len=8,
                  causal=True)))


def tiny_batch(rows: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.arange(8)[None] < rng.integers(1, 9, size=(rows, 1))
    return {'image': rng.normal(size=(rows, 16, 16, 1)).astype(np.float32),
            'tokens': np.where(mask, rng.integers(1, 64, size=(rows, 8)), 0).astype(np.int32),
            'text_mask': mask,
            'weights': (rng.random(rows) > 0.25).astype(np.float32)}


def loss_and_grads(data: int, fsdp: int, devices=None
                   ) -> tuple[float, dict[str, np.ndarray], int, float]:
    """(loss, {param path: grad}, number of params sharded over fsdp, FLOPs of the compiled
    step by `compiled_flops`) on a data x fsdp mesh."""
    mesh = make_mesh(ml_collections.ConfigDict(dict(data=data, fsdp=fsdp)), devices)
    graphdef, params = nnx.split(build_model(tiny_model_config(), nnx.Rngs(0)))
    shardings = param_sharding(params, mesh, min_size=MIN_SIZE)
    params = jax.device_put(params, shardings)
    batch = host_to_global(tiny_batch(), mesh)

    def loss_fn(params, batch):
        clip = nnx.merge(graphdef, params)
        img, txt = clip(batch['image'], batch['tokens'], batch['text_mask'])
        soft = softmax_contrastive(img, txt, clip.logit_scale[...], batch['weights'])[0]
        sig = sigmoid_contrastive(img, txt, clip.logit_scale[...], clip.logit_bias[...],
                                  batch['weights'])[0]
        return soft + sig

    step = jax.jit(jax.value_and_grad(loss_fn), out_shardings=(None, shardings))
    loss, grads = step(params, batch)
    flops = compiled_flops(step.lower(params, batch).compile())
    flat = {jax.tree_util.keystr(k): np.asarray(g)
            for k, g in jax.tree_util.tree_leaves_with_path(grads)}
    sharded = sum('fsdp' in s.spec for s in jax.tree.leaves(shardings))
    return float(loss), flat, sharded, flops


def test_one_device_equals_eight_devices(tmp_path):
    out = tmp_path / 'eight.npz'
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8',
               JAX_PLATFORMS='cpu')
    subprocess.run([sys.executable, __file__, str(out)], env=env, check=True, timeout=600)
    loss, grads, _, flops = loss_and_grads(1, 1, jax.devices('cpu')[:1])
    results = np.load(out)
    for data, fsdp in MESHES:
        tag = f'{data}x{fsdp}'
        np.testing.assert_allclose(results[f'{tag}/loss'], loss, rtol=1e-5)
        # the whole step's FLOPs, not one device's share (replicated work counts on each)
        np.testing.assert_allclose(results[f'{tag}/flops'], flops, rtol=0.1)
        if fsdp > 1:
            assert results[f'{tag}/sharded'] > 0, 'no parameter was sharded over fsdp'
        for path, grad in grads.items():
            # float32 sums in another order: error relative to the leaf's scale, not per element
            scale = np.abs(grad).max()
            assert scale > 0, path
            np.testing.assert_allclose(results[f'{tag}/grad{path}'], grad, rtol=1e-4,
                                       atol=1e-5 * scale, err_msg=f'{tag} {path}')


@pytest.mark.parametrize('data,fsdp,devices,expected', [
    (-1, 1, 8, (8, 1)), (-1, 2, 8, (4, 2)), (4, -1, 8, (4, 2)), (1, 1, 1, (1, 1)),
])
def test_mesh_shape_resolves_the_rest(data, fsdp, devices, expected):
    assert mesh_shape(data, fsdp, devices) == expected


@pytest.mark.parametrize('data,fsdp,devices,message', [
    (-1, -1, 8, 'sizes must be positive, one may be -1'), (0, 1, 8, 'one may be -1'),
    (-1, 3, 8, 'does not divide 8 devices: set --config.mesh.data and --config.mesh.fsdp'),
    (2, 2, 8, 'uses 4 devices, but there are 8: set --config.mesh.data and --config.mesh.fsdp'),
])
def test_mesh_shape_rejects_bad_sizes(data, fsdp, devices, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        mesh_shape(data, fsdp, devices)


def test_make_mesh_names_axes():
    mesh = make_mesh(ml_collections.ConfigDict(dict(data=-1, fsdp=1)), jax.devices()[:1])
    assert mesh.axis_names == ('data', 'fsdp') and mesh.shape == {'data': 1, 'fsdp': 1}


@pytest.mark.parametrize('shape,fsdp,expected', [
    ((64, 256), 2, P(None, 'fsdp')),   # largest divisible dim
    ((256, 64), 4, P('fsdp', None)),
    ((255, 64), 2, P(None, 'fsdp')),   # largest dim not divisible: next one
    ((128, 128), 2, P('fsdp', None)),  # tie: first
    ((255, 63), 2, P()),               # nothing divisible: replicate
    ((100,), 2, P()),                  # below the size threshold: replicate
    ((), 2, P()),
    ((64, 256), 1, P()),
])
def test_param_spec_rule(shape, fsdp, expected):
    assert param_spec(shape, fsdp, min_size=MIN_SIZE) == expected


def test_host_to_global_keeps_values():
    mesh = make_mesh(ml_collections.ConfigDict(dict(data=1, fsdp=1)), jax.devices()[:1])
    batch = tiny_batch(4)
    out = host_to_global(batch, mesh)
    for key, value in batch.items():
        np.testing.assert_array_equal(np.asarray(out[key]), value)
        assert out[key].sharding.spec == P(('data', 'fsdp'))
    with pytest.raises(ValueError, match="batch\\['step'\\]"):
        host_to_global({'step': np.int32(3)}, mesh)


@pytest.mark.parametrize('flag,environ,expected', [
    (False, {}, None),
    (True, {}, 'config.distributed=True'),
    (False, {'SLURM_NTASKS': '4', 'SLURM_STEP_NODELIST': 'gpu[01-04]'}, 'SLURM_NTASKS=4'),
    (False, {'SLURM_NTASKS': '4'}, None),  # inside sbatch but not an srun step: one process
    (False, {'SLURM_NTASKS': '1', 'SLURM_STEP_NODELIST': 'gpu01'}, None),
    (False, {'OMPI_COMM_WORLD_SIZE': '2'}, 'OMPI_COMM_WORLD_SIZE=2'),
    (False, {'JAX_COORDINATOR_ADDRESS': 'h0:1234'}, 'JAX_COORDINATOR_ADDRESS=h0:1234'),
    (False, {'TPU_WORKER_HOSTNAMES': 'w0,w1'}, 'TPU_WORKER_HOSTNAMES lists several hosts'),
    (False, {'TPU_WORKER_HOSTNAMES': 'w0'}, None),
])
def test_distributed_reason(flag, environ, expected):
    config = ml_collections.ConfigDict(dict(distributed=flag))
    assert distributed_reason(config, environ) == expected


def towers_from_a_checkpoint_reach_the_mesh() -> None:
    """Parameters on one device (as `init_from` loads them) become the train state on a mesh
    of all eight (`place_state`)."""
    from pretrain.train import place_state

    mesh = make_mesh(ml_collections.ConfigDict(dict(data=4, fsdp=2)))
    _, params = nnx.split(build_model(tiny_model_config(), nnx.Rngs(0)))
    loaded = jax.device_put(params, jax.devices()[0])
    shardings = param_sharding(params, mesh, min_size=MIN_SIZE)
    state = place_state(lambda p: jax.tree.map(lambda x: 2 * x, p), loaded, shardings)
    for got, want, sharding in zip(jax.tree.leaves(state), jax.tree.leaves(params),
                                   jax.tree.leaves(shardings)):
        assert got.sharding == sharding
        np.testing.assert_array_equal(np.asarray(got), 2 * np.asarray(want))


CACHE = """
import os, sys
import jax, jax.numpy as jnp
from chexficient import compilation_cache
compilation_cache.enable(sys.argv[1])
off = compilation_cache.off_for_cpu_collectives()
jax.jit(lambda x: x * 2 + 1)(jnp.ones(3)).block_until_ready()
print(off, len(os.listdir(sys.argv[1])))
"""


@pytest.mark.parametrize('devices', [1, 2])
def test_several_cpu_devices_compile_without_the_persistent_cache(devices, tmp_path):
    """A train step with collectives read back from the cache deadlocks on several CPU
    devices of one process: such a process neither reads nor writes the cache."""
    env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}',
               JAX_PLATFORMS='cpu')
    out = subprocess.run([sys.executable, '-c', CACHE, str(tmp_path / 'cache')], env=env,
                         check=True, capture_output=True, text=True).stdout.split()
    off, entries = out[0] == 'True', int(out[1])
    assert (off, entries > 0) == ((True, False) if devices > 1 else (False, True))


def main(out: str) -> None:
    """Runs every 8-device mesh of MESHES and saves losses, gradients and FLOPs to `out`."""
    assert jax.device_count() == 8, 'run with XLA_FLAGS=--xla_force_host_platform_device_count=8'
    towers_from_a_checkpoint_reach_the_mesh()
    arrays = {}
    for data, fsdp in MESHES:
        loss, grads, sharded, flops = loss_and_grads(data, fsdp)
        tag = f'{data}x{fsdp}'
        arrays |= {f'{tag}/loss': loss, f'{tag}/sharded': sharded, f'{tag}/flops': flops}
        arrays |= {f'{tag}/grad{path}': g for path, g in grads.items()}
    np.savez(out, **arrays)


if __name__ == '__main__':
    main(sys.argv[1])
