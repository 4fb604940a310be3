"""Example-weighted means of named scalars: the metrics of models that define their own loss
(task 'generative', e.g. Sketch-RNN's reconstruction and KL terms).

The state is a pytree of sums, like :class:`jaxclf.metrics.Collection`'s, so it merges across
batches, devices and processes by addition and the training loop treats both alike.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Means:
    """``compute`` gives, per name, the mean over examples of the batch values ``update`` saw."""

    metric_names: tuple[str, ...]

    def empty(self) -> dict[str, jax.Array]:
        return {"count": jnp.zeros(()), **{name: jnp.zeros(()) for name in self.metric_names}}

    def from_model_output(self, *, values: dict, weight) -> dict[str, jax.Array]:
        """The state of one batch: ``update(empty(), values, weight=weight)``."""
        return self.update(self.empty(), values, weight=weight)

    def update(self, state, values: dict, *, weight) -> dict[str, jax.Array]:
        """Adds batch-level ``values`` (each already a mean over the batch) with ``weight`` =
        the batch's number of examples."""
        missing = sorted(set(self.metric_names) - set(values))
        if missing:
            raise ValueError(f"metric(s) {missing} are not computed by this model; it gives: {', '.join(sorted(values))}")
        weight = jnp.asarray(weight, jnp.float32)
        out = {"count": state["count"] + weight}
        for name in self.metric_names:
            out[name] = state[name] + weight * jnp.asarray(values[name], jnp.float32)
        return out

    def merge(self, a, b) -> dict[str, jax.Array]:
        return jax.tree.map(jnp.add, a, b)

    def compute(self, state) -> dict[str, jax.Array]:
        count = jnp.maximum(state["count"], 1e-12)
        return {name: state[name] / count for name in self.metric_names}


def means(metric_names) -> Means:
    """The :class:`Means` of ``metric_names`` ('loss' first, always included)."""
    return Means(("loss",) + tuple(m for m in metric_names if m != "loss"))
