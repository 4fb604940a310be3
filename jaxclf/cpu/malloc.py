"""glibc malloc settings under which XLA:CPU reuses its large per-execution buffers.

XLA:CPU allocates each execution's temporaries anew (ResNet-20 at batch 128: 302 MiB in
blocks of 72 MiB). glibc serves a block over 32 MiB, or over 64 MiB from a thread's own
arena, with a fresh ``mmap`` and unmaps it on free, so every train step faulted in and
zeroed all of it again: 77,000 page faults per ResNet-20 step, 15-20% of its time. With
one arena, no ``mmap`` and no trimming, freed blocks stay in the heap and the next step
reuses them. The cost: the heap keeps its peak size, as a caching allocator does.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

OPT_OUT = "JAXCLF_SYSTEM_MALLOC"  # set to 1 to leave malloc as it is
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8  # <malloc.h>
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**31 - 1))


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # glibc, not musl  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def keep_freed_memory() -> bool:
    """Applies the settings above on Linux with glibc unless ``JAXCLF_SYSTEM_MALLOC=1``;
    returns whether they were applied. A thread that has already allocated keeps its own
    arena, so this must run before JAX starts its threads: jaxclf's entry points call it
    (``jaxclf.cpu.configure_process``) first thing; importing jaxclf does not."""
    libc = _glibc()
    if libc is None or os.environ.get(OPT_OUT, "0") not in ("", "0"):
        return False
    if _jax_started():
        logging.getLogger(__name__).warning(
            "JAX ran before jaxclf.cpu.configure_process(): XLA's threads keep glibc's defaults and map "
            "large buffers afresh at every call (see jaxclf/cpu/malloc.py); call it first")
    return all(libc.mallopt(param, value) == 1 for param, value in SETTINGS)


def _jax_started() -> bool:
    """Whether a JAX backend (and so its thread pool) exists already."""
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
        return xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # private API: no warning rather than an error
        return False

