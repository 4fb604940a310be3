"""Ranking metrics of scores: ROC / precision-recall curves, ROC AUC, average precision, top-k.

Exact, with fixed shapes, inside jit. Everything starts from one sort of the scores in
ascending order with the label as tie-breaker (negatives before positives within a tie
group). Then, for each example, the weighted count of negatives (positives) scoring strictly
below its tie group is a cumulative sum read at the group's first index and carried forward
with a running max. From that:

- ROC AUC = sum over positives of (negatives below + half the tied negatives) / (P N):
  the Mann-Whitney statistic with ties counting one half, as sklearn's trapezoid;
- average precision = sum over positives of precision at their tie group's threshold / P:
  sklearn's step-wise sum over distinct thresholds (not interpolated);
- curves have one point per distinct score: the first index of each tie group.

Speed: XLA's CPU sort is fast for one 32-bit integer array and several times slower for
several arrays or floats. Without ``sample_weight`` the score is mapped to an order-preserving
int32 key and the label packed into its low bit (one uint32 sort) whenever the key range
allows (always for probabilities or |scores| < 2); otherwise (weights, wide ranges) the
general multi-array sort runs. Both give identical results.

Undefined cases (no positives or no negatives) give ``zero_division`` (nan for ROC AUC, where
sklearn raises; 0.0 for average precision, as sklearn). Scores must be finite: outside jit a
NaN/inf raises ValueError; inside jit mask such rows with ``sample_weight`` 0 (their value
then does not matter). Multi-class averages skip classes whose score is undefined (absent from y_true).
Labels outside the classes of the scores (0/1 for (N,) scores, ``0..K-1`` for (N, K)) raise
outside jit and give NaN inside jit.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxclf.metrics._common import (check_finite, divide, invalidate, is_traced, jit_metric,
                                     label_check, nanaverage, raise_invalid, replicated,
                                     weights)

SCORE_HINT = ("Scores of shape (N,) are binary and need 0/1 labels; scores (N, K) need class "
              "indices in [0, K) or (N, K) 0/1 indicators")


class Sorted(NamedTuple):
    """Examples sorted by (score, label) ascending, with tie-group bookkeeping."""

    score: jax.Array  # sorted scores (float32)
    pos: jax.Array  # weight if positive else 0
    neg: jax.Array  # weight if negative else 0
    start: jax.Array  # True at the first index of each tie group
    pos_below: jax.Array  # positive weight strictly below the example's tie group
    neg_below: jax.Array  # negative weight strictly below the example's tie group


def score_key(score) -> jax.Array:
    """Order-preserving int32 key of float32 scores (total order, -0. == +0.)."""
    s = jnp.asarray(score, jnp.float32) + 0.0  # -0. -> +0.
    b = lax.bitcast_convert_type(s, jnp.int32)
    return jnp.where(b < 0, b ^ jnp.int32(0x7FFFFFFF), b)


def _key_to_score(key) -> jax.Array:
    return lax.bitcast_convert_type(jnp.where(key < 0, key ^ jnp.int32(0x7FFFFFFF), key),
                                    jnp.float32)


def _sort_general(key, label, w):
    key, label, w = lax.sort((key, label, w), num_keys=2)
    return key, label, w


def _sort_packed(key, label):
    """One uint32 sort of (key - min) * 2 + label; valid when the key range is below 2**31."""
    kmin = key.min().astype(jnp.uint32)
    packed = ((key.astype(jnp.uint32) - kmin) << 1) | label.astype(jnp.uint32)
    packed = lax.sort(packed)
    key = ((packed >> 1) + kmin).astype(jnp.int32)
    return key, (packed & 1).astype(jnp.int32)


# XLA:CPU lowers cumsum/cummax to a reduce_window; a log-depth associative scan is 2-4x faster
def _cumsum(x):
    return lax.associative_scan(jnp.add, x)


def _cummax(x):
    return lax.associative_scan(jnp.maximum, x)


def sort_scores(y_true, y_score, sample_weight=None) -> Sorted:
    """Sorts one binary problem (1-D ``y_true`` 0/1, 1-D ``y_score``); see module docstring."""
    y, y_score = replicated(jnp.asarray(y_true).reshape(-1).astype(jnp.int32),
                            jnp.asarray(y_score, jnp.float32).reshape(-1))
    key = score_key(y_score)
    if sample_weight is None:
        span = key.max().astype(jnp.uint32) - key.min().astype(jnp.uint32)
        skey, slab = lax.cond(span < jnp.uint32(2**31), _sort_packed,
                              lambda k, l: _sort_general(k, l, l)[:2], key, y)
        w = jnp.ones(skey.shape, jnp.float32)
    else:
        w = weights(sample_weight, y.shape[0])
        skey, slab, w = _sort_general(key, y, w)
    pos = jnp.where(slab == 1, w, 0.0)
    neg = jnp.where(slab == 1, 0.0, w)
    start = jnp.concatenate([jnp.ones((1,), bool), skey[1:] != skey[:-1]])
    # cumulative sums are non-decreasing, so a running max carries the value at each
    # group's first index forward over the whole group.
    pos_below = _cummax(jnp.where(start, _cumsum(pos) - pos, 0.0))
    neg_below = _cummax(jnp.where(start, _cumsum(neg) - neg, 0.0))
    return Sorted(_key_to_score(skey), pos, neg, start, pos_below, neg_below)


# ---- binary problems ----

def binary_roc_auc(y_true, y_score, sample_weight=None, zero_division=float("nan")):
    """Exact ROC AUC of one binary problem (ties count one half)."""
    s = sort_scores(y_true, y_score, sample_weight)
    p, n = s.pos.sum(), s.neg.sum()
    # negatives of a tie group precede its positives: cumsum(neg) at a positive = below + tied
    tied = _cumsum(s.neg) - s.neg_below
    u = (s.pos * (s.neg_below + 0.5 * tied)).sum()
    return divide(u, p * n, zero_division)


def binary_average_precision(y_true, y_score, sample_weight=None, zero_division=0.0):
    """Sum over distinct thresholds of (recall step) x precision, sklearn's definition."""
    s = sort_scores(y_true, y_score, sample_weight)
    p, n = s.pos.sum(), s.neg.sum()
    tp = p - s.pos_below  # weight of positives scoring >= the example's group score
    fp = n - s.neg_below
    prec = divide(tp, tp + fp, 0.0)
    return divide((s.pos * prec).sum(), p, zero_division)


