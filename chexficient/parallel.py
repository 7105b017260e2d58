"""Device mesh ('data', 'fsdp'), parameter and batch shardings, host-local -> global arrays.

One process per host. Parameters are sharded over 'fsdp' by a shape rule and batches over both
axes; everything else (losses, collectives) is left to XLA under `jax.jit` on global arrays.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ('data', 'fsdp')
MIN_SHARD_SIZE = 2 ** 14  # parameters with fewer elements stay replicated

log = logging.getLogger(__name__)


def distributed_reason(config: ml_collections.ConfigDict,
                       environ: Mapping[str, str] = os.environ) -> str | None:
    """Why this process is one of several (config flag or launcher environment), else None.

    Multi-process when any of: `config.distributed` is True; SLURM srun with SLURM_NTASKS > 1
    (SLURM_STEP_NODELIST set, i.e. inside a job step); Open MPI with OMPI_COMM_WORLD_SIZE > 1;
    JAX_COORDINATOR_ADDRESS set (then JAX_NUM_PROCESSES and JAX_PROCESS_ID give the rest);
    TPU_WORKER_HOSTNAMES listing more than one host; MEGASCALE_COORDINATOR_ADDRESS (multislice).
    Cloud TPU VM pod slices may set none of these: pass `--config.distributed=True` there.
    """
    if config.get('distributed', False):
        return 'config.distributed=True'
    if int(environ.get('SLURM_NTASKS', '1')) > 1 and 'SLURM_STEP_NODELIST' in environ:
        return f"SLURM_NTASKS={environ['SLURM_NTASKS']}"
    if int(environ.get('OMPI_COMM_WORLD_SIZE', '1')) > 1:
        return f"OMPI_COMM_WORLD_SIZE={environ['OMPI_COMM_WORLD_SIZE']}"
    for name in ('JAX_COORDINATOR_ADDRESS', 'MEGASCALE_COORDINATOR_ADDRESS'):
        if environ.get(name):
            return f'{name}={environ[name]}'
    if len([h for h in environ.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]) > 1:
        return 'TPU_WORKER_HOSTNAMES lists several hosts'
    return None


def maybe_initialize_distributed(config: ml_collections.ConfigDict) -> bool:
    """Calls `jax.distributed.initialize()` when `distributed_reason` says so; returns whether it did.

    Must run before any other JAX call. Coordinator, process count and id are auto-detected by JAX
    (SLURM, Open MPI, TPU) unless JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID say.
    """
    reason = distributed_reason(config)
    if reason is None:
        return False
    env = os.environ
    count, pid = env.get('JAX_NUM_PROCESSES'), env.get('JAX_PROCESS_ID')
    log.info('multi-process run (%s): initialising jax.distributed', reason)
    jax.distributed.initialize(coordinator_address=env.get('JAX_COORDINATOR_ADDRESS'),
                               num_processes=None if count is None else int(count),
                               process_id=None if pid is None else int(pid))
    log.info('process %d of %d, %d local / %d global devices', jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


def mesh_shape(data: int, fsdp: int, num_devices: int) -> tuple[int, int]:
    """Resolves one -1 axis to "the rest of the devices"; the product must use every device."""
    sizes = (data, fsdp)
    fix = ('set --config.mesh.data and --config.mesh.fsdp to sizes whose product is the '
           'device count (one may be -1: the rest)')
    if sizes.count(-1) > 1 or any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f'mesh data={data}, fsdp={fsdp}: sizes must be positive, one may be -1')
    known = math.prod(s for s in sizes if s != -1)
    if num_devices % known:
        raise ValueError(f'mesh data={data}, fsdp={fsdp} does not divide {num_devices} devices: '
                         + fix)
    resolved = tuple(num_devices // known if s == -1 else s for s in sizes)
    if math.prod(resolved) != num_devices:
        raise ValueError(f'mesh data={data}, fsdp={fsdp} uses {math.prod(resolved)} devices, '
                         f'but there are {num_devices}: ' + fix)
    return resolved


def make_mesh(mesh_config: ml_collections.ConfigDict,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ('data', 'fsdp') mesh over all (global) devices from `config.mesh.{data,fsdp}`.

    Axes are `AxisType.Auto` so that jit-compiled code on global arrays is partitioned by XLA.
    """
    devices = jax.devices() if devices is None else list(devices)
    shape = mesh_shape(mesh_config.data, mesh_config.fsdp, len(devices))
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                         devices=devices)


def param_spec(shape: Sequence[int], fsdp: int, min_size: int = MIN_SHARD_SIZE) -> P:
    """Shards the largest dim divisible by `fsdp` (first on ties) if size >= min_size."""
    candidates = [axis for axis, n in enumerate(shape) if n % fsdp == 0]
    if fsdp == 1 or math.prod(shape) < min_size or not candidates:
        return P()
    axis = max(candidates, key=lambda a: shape[a])
    return P(*(('fsdp' if a == axis else None) for a in range(len(shape))))


def param_sharding(state, mesh: Mesh, min_size: int = MIN_SHARD_SIZE):
    """Pytree of NamedSharding matching `state` (arrays or ShapeDtypeStructs), by `param_spec`."""
    fsdp = mesh.shape['fsdp']
    return jax.tree.map(
        lambda leaf: NamedSharding(mesh, param_spec(getattr(leaf, 'shape', ()), fsdp, min_size)),
        state)


def from_host(tree, sharding):
    """`tree` copied through the host onto `sharding` (one, or a matching pytree). Arrays
    committed to one device (a loaded checkpoint) cannot move straight onto a mesh that spans
    other processes' devices; host values can, as every process holds the same ones."""
    return jax.device_put(jax.device_get(tree), sharding)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over both mesh axes; other dims replicated."""
    return NamedSharding(mesh, P(MESH_AXES))


def host_to_global(batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's rows of every field become one global array sharded by `batch_sharding`."""
    sharding = batch_sharding(mesh)
    per_host = mesh.size // jax.process_count()
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] % per_host:
            raise ValueError(f'batch[{key!r}] has shape {value.shape}: its leading dim must be '
                             f'divisible by the {per_host} devices of this host')
        out[key] = jax.make_array_from_process_local_data(sharding, value)
    return out


def to_host(tree):
    """Global arrays as numpy on every process: gathered from the others where this process
    does not hold all of an array. A collective: every process must call it."""
    def fetch(x: jax.Array) -> np.ndarray:
        if x.is_fully_addressable:
            return np.asarray(jax.device_get(x))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.tree.map(fetch, tree)


def gather_json(value) -> list:
    """Every process's JSON-able `value`, in process order (a collective; one process: [value])."""
    if jax.process_count() == 1:
        return [value]
    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    sizes = multihost_utils.process_allgather(np.array([data.size], np.int32)).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:data.size] = data
    rows = multihost_utils.process_allgather(padded)
    return [json.loads(bytes(row[:size])) for row, size in zip(rows, sizes)]


def full_batches(batches: Iterable[dict], rows: int, limit: int) -> Iterator[dict]:
    """Up to `limit` of this process's `batches` while every process has a full one (`rows`
    rows of the global batch in all; a collective per batch). Each process's loader skips its
    unreadable records on its own (`data.on_error=skip`), so one may run short while another
    does not: all stop together, or the next collective waits for a process that has left."""
    it = iter(batches)
    for _ in range(limit):
        batch = next(it, None)
        held = 0 if batch is None else len(batch["index"])
        if min(gather_json(held)) * jax.process_count() < rows:
            return
        yield batch
