"""Streaming states: ``empty / update / merge / compute`` for each metric family.

A spec (frozen dataclass of static settings) holds four pure functions; the state is a dict
of arrays. Every state except :class:`ExactScores` is a SUM over examples, so ``merge`` is
addition and the result does not depend on batching, order of batches or sharding: inside a
jitted step over a batch sharded on a mesh, the sums are global. Counts are float32 sums,
exact up to 2**24 examples per cell.

``sample_weight`` (a 0/1 mask is a weight) drops padding rows.

Labels outside a state's classes raise in an eager ``update``; inside jit they make the
batch's sums NaN, which merging carries to the result (:func:`is_valid` tells). Any derived
metric of a merged :class:`ConfusionMatrix` is ``compute(state, 'f1', average='macro')``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxclf.metrics import ranking
from jaxclf.metrics.ranking import SCORE_HINT
from jaxclf.metrics._common import label_check, replicated, settle, weights
from jaxclf.metrics.calibration import calibration_from_sums, reliability_sums
from jaxclf.metrics.confusion import confusion_matrix
from jaxclf.metrics.threshold import from_confusion


def is_valid(state) -> jax.Array:
    """Boolean scalar: no float in ``state`` is NaN. Labels outside the declared classes make
    a sum state NaN under jit (and NaN losses or scores do too); merging keeps it NaN."""
    leaves = [jnp.isnan(x).any() for x in jax.tree.leaves(state)
              if jnp.issubdtype(jnp.result_type(x), jnp.floating)]
    return ~jnp.stack(leaves).any() if leaves else jnp.bool_(True)


def add(a, b):
    """Merge of sum states."""
    return jax.tree.map(jnp.add, a, b)


@dataclasses.dataclass(frozen=True)
class Mean:
    """Weighted mean of a per-example value (e.g. the loss)."""

    def empty(self):
        return {"total": jnp.zeros(()), "count": jnp.zeros(())}

    def update(self, state, values, sample_weight=None):
        v = jnp.asarray(values, jnp.float32).reshape(-1)
        w = weights(sample_weight, v.shape[0])
        return add(state, {"total": (w * v).sum(), "count": w.sum()})

    merge = staticmethod(add)

    def compute(self, state):
        return state["total"] / jnp.maximum(state["count"], 1e-30) * (state["count"] > 0)


@dataclasses.dataclass(frozen=True)
class ConfusionMatrix:
    """(K, K) confusion counts; every threshold metric reads them (see ``threshold``)."""

    num_classes: int

    def empty(self):
        return {"confusion": jnp.zeros((self.num_classes,) * 2)}

    def update(self, state, y_true, y_pred, sample_weight=None):
        cm = confusion_matrix(y_true, y_pred, num_classes=self.num_classes,
                              sample_weight=sample_weight)
        return add(state, {"confusion": cm})

    merge = staticmethod(add)

    def compute(self, state, metric=None, **options):
        """The (K, K) matrix, or ``metric`` computed from it, e.g. ``compute(state, 'f1',
        average='macro')``: any name of :func:`jaxclf.metrics.from_confusion`."""
        if metric is None:
            if options:
                raise TypeError(f"options {sorted(options)} need a metric name")
            return state["confusion"]
        return from_confusion(state["confusion"], metric, **options)


@dataclasses.dataclass(frozen=True)
class BinnedAUC:
    """Per-class histograms of probabilities for positives and negatives: O(bins) memory.

    ``y_prob``: (N,) P(positive) with 0/1 ``y_true`` (one class), or (N, K) probabilities
    with class-index (N,) or indicator (N, K) ``y_true`` (one-vs-rest per class).
    ``compute`` returns per-class ``auc`` (bins as tie groups) with ``lower``/``upper`` bounds
    that always contain the exact AUC, and ``average_precision`` at bin-edge thresholds.
    """

    num_classes: int = 1
    num_bins: int = 200

    def empty(self):
        z = jnp.zeros((self.num_classes, self.num_bins))
        return {"pos": z, "neg": z}

    def update(self, state, y_true, y_prob, sample_weight=None):
        p, y = replicated(jnp.asarray(y_prob, jnp.float32), jnp.asarray(y_true))
        p = p[:, None] if p.ndim == 1 else p
        if p.shape[1] != self.num_classes:
            raise ValueError(f"BinnedAUC(num_classes={self.num_classes}) got scores of shape "
                             f"{tuple(p.shape)}; give (N,) scores with num_classes=1 or (N, K)"
                             " with num_classes=K")
        binary = p.shape[1] == 1 or y.ndim == 2
        check = label_check(y, 2 if binary else self.num_classes, sample_weight)
        onehot = (y.reshape(-1, 1) if p.shape[1] == 1 and y.ndim == 1
                  else jax.nn.one_hot(y, self.num_classes) if y.ndim == 1 else y)
        onehot = onehot.astype(jnp.float32)
        w = weights(sample_weight, p.shape[0])[:, None]
        idx = ranking.bin_index(p, self.num_bins)  # (N, C)
        ids = idx + self.num_bins * jnp.arange(self.num_classes)[None, :]
        seg = lambda v: jax.ops.segment_sum(
            v.reshape(-1), ids.reshape(-1), num_segments=self.num_classes * self.num_bins
        ).reshape(self.num_classes, self.num_bins)
        batch = {"pos": seg(w * onehot), "neg": seg(w * (1 - onehot))}
        return add(state, settle(batch, check, "y_true", SCORE_HINT))

    merge = staticmethod(add)

    def compute(self, state):
        auc, lower, upper = ranking.histogram_auc(state["pos"], state["neg"])
        return {"auc": auc, "lower": lower, "upper": upper,
                "average_precision": ranking.histogram_average_precision(
                    state["pos"], state["neg"]),
                "support": state["pos"].sum(-1)}

    def curves(self, state):
        """ROC / PR points per class at thresholds b / num_bins (see histogram_curves)."""
        return ranking.histogram_curves(state["pos"], state["neg"])


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Reliability-diagram sums per confidence bin; ``compute`` gives ECE and the diagram."""

    num_bins: int = 15

    def empty(self):
        z = jnp.zeros((self.num_bins,))
        return {"count": z, "confidence": z, "outcome": z}

    def update(self, state, y_true, y_prob, sample_weight=None):
        return add(state, reliability_sums(y_true, y_prob, num_bins=self.num_bins,
                                           sample_weight=sample_weight))

    merge = staticmethod(add)

    def compute(self, state):
        return calibration_from_sums(state)


