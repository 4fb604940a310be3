"""Example-weighted means of named scalars: the metrics of models that define their own loss
(task 'generative', e.g. Sketch-RNN's reconstruction and KL terms).

The state is a pytree of sums with the statistics' protocol (``empty / from_model_output /
merge / compute``), like :class:`jaxclf.metrics.Collection`'s, so it merges across batches,
devices and processes by addition and the training loop treats both alike.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxclf.metrics.statistics import Statistic


@dataclasses.dataclass(frozen=True)
class Means(Statistic):
    """``compute`` gives, per name, the mean over examples of the batch values it saw."""

    metric_names: tuple[str, ...]
    label_sums = False

    def empty(self) -> dict[str, jax.Array]:
        return {"count": jnp.zeros(()), **{name: jnp.zeros(()) for name in self.metric_names}}

    def from_model_output(self, values: dict, weight) -> dict[str, jax.Array]:
        """The state of one batch: its ``values`` (each already a mean over the batch)
        weighted by ``weight`` = the batch's number of examples."""
        missing = sorted(set(self.metric_names) - set(values))
        if missing:
            raise ValueError(f"metric(s) {missing} are not computed by this model; it gives: "
                             f"{', '.join(sorted(values))}")
        weight = jnp.asarray(weight, jnp.float32)
        return {"count": weight, **{name: weight * jnp.asarray(values[name], jnp.float32)
                                    for name in self.metric_names}}

    def compute(self, state) -> dict[str, jax.Array]:
        count = jnp.maximum(state["count"], 1e-12)
        return {name: state[name] / count for name in self.metric_names}


def means(metric_names) -> Means:
    """The :class:`Means` of ``metric_names`` ('loss' first, always included)."""
    return Means(("loss",) + tuple(m for m in metric_names if m != "loss"))