def _compact(valid, arrays, fill):
    """Moves entries where ``valid`` to the front (order kept); the rest repeat ``fill``."""
    idx = jnp.where(valid, jnp.cumsum(valid) - 1, valid.shape[0])
    return [jnp.full_like(a, f).at[idx].set(a, mode="drop") for a, f in zip(arrays, fill)]


def _thresholds(s: Sorted) -> jax.Array:
    """Group starts whose group has weight: zero-weight rows (padding) make no threshold,
    as sklearn drops them. At or above a threshold the weight grows with each real group."""
    start = s.start[::-1]
    above = (s.pos.sum() + s.neg.sum() - s.pos_below - s.neg_below)[::-1]
    seen = _cummax(jnp.where(start, above, 0.0))
    prev = jnp.concatenate([jnp.zeros((1,)), seen[:-1]])
    return (start & (above > prev))[::-1]


def _trim(curve, padded: bool, extra):
    """Padded curve as is, or (outside jit) trimmed to sklearn's arrays."""
    if padded:
        return curve
    if is_traced(curve[0]):
        raise ValueError("curves have data-dependent length: under jit pass padded=True "
                         "(fixed-length arrays + a valid mask)")
    n = int(curve[-1].sum())
    return tuple(np.asarray(x)[: n + e] for x, e in zip(curve[:-1], extra))


@jax.jit
def _roc_points(y, y_score, sample_weight):
    s = sort_scores(y, y_score, sample_weight)
    p, n = s.pos.sum(), s.neg.sum()
    start = _thresholds(s)[::-1]  # descending thresholds = group starts from the end
    tpr = divide((p - s.pos_below)[::-1], p, jnp.nan)
    fpr = divide((n - s.neg_below)[::-1], n, jnp.nan)
    thr = s.score[::-1]
    fpr, tpr, thr = _compact(start, [fpr, tpr, thr], [fpr[-1], tpr[-1], thr[-1]])
    zero = jnp.zeros((1,), jnp.float32)
    fpr = jnp.concatenate([zero, fpr]) * jnp.where(n > 0, 1.0, jnp.nan)
    tpr = jnp.concatenate([zero, tpr]) * jnp.where(p > 0, 1.0, jnp.nan)
    thr = jnp.concatenate([zero + jnp.inf, thr])
    valid = jnp.arange(thr.shape[0]) < start.sum() + 1
    return fpr, tpr, thr, valid