@dataclasses.dataclass(frozen=True)
class ExactScores:
    """Fixed-capacity buffers of scores/labels/weights for exact AUC on sets that fit.

    Not a sum: ``update`` writes the batch at ``count`` and ``merge`` appends ``b``'s rows
    after ``a``'s. Rows past ``capacity`` are dropped and counted in ``overflow`` (check it
    is 0). Unused rows have weight 0, so they never count. Padding rows (weight 0) occupy
    slots, so size ``capacity`` as the padded eval set.
    ``y_prob``: (N,) binary or (N, K); ``y_true``: (N,) labels or (N, K) indicators.
    Labels are checked by ``compute`` (the roc_auc rules: raise outside jit, NaN inside).
    """

    capacity: int
    score_shape: tuple = ()
    label_shape: tuple = ()

    def empty(self):
        c = self.capacity
        return {"score": jnp.zeros((c,) + tuple(self.score_shape)),
                "label": jnp.zeros((c,) + tuple(self.label_shape), jnp.int32),
                "weight": jnp.zeros((c,)), "count": jnp.zeros((), jnp.int32),
                "overflow": jnp.zeros((), jnp.int32)}

    def _append(self, state, score, label, weight, n_valid):
        n = score.shape[0]
        rows = jnp.arange(n)
        idx = jnp.where(rows < n_valid, state["count"] + rows, self.capacity)
        new = dict(state)
        for k, v in (("score", score), ("label", label), ("weight", weight)):
            new[k] = state[k].at[idx].set(v.astype(state[k].dtype), mode="drop")
        stored = jnp.clip(self.capacity - state["count"], 0, n_valid)
        new["count"] = state["count"] + stored
        new["overflow"] = state["overflow"] + n_valid - stored
        return new

    def update(self, state, y_true, y_prob, sample_weight=None):
        score, label = replicated(jnp.asarray(y_prob, jnp.float32), jnp.asarray(y_true))
        w = weights(sample_weight, score.shape[0])
        return self._append(state, score, label, w, score.shape[0])

    def merge(self, a, b):
        out = self._append(a, b["score"], b["label"], b["weight"], b["count"])
        out["overflow"] = out["overflow"] + b["overflow"]
        return out

    def compute(self, state, **roc_auc_options):
        """Exact ``roc_auc`` and ``average_precision`` (macro for 2-D scores)."""
        s, y, w = state["score"], state["label"], state["weight"]
        opts = {k: v for k, v in roc_auc_options.items() if k != "multi_class"}
        return {"auc": ranking.roc_auc(y, s, sample_weight=w, **roc_auc_options),
                "average_precision": ranking.average_precision(y, s, sample_weight=w, **opts)}
