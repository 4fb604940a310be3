"""Metric statistics: one protocol, ``empty / from_model_output / merge / compute``.

A statistic is a spec (frozen dataclass of static settings) with four pure functions; its
state is a dict of arrays. ``from_model_output`` is the state of one batch; it takes the
batch's outputs by name (``y_true``, ``y_pred``, ``y_prob``, ``values``, ``sample_weight``)
and ignores the names it does not read, so one dict of outputs feeds every statistic of a
:class:`jaxclf.metrics.Collection`. ``update(state, ...)`` is ``merge(state,
from_model_output(...))``.

Every state except :class:`ExactScores` is a SUM over examples, so ``merge`` is addition and
the result does not depend on batching, order of batches or sharding: inside a jitted step
over a batch sharded on a mesh, the sums are global. Counts are float32 sums, exact up to
2**24 examples per cell.

``sample_weight`` (a 0/1 mask is a weight) drops padding rows.

Labels outside a state's classes raise in an eager ``from_model_output``; inside jit they make
the batch's sums NaN, which merging carries to the result (:func:`is_valid` tells). Any
derived metric of a merged :class:`ConfusionMatrix` is ``compute(state, 'f1',
average='macro')``.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from jaxclf.metrics import calibration, ranking
from jaxclf.metrics._common import divide, label_check, nanaverage, replicated, settle, weights
from jaxclf.metrics.confusion import confusion_matrix, multilabel_confusion_matrix
from jaxclf.metrics.ranking import SCORE_HINT
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


class Statistic:
    """The protocol's shared part: sum states merge by addition; ``update`` adds a batch."""

    # Its sums are counted by label: a collection makes them NaN for a batch with a bad label.
    label_sums = True

    def merge(self, a, b):
        return add(a, b)

    def update(self, state, *args, **outputs):
        """``merge(state, from_model_output(...))``: the running state with one more batch."""
        return self.merge(state, self.from_model_output(*args, **outputs))


class WeightedMean(Statistic):
    """A ``total`` over a ``count`` of examples (weighted); ``compute`` is their ratio."""

    def empty(self):
        return {"total": jnp.zeros(()), "count": jnp.zeros(())}

    def compute(self, state):
        return divide(state["total"], state["count"], 0.0)


@dataclasses.dataclass(frozen=True)
class Mean(WeightedMean):
    """Weighted mean of a per-example value (e.g. the loss)."""

    label_sums = False

    def from_model_output(self, values, sample_weight=None, **_):
        v = replicated(jnp.asarray(values, jnp.float32)).reshape(-1)
        w = weights(sample_weight, v.shape[0])
        return {"total": (w * v).sum(), "count": w.sum()}


@dataclasses.dataclass(frozen=True)
class TopKAccuracy(WeightedMean):
    """Share of examples whose true class is among the ``k`` highest scores ((N, K) y_prob)."""

    k: int = 1

    def from_model_output(self, y_true, y_prob, sample_weight=None, **_):
        hits = ranking.top_k_accuracy(y_true, y_prob, k=self.k, sample_weight=sample_weight,
                                      normalize=False)
        return {"total": hits, "count": weights(sample_weight, jnp.shape(y_prob)[0]).sum()}


@dataclasses.dataclass(frozen=True)
class SubsetAccuracy(WeightedMean):
    """Share of examples whose every label is right ((N, K) indicators: exact match)."""

    def from_model_output(self, y_true, y_pred, sample_weight=None, **_):
        y, p = replicated(jnp.asarray(y_true), jnp.asarray(y_pred))
        w = weights(sample_weight, y.shape[0])
        batch = {"total": (jnp.all(p == y, -1) * w).sum(), "count": w.sum()}
        return settle(batch, label_check(y, 2, sample_weight), "y_true (indicators)")


@dataclasses.dataclass(frozen=True)
class LogLoss(WeightedMean):
    """Mean log loss of probabilities: (N,) P(positive) with 0/1 ``y_true``, (N, K) with
    class labels and ``num_classes=K``, or (N, K) per label with (N, K) indicators (binary
    terms, averaged over examples and labels)."""

    num_classes: int | None = None
    terms = staticmethod(calibration.log_loss_terms)

    def from_model_output(self, y_true, y_prob, sample_weight=None, **_):
        y, p = replicated(jnp.asarray(y_true), jnp.asarray(y_prob, jnp.float32))
        per_label = y.ndim == 2
        t = self.terms(y.reshape(-1), p.reshape(-1) if per_label else p,
                       num_classes=self.num_classes).reshape(p.shape[0], -1)
        w = weights(sample_weight, p.shape[0])
        batch = {"total": (t.sum(-1) * w).sum(), "count": w.sum() * t.shape[1]}
        return settle(batch, label_check(y, self.num_classes or 2, sample_weight), "y_true",
                      SCORE_HINT)


@dataclasses.dataclass(frozen=True)
class Brier(LogLoss):
    """Mean Brier score (the inputs of :class:`LogLoss`; binary terms halved as sklearn's)."""

    terms = staticmethod(calibration.brier_terms)