def roc_curve(y_true, y_score, *, pos_label=1, sample_weight=None, padded=False):
    """(fpr, tpr, thresholds) like ``sklearn.metrics.roc_curve(drop_intermediate=False)``.

    One point per distinct score, thresholds decreasing, first point (0, 0) at threshold inf.
    ``padded=True`` (required under jit) returns length N+1 arrays and a boolean ``valid``
    mask; valid points come first and padding repeats the last point, so the padded arrays
    plot and integrate (trapezoid) exactly like the trimmed ones.
    """
    check_finite(y_score, "y_score")
    y, check = _binary_labels(y_true, pos_label, sample_weight)
    return _trim(invalidate(_roc_points(y, y_score, sample_weight), check), padded, (0, 0, 0))


def _binary_labels(y_true, pos_label, sample_weight):
    """0/1 positives of a binary problem, checked (labels 0 or 1, ``pos_label`` one of them)."""
    if pos_label not in (0, 1):
        raise ValueError(f"pos_label must be 0 or 1, got {pos_label!r}")
    y = jnp.asarray(y_true).reshape(-1)
    check = label_check(y, 2, sample_weight)
    raise_invalid(check, "y_true", "curves are of binary problems")
    return (y == pos_label).astype(jnp.int32), check


@jax.jit
def _pr_points(y, y_score, sample_weight):
    s = sort_scores(y, y_score, sample_weight)
    p = s.pos.sum()
    tp = p - s.pos_below
    fp = s.neg.sum() - s.neg_below
    prec = divide(tp, tp + fp, 0.0)
    rec = jnp.where(p > 0, divide(tp, p, 1.0), 1.0)
    start = _thresholds(s)
    prec, rec, thr = _compact(start, [prec, rec, s.score], [1.0, 0.0, jnp.inf])
    one = jnp.ones((1,), jnp.float32)
    prec, rec = jnp.concatenate([prec, one]), jnp.concatenate([rec, 0 * one])
    thr = jnp.concatenate([thr, jnp.inf * one])
    valid = jnp.arange(prec.shape[0]) < start.sum() + 1
    return prec, rec, thr, valid


def precision_recall_curve(y_true, y_score, *, pos_label=1, sample_weight=None, padded=False):
    """(precision, recall, thresholds) like ``sklearn.metrics.precision_recall_curve``.

    Thresholds increase; precision and recall have one more entry, the final point (1, 0).
    With no positives recall is 1 everywhere (as sklearn). ``padded=True`` (required under
    jit) returns length N+1 arrays (thresholds padded with +inf) and a ``valid`` mask for
    precision/recall; the first ``valid.sum() - 1`` thresholds are real.
    """
    check_finite(y_score, "y_score")
    y, check = _binary_labels(y_true, pos_label, sample_weight)
    return _trim(invalidate(_pr_points(y, y_score, sample_weight), check), padded, (0, 0, -1))


# ---- multi-class / multi-label averaging ----

def _one_vs_rest(binary_fn, y_true, y_score, num_classes, average, sample_weight, zd):
    """Per-class binary scores over columns, averaged (macro/weighted/micro/None)."""
    y_score = jnp.asarray(y_score)
    k = y_score.shape[1] if num_classes is None else num_classes
    y_true = jnp.asarray(y_true)
    onehot = (jax.nn.one_hot(y_true, k, dtype=jnp.int32) if y_true.ndim == 1
              else y_true.astype(jnp.int32))
    n = onehot.shape[0]
    if average == "micro":
        w = None if sample_weight is None else jnp.repeat(weights(sample_weight, n), k)
        return binary_fn(onehot.reshape(-1), y_score.reshape(-1), w, zd)
    per_class = jax.vmap(lambda t, s: binary_fn(t, s, sample_weight, zd), in_axes=1)(
        onehot, y_score)
    if average is None:
        return per_class
    if average == "macro":
        return nanaverage(per_class)
    if average == "weighted":
        support = (weights(sample_weight, n)[:, None] * onehot).sum(0)
        return nanaverage(per_class, support)
    raise ValueError(f"average must be 'macro', 'weighted', 'micro' or None, got {average!r}")


