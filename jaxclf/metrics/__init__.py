"""Classification metrics as jittable functions and streaming states.

The training loop uses :func:`collection`: a set of named metrics whose state is a pytree of
sums (so it merges across batches, devices and processes by addition) with
``empty / update / merge / compute``.
"""

from jaxclf.metrics.collection import Collection, collection, names

__all__ = ["Collection", "collection", "names"]
