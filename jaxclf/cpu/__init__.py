"""jaxclf's speed machinery for XLA:CPU, kept in one place and out of the models.

The models are plain Flax on every backend. What makes them fast on a CPU is applied only to
programs lowered for the CPU, and only to jaxclf's own:

* ``optimize(step)`` (``rewrite.py``): the step's convolutions run on oneDNN (``onednn.py``)
  or in layouts XLA:CPU runs fast (``conv.py``), and non-overlapping max pooling without a
  scatter (``pool.py``); decided when the program is lowered, by the platform it is lowered
  for; GPU/TPU programs and ``jax.export`` get the original operations;
* ``tune(model)``: the model's own options set as XLA:CPU runs them fastest (recurrent layers
  scan the plain cell instead of hoisting the input projection), for programs whose devices
  are CPUs;
* ``configure_process()``: process-wide settings that help XLA:CPU (glibc malloc keeps freed
  buffers, ``malloc.py``; idle OpenMP threads of oneDNN do not spin). jaxclf's entry points
  (``jaxclf.main``, ``jaxclf.sweep``, the benchmarks) call it; importing jaxclf changes nothing
  in the importing process.
"""

from __future__ import annotations

import dataclasses
import os

from jaxclf.cpu import conv, pool  # noqa: F401  (register their rewrites)
from jaxclf.cpu.rewrite import optimize

__all__ = ["configure_process", "optimize", "tune"]


def configure_process() -> dict[str, bool]:
    """Applies the CPU process settings; call before JAX runs anything. Returns what was set."""
    from jaxclf.cpu import malloc

    omp = "OMP_WAIT_POLICY" not in os.environ
    if omp:  # read by GNU OpenMP when oneDNN's library loads
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return {"malloc": malloc.keep_freed_memory(), "omp_wait_policy": omp}


def tune(model):
    """``model`` with the options XLA:CPU runs fastest: ``hoist=False`` where it has that
    field (see ``jaxclf.models.recurrent``); other models are returned as they are."""
    if "hoist" in {f.name for f in dataclasses.fields(model)}:
        return model.clone(hoist=False)
    return model