def _one_vs_one(y_true, y_score, k, average, sample_weight, zd):
    """Hand & Till: mean over class pairs of the two-way AUCs on the pair's examples."""
    pairs = np.array(list(itertools.combinations(range(k), 2)), np.int32)
    y = jnp.asarray(y_true).reshape(-1)
    w = weights(sample_weight, y.shape[0])
    y_score = jnp.asarray(y_score)

    def pair(ab):
        a, b = ab[0], ab[1]
        in_pair = ((y == a) | (y == b)).astype(jnp.float32) * w
        auc_a = binary_roc_auc(y == a, y_score[:, a], in_pair, zd)
        auc_b = binary_roc_auc(y == b, y_score[:, b], in_pair, zd)
        return (auc_a + auc_b) / 2, in_pair.sum()

    scores, prevalence = jax.vmap(pair)(jnp.asarray(pairs))
    if average == "macro":
        return nanaverage(scores)
    if average == "weighted":
        return nanaverage(scores, prevalence)
    raise ValueError(f"multi_class='ovo' supports average 'macro' or 'weighted', got {average!r}")


def score_labels(y_true, y_score, sample_weight=None, num_classes=None):
    """The LabelCheck of ``y_true`` against the classes of ``y_score`` (see SCORE_HINT)."""
    binary = jnp.ndim(y_score) == 1 or jnp.ndim(y_true) == 2
    k = 2 if binary else (jnp.shape(y_score)[1] if num_classes is None else num_classes)
    return label_check(y_true, k, sample_weight)


def _binary_column(y_true, y_score):
    """(N, 1) scores with 1-D labels are a binary problem's (N,) scores (a (B, 1) logit)."""
    y_score = jnp.asarray(y_score)
    if y_score.ndim == 2 and y_score.shape[1] == 1 and jnp.ndim(y_true) == 1:
        return y_score[:, 0]
    return y_score


@jit_metric("num_classes", "multi_class", "average", finite=("y_score",), hint=SCORE_HINT)
def roc_auc(y_true, y_score, *, num_classes=None, multi_class="ovr", average="macro",
            sample_weight=None, zero_division=float("nan")):
    """Exact area under the ROC curve, like ``sklearn.metrics.roc_auc_score``.

    1-D ``y_score``: binary (``y_true`` 0/1, score of the positive class). 2-D ``y_score``
    with 1-D ``y_true``: multi-class, ``multi_class`` 'ovr' (average macro / weighted /
    micro / None) or 'ovo' (macro / weighted by pair prevalence); with 2-D ``y_true``:
    multi-label (per column). ``num_classes`` defaults to ``y_score.shape[1]``.
    Unlike sklearn, 'ovo' accepts ``sample_weight`` and scores need not sum to one.
    """
    y_score = _binary_column(y_true, y_score)
    check = score_labels(y_true, y_score, sample_weight, num_classes)
    if y_score.ndim == 1:
        value = binary_roc_auc(y_true, y_score, sample_weight, zero_division)
    elif multi_class == "ovo" and jnp.ndim(y_true) == 1:
        k = y_score.shape[1] if num_classes is None else num_classes
        value = _one_vs_one(y_true, y_score, k, average, sample_weight, zero_division)
    elif multi_class not in ("ovr", "ovo"):
        raise ValueError(f"multi_class must be 'ovr' or 'ovo', got {multi_class!r}")
    else:
        value = _one_vs_rest(binary_roc_auc, y_true, y_score, num_classes, average,
                             sample_weight, zero_division)
    return invalidate(value, check), check


@jit_metric("num_classes", "average", "pos_label", finite=("y_score",), hint=SCORE_HINT)
def average_precision(y_true, y_score, *, num_classes=None, average="macro", pos_label=1,
                      sample_weight=None, zero_division=0.0):
    """Average precision (area under the step PR curve), like ``average_precision_score``.

    1-D ``y_score``: binary. 2-D: one-vs-rest over columns (multi-class labels are
    one-hot encoded, as sklearn), averaged macro / weighted / micro / None.
    """
    y_score = _binary_column(y_true, y_score)
    check = score_labels(y_true, y_score, sample_weight, num_classes)
    if y_score.ndim == 1:
        if pos_label not in (0, 1):
            raise ValueError(f"pos_label must be 0 or 1, got {pos_label!r}")
        y = jnp.asarray(y_true).reshape(-1) == pos_label
        value = binary_average_precision(y, y_score, sample_weight, zero_division)
    else:
        value = _one_vs_rest(binary_average_precision, y_true, y_score, num_classes, average,
                             sample_weight, zero_division)
    return invalidate(value, check), check


