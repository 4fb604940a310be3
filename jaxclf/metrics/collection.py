"""Named metrics for the training loop, computed from summed sufficient statistics.

A state is a dict of arrays that are sums over examples (masked by the per-example weight),
so ``merge`` is addition and the result is exact whatever the batching or sharding.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

TASKS = ("multiclass", "binary", "multilabel")


def _predictions(logits: jax.Array, task: str, threshold: float) -> jax.Array:
    """Hard labels from logits: argmax for multi-class, sigmoid >= threshold otherwise."""
    if task == "multiclass":
        return jnp.argmax(logits, axis=-1)
    probs = jax.nn.sigmoid(logits)
    if task == "binary":
        return (probs.reshape(probs.shape[0]) >= threshold).astype(jnp.int32)
    return (probs >= threshold).astype(jnp.int32)


def confusion_counts(y_true, y_pred, *, num_classes: int, weight=None) -> jax.Array:
    """(K, K) weighted counts, rows = true class, columns = predicted class."""
    y_true = y_true.reshape(-1)
    y_pred = y_pred.reshape(-1)
    w = jnp.ones(y_true.shape, jnp.float32) if weight is None else weight.reshape(-1).astype(jnp.float32)
    flat = y_true * num_classes + y_pred
    return jnp.zeros(num_classes * num_classes, jnp.float32).at[flat].add(w).reshape(
        num_classes, num_classes
    )


def _accuracy(s):
    cm = s["confusion"]
    return jnp.trace(cm) / jnp.maximum(cm.sum(), 1.0)


# name -> (compute from the state dict). Every metric reads the shared statistics.
_METRICS: dict[str, Callable[[dict], jax.Array]] = {
    "loss": lambda s: s["loss_sum"] / jnp.maximum(s["count"], 1.0),
    "accuracy": _accuracy,
}


def names() -> list[str]:
    """All metric names a config may list."""
    return sorted(_METRICS)


@dataclasses.dataclass(frozen=True)
class Collection:
    """A fixed set of metrics over one task; see module docstring."""

    metric_names: tuple[str, ...]
    num_classes: int
    task: str = "multiclass"
    threshold: float = 0.5

    @property
    def _cm_classes(self) -> int:
        return 2 if self.task in ("binary", "multilabel") else self.num_classes

    def empty(self) -> dict[str, jax.Array]:
        k = self._cm_classes
        return {
            "loss_sum": jnp.zeros((), jnp.float32),
            "count": jnp.zeros((), jnp.float32),
            "confusion": jnp.zeros((k, k), jnp.float32),
        }

    def update(self, state, *, logits, labels, loss, mask) -> dict[str, jax.Array]:
        """Adds one batch. ``loss`` is per example; ``mask`` (0/1 per example) drops padding."""
        mask = mask.astype(jnp.float32)
        preds = _predictions(logits, self.task, self.threshold)
        weight = mask
        if self.task == "multilabel":  # each (example, label) pair is one binary decision
            weight = jnp.broadcast_to(mask[:, None], labels.shape)
        batch = {
            "loss_sum": jnp.sum(loss * mask),
            "count": jnp.sum(mask),
            "confusion": confusion_counts(
                labels.astype(jnp.int32), preds, num_classes=self._cm_classes, weight=weight
            ),
        }
        return self.merge(state, batch)

    @staticmethod
    def merge(a, b) -> dict[str, jax.Array]:
        return jax.tree.map(jnp.add, a, b)

    def compute(self, state) -> dict[str, jax.Array]:
        return {name: _METRICS[name](state) for name in self.metric_names}


def collection(metric_names, *, num_classes: int, task: str = "multiclass", **options: Any) -> Collection:
    """The :class:`Collection` of ``metric_names`` ('loss' is always included).

    Raises ValueError naming the valid choices for an unknown metric or task.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    unknown = [m for m in metric_names if m not in _METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid metrics: {', '.join(names())}")
    ordered = ("loss",) + tuple(m for m in metric_names if m != "loss")
    return Collection(ordered, num_classes=num_classes, task=task, **options)
