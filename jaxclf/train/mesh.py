"""The device mesh and the two shardings the loop uses: replicated and split over 'data'.

Arrays are built as global arrays from identical host data on every process
(``make_array_from_callback``), so the same code runs on one device, N local devices and
N processes.
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