@jit_metric("k", "normalize", finite=("y_score",), hint=SCORE_HINT)
def top_k_accuracy(y_true, y_score, *, k=1, normalize=True, sample_weight=None):
    """Share of examples whose true class is among the k highest scores (no sort).

    Ties are broken as sklearn's reversed stable argsort: among equal scores the higher class
    index ranks first. 1-D scores (binary): k=1 thresholds at 0.5 for scores in [0, 1] else
    at 0, k>=2 is always a hit (sklearn's rule).
    """
    y, s = replicated(jnp.asarray(y_true).reshape(-1).astype(jnp.int32),
                      jnp.asarray(y_score, jnp.float32))
    w = weights(sample_weight, y.shape[0])
    if s.ndim == 1:
        thr = jnp.where((s.min() >= 0) & (s.max() <= 1), 0.5, 0.0)
        hit = ((s > thr).astype(jnp.int32) == y) if k == 1 else jnp.ones(y.shape, bool)
    else:
        true_score = jnp.take_along_axis(s, y[:, None], axis=1)
        idx = jnp.arange(s.shape[1])[None, :]
        ahead = (s > true_score) | ((s == true_score) & (idx > y[:, None]))
        hit = ahead.sum(1) < k
    total = (w * hit).sum()
    check = score_labels(y, s, sample_weight)
    return invalidate(divide(total, w.sum(), 0.0) if normalize else total, check), check


# ---- binned score histograms (streaming AUC) ----

def bin_index(prob, num_bins: int) -> jax.Array:
    """Bin of a probability in [0, 1]: floor(p * num_bins), clipped; monotone in p."""
    return jnp.clip(jnp.floor(prob * num_bins).astype(jnp.int32), 0, num_bins - 1)


def histogram_auc(pos_hist, neg_hist):
    """(auc, lower, upper) from per-bin positive/negative weights (last axis = bins).

    Bins are tie groups for the estimate (a pair within one bin counts one half). The exact
    AUC of the unbinned scores lies in [lower, upper]: within-bin pairs counted 0 or 1.
    """
    neg_below = jnp.cumsum(neg_hist, -1) - neg_hist
    den = pos_hist.sum(-1) * neg_hist.sum(-1)
    lower = divide((pos_hist * neg_below).sum(-1), den, jnp.nan)
    within = divide((pos_hist * neg_hist).sum(-1), den, jnp.nan)
    return lower + 0.5 * within, lower, lower + within


def histogram_average_precision(pos_hist, neg_hist):
    """Average precision with thresholds at the bin edges (last axis = bins)."""
    tp = jnp.cumsum(pos_hist[..., ::-1], -1)[..., ::-1]  # weight with bin >= b
    fp = jnp.cumsum(neg_hist[..., ::-1], -1)[..., ::-1]
    prec = divide(tp, tp + fp, 0.0)
    return divide((pos_hist * prec).sum(-1), pos_hist.sum(-1), 0.0)


def histogram_curves(pos_hist, neg_hist):
    """ROC and PR points at thresholds ``b / num_bins`` (predict positive if p >= threshold).

    Returns a dict of arrays over bins (last axis), thresholds increasing:
    ``thresholds, tp, fp, fn, tn, tpr, fpr, precision, recall``; append (fpr, tpr) = (0, 0)
    to close the ROC curve.
    """
    nb = pos_hist.shape[-1]
    tp = jnp.cumsum(pos_hist[..., ::-1], -1)[..., ::-1]
    fp = jnp.cumsum(neg_hist[..., ::-1], -1)[..., ::-1]
    p, n = pos_hist.sum(-1, keepdims=True), neg_hist.sum(-1, keepdims=True)
    return {
        "thresholds": jnp.arange(nb, dtype=jnp.float32) / nb,
        "tp": tp, "fp": fp, "fn": p - tp, "tn": n - fp,
        "tpr": divide(tp, p, jnp.nan), "fpr": divide(fp, n, jnp.nan),
        "precision": divide(tp, tp + fp, 0.0), "recall": divide(tp, p, jnp.nan),
    }


def best_thresholds(pos_hist, neg_hist):
    """Thresholds (bin lower edges) maximising F1 and Youden's J = TPR - FPR (binary)."""
    c = histogram_curves(pos_hist, neg_hist)
    f1 = divide(2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"], 0.0)
    youden = jnp.nan_to_num(c["tpr"] - c["fpr"], nan=-jnp.inf)
    # NaN histograms (bad labels under jit) have no best threshold
    poisoned = jnp.isnan(pos_hist.sum(-1) + neg_hist.sum(-1))
    pick = lambda score: jnp.where(poisoned, jnp.nan, c["thresholds"][jnp.argmax(score, -1)])
    return pick(f1), pick(youden)
