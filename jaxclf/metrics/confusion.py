"""Confusion matrices and the per-class counts (tp, fp, fn, tn) every threshold metric reads.

Classes are ``0 .. num_classes-1`` (static), which is sklearn with ``labels=range(num_classes)``;
a label outside them raises outside jit and makes every count NaN inside jit (see _common).
Counting is a ``segment_sum`` (a scatter-add into K*K bins): linear time, no sort, no
data-dependent shapes (unweighted: pairs of examples per scatter, see ``_count_pairs``).
Weights are float32 sums, exact for integer counts up to 2**24.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxclf.metrics._common import (as_labels, divide, is_traced, label_check, merge_checks,
                                     raise_invalid, replicated, settle, weights)


class Counts(NamedTuple):
    """Per-class one-vs-rest counts, each of shape (K,). A pytree: sums merge by addition."""

    tp: jax.Array
    fp: jax.Array
    fn: jax.Array
    tn: jax.Array


def confusion_matrix(y_true, y_pred, *, num_classes: int, sample_weight=None, normalize=None):
    """(K, K) weighted counts; rows = true class, columns = predicted class (sklearn layout).

    ``normalize``: None, 'true' (rows sum to 1), 'pred' (columns) or 'all'; empty rows give 0.
    A label outside ``0..K-1`` (in a row of nonzero weight) raises ValueError outside jit and
    makes the whole matrix NaN inside jit.
    """
    return _confusion(y_true, y_pred, num_classes, sample_weight, normalize)


BINARY_HINT = ("Without num_classes the inputs are binary (classes 0 and 1); for K classes "
               "pass num_classes=K (and for per-class ratios average='macro', 'micro', "
               "'weighted' or None)")


def _confusion(y_true, y_pred, num_classes, sample_weight=None, normalize=None, hint=""):
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be None, 'true', 'pred' or 'all', got {normalize!r}")
    t_check = label_check(jnp.asarray(y_true).reshape(-1), num_classes, sample_weight)
    p_check = label_check(jnp.asarray(y_pred).reshape(-1), num_classes, sample_weight)
    if not is_traced(t_check.bad):
        raise_invalid(t_check, "y_true", hint)
        raise_invalid(p_check, "y_pred", hint)
    cm = _count(y_true, y_pred, num_classes, sample_weight, normalize)
    return settle(cm, merge_checks(t_check, p_check)) if is_traced(t_check.bad) else cm


def _count(y_true, y_pred, num_classes, sample_weight, normalize):
    y_true = as_labels(y_true).reshape(-1)
    y_pred = as_labels(y_pred).reshape(-1)
    k2 = num_classes * num_classes
    valid = (y_true >= 0) & (y_true < num_classes) & (y_pred >= 0) & (y_pred < num_classes)
    ids = jnp.where(valid, y_true * num_classes + y_pred, k2)  # k2 = "dropped" cell
    if sample_weight is None and (k2 + 1) ** 2 <= 1 << 21:
        cm = _count_pairs(ids, k2)
    else:
        w = weights(sample_weight, y_true.shape[0])
        cm = jax.ops.segment_sum(w, ids, num_segments=k2 + 1)[:k2]
    cm = cm.reshape(num_classes, num_classes)
    if normalize is None:
        return cm
    axis = {"true": 1, "pred": 0, "all": None}[normalize]
    return divide(cm, cm.sum(axis=axis, keepdims=axis is not None), 0.0)


def _count_pairs(ids, k2):
    """Unweighted cell counts with half the scatter-adds: XLA's CPU scatter is serial, so
    count pairs of consecutive cells in a (k2+1)^2 histogram and add its two marginals."""
    base = k2 + 1
    if ids.shape[0] % 2:
        ids = jnp.concatenate([ids, jnp.full((1,), k2, ids.dtype)])
    pairs = ids.reshape(-1, 2)
    joint = jax.ops.segment_sum(jnp.ones(pairs.shape[0], jnp.int32),
                                pairs[:, 0] * base + pairs[:, 1], num_segments=base * base)
    joint = joint.reshape(base, base)
    return (joint.sum(0) + joint.sum(1))[:k2].astype(jnp.float32)


def multilabel_confusion_matrix(y_true, y_pred, *, sample_weight=None):
    """(K, 2, 2) per-label matrices ``[[tn, fp], [fn, tp]]`` for 0/1 indicator arrays (N, K).

    An entry other than 0 or 1 raises outside jit and gives NaN inside jit."""
    c = multilabel_counts(y_true, y_pred, sample_weight=sample_weight)
    return jnp.stack([jnp.stack([c.tn, c.fp], -1), jnp.stack([c.fn, c.tp], -1)], -2)


def multilabel_counts(y_true, y_pred, *, sample_weight=None) -> Counts:
    """Counts per label for indicator arrays (N, K): each (example, label) is a binary call."""
    checks = [label_check(y, 2, sample_weight) for y in (y_true, y_pred)]
    settle(None, checks[0], "y_true (indicators)")
    settle(None, checks[1], "y_pred (indicators)")
    t, p = replicated(jnp.asarray(y_true, jnp.float32), jnp.asarray(y_pred, jnp.float32))
    w = weights(sample_weight, t.shape[0])[:, None]
    tp = (w * t * p).sum(0)
    fp = (w * (1 - t) * p).sum(0)
    fn = (w * t * (1 - p)).sum(0)
    tn = (w * (1 - t) * (1 - p)).sum(0)
    return settle(Counts(tp, fp, fn, tn), merge_checks(*checks))


def counts_from_confusion(cm) -> Counts:
    """One-vs-rest counts of each class from a (K, K) confusion matrix, or of each label from
    (K, 2, 2) multi-label matrices."""
    cm = jnp.asarray(cm)
    if cm.ndim == 3:
        return Counts(cm[:, 1, 1], cm[:, 0, 1], cm[:, 1, 0], cm[:, 0, 0])
    tp = jnp.diagonal(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    tn = cm.sum() - tp - fp - fn
    return Counts(tp, fp, fn, tn)


def counts(y_true, y_pred, *, num_classes=None, sample_weight=None) -> Counts:
    """Per-class counts; 2-D ``y_pred`` is a multi-label indicator, 1-D a class index.

    ``num_classes`` defaults to 2 for 1-D labels (binary: a label above 1 is refused).
    """
    return counts_from_confusion(confusion(y_true, y_pred, num_classes=num_classes,
                                           sample_weight=sample_weight))


def confusion(y_true, y_pred, *, num_classes=None, sample_weight=None) -> jax.Array:
    """(K, K) matrix of class indices (``num_classes`` default 2: binary) or the (K, 2, 2)
    per-label matrices of 2-D indicator arrays: what :func:`from_confusion` reads."""
    if jnp.ndim(y_pred) == 2:
        return multilabel_confusion_matrix(y_true, y_pred, sample_weight=sample_weight)
    k = 2 if num_classes is None else num_classes
    return _confusion(y_true, y_pred, k, sample_weight,
                      hint=BINARY_HINT if num_classes is None else "")