@dataclasses.dataclass(frozen=True)
class ConfusionMatrix(Statistic):
    """(K, K) confusion counts, or (K, 2, 2) per label for (N, K) indicators
    (``multilabel``); every threshold metric reads them (see ``threshold``)."""

    num_classes: int
    multilabel: bool = False

    def empty(self):
        shape = (self.num_classes, 2, 2) if self.multilabel else (self.num_classes,) * 2
        return {"confusion": jnp.zeros(shape)}

    def from_model_output(self, y_true, y_pred, sample_weight=None, **_):
        if self.multilabel:
            return {"confusion": multilabel_confusion_matrix(y_true, y_pred,
                                                             sample_weight=sample_weight)}
        return {"confusion": confusion_matrix(y_true, y_pred, num_classes=self.num_classes,
                                              sample_weight=sample_weight)}

    def compute(self, state, metric=None, **options):
        """The confusion matrix, or ``metric`` computed from it, e.g. ``compute(state, 'f1',
        average='macro')``: any name of :func:`jaxclf.metrics.from_confusion`."""
        if metric is None:
            if options:
                raise TypeError(f"options {sorted(options)} need a metric name")
            return state["confusion"]
        return from_confusion(state["confusion"], metric, **options)


@dataclasses.dataclass(frozen=True)
class BinnedAUC(Statistic):
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

    def from_model_output(self, y_true, y_prob, sample_weight=None, **_):
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
        return settle(batch, check, "y_true", SCORE_HINT)

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
class PairHistograms(Statistic):
    """Histograms of each class's probability per true class, (K, K, bins): the one-vs-one
    AUC of binned (N, K) probabilities with class labels (K^2 * bins floats)."""

    num_classes: int
    num_bins: int = 200

    def empty(self):
        return {"pairs": jnp.zeros((self.num_classes,) * 2 + (self.num_bins,))}

    def from_model_output(self, y_true, y_prob, sample_weight=None, **_):
        p, y = replicated(jnp.asarray(y_prob, jnp.float32), jnp.asarray(y_true))
        w = weights(sample_weight, p.shape[0])
        onehot = jax.nn.one_hot(y, self.num_classes) * w[:, None]  # (N, K)
        bins = jax.nn.one_hot(ranking.bin_index(p, self.num_bins), self.num_bins)
        batch = {"pairs": jnp.einsum("nt,nsb->tsb", onehot, bins)}
        return settle(batch, label_check(y, self.num_classes, sample_weight), "y_true",
                      SCORE_HINT)

    def compute(self, state, average="macro"):
        """One-vs-one AUC averaged over class pairs ('macro', or 'weighted' by the pair's
        prevalence), each pair's AUC the mean of its two one-vs-one AUCs (as sklearn)."""
        h = state["pairs"]  # [true class, score of class, bin]
        pairs = np.array(list(itertools.combinations(range(self.num_classes), 2)))
        a, b = pairs[:, 0], pairs[:, 1]
        auc_a = ranking.histogram_auc(h[a, a], h[b, a])[0]
        auc_b = ranking.histogram_auc(h[b, b], h[a, b])[0]
        support = h[:, 0].sum(-1)
        prevalence = support[a] + support[b] if average == "weighted" else None
        return nanaverage((auc_a + auc_b) / 2, prevalence)


@dataclasses.dataclass(frozen=True)
class Calibration(Statistic):
    """Reliability-diagram sums per confidence bin; ``compute`` gives ECE and the diagram.
    (N, K) indicators with (N, K) probabilities count each (example, label) as binary."""

    num_bins: int = 15

    def empty(self):
        z = jnp.zeros((self.num_bins,))
        return {"count": z, "confidence": z, "outcome": z}

    def from_model_output(self, y_true, y_prob, sample_weight=None, **_):
        if jnp.ndim(y_true) == 2:
            labels = jnp.shape(y_true)[1]
            y_true, y_prob = jnp.reshape(y_true, -1), jnp.reshape(y_prob, -1)
            if sample_weight is not None:
                sample_weight = jnp.repeat(jnp.asarray(sample_weight, jnp.float32), labels)
        return calibration.reliability_sums(y_true, y_prob, num_bins=self.num_bins,
                                            sample_weight=sample_weight)

    def compute(self, state):
        return calibration.calibration_from_sums(state)

    curves = compute  # the reliability diagram


@dataclasses.dataclass(frozen=True)
class ExactScores(Statistic):
    """Fixed-capacity buffers of scores/labels/weights for exact AUC on sets that fit.

    Not a sum: ``merge`` appends ``b``'s rows after ``a``'s. Rows past ``capacity`` are
    dropped and counted in ``overflow`` (check it is 0). Unused rows have weight 0, so they
    never count. Padding rows (weight 0) occupy slots, so size ``capacity`` as the padded
    eval set. ``y_prob``: (N,) binary or (N, K); ``y_true``: (N,) labels or (N, K)
    indicators. Labels are checked by ``compute`` (the roc_auc rules: raise outside jit, NaN
    inside).
    """

    capacity: int
    score_shape: tuple = ()
    label_shape: tuple = ()
    label_sums = False

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

    def from_model_output(self, y_true, y_prob, sample_weight=None, **_):
        score, label = replicated(jnp.asarray(y_prob, jnp.float32), jnp.asarray(y_true))
        w = weights(sample_weight, score.shape[0])
        return self._append(self.empty(), score, label, w, score.shape[0])

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
