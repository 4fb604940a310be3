"""The device mesh and the two shardings the loop uses: replicated and split over 'data'.

Arrays are built as global arrays (``make_array_from_callback``) from identical host data on
every process, or from each process's own rows of a batch (a streamed batch is read only where
it is used), so the same code runs on one device, N local devices and N processes.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
    """The batch axis (default the leading one) split over the mesh's 'data' axis."""
    return NamedSharding(mesh, PartitionSpec(*([None] * batch_axis), DATA_AXIS))


def global_array(host: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a host array that every process holds in full (an intended
    transfer: allowed under the loop's ``jax.transfer_guard``)."""
    host = np.asarray(host)
    with jax.transfer_guard_host_to_device("allow"):
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def process_rows(sharding: NamedSharding, size: int, batch_axis: int = 0) -> np.ndarray:
    """The positions along ``batch_axis`` (of length ``size``) that this process's devices
    hold, ascending: the rows of a global batch this process must supply."""
    shape = [1] * (batch_axis + 1)
    shape[batch_axis] = size
    rows = set()
    for index in sharding.addressable_devices_indices_map(tuple(shape)).values():
        rows.update(range(*index[batch_axis].indices(size)))
    return np.asarray(sorted(rows), np.int64)


def global_array_from_rows(local: np.ndarray, rows: np.ndarray, sharding: NamedSharding, size: int,
                           batch_axis: int = 0) -> jax.Array:
    """A global array whose ``batch_axis`` has length ``size``, from this process's part of it:
    ``local`` holds positions ``rows`` (``process_rows``) of that axis. Each process supplies
    only its rows (an intended transfer, as ``global_array``)."""
    local = np.asarray(local)
    shape = (*local.shape[:batch_axis], size, *local.shape[batch_axis + 1:])

    def shard(index):
        start, stop, _ = index[batch_axis].indices(size)
        at = int(np.searchsorted(rows, start))
        return local[(*index[:batch_axis], slice(at, at + stop - start), *index[batch_axis + 1:])]

    with jax.transfer_guard_host_to_device("allow"):
        return jax.make_array_from_callback(shape, sharding, shard)
