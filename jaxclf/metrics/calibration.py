"""Probabilistic metrics: log loss, Brier score, expected calibration error (ECE).

Inputs are probabilities, as in sklearn: 1-D ``y_prob`` is P(class 1) of a binary problem,
2-D is (N, K) class probabilities. ECE bins by ``floor(p * num_bins)`` (the same binning as
the streaming AUC histograms) and is ``sum_b |sum of outcomes_b - sum of confidences_b| / N``:
for 1-D inputs the confidence is P(positive) and the outcome y (sklearn's
``calibration_curve``); for 2-D it is the top-label confidence and whether the top label
is right (Guo et al., 2017). Labels outside the classes of ``y_prob`` (0/1 for (N,), ``0..K-1``
for (N, K)) raise outside jit and give NaN inside jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxclf.metrics._common import divide, invalidate, jit_metric, replicated, settle, weights
from jaxclf.metrics.ranking import SCORE_HINT, bin_index, score_labels


def _two_columns(y_prob):
    """(N,) P(positive) -> (N, 2); (N, K) unchanged."""
    p = jnp.asarray(y_prob, jnp.float32)
    return jnp.stack([1 - p, p], -1) if p.ndim == 1 else p


def log_loss_terms(y_true, y_prob, *, num_classes=None):
    """Per-example -log p(true class), p clipped to [eps, 1-eps] (float32 eps, sklearn's
    rule) so a confident mistake costs ~16, not inf."""
    p = _two_columns(y_prob)
    k = p.shape[1] if num_classes is None else num_classes
    eps = jnp.finfo(jnp.float32).eps
    onehot = jax.nn.one_hot(jnp.asarray(y_true).reshape(-1), k, dtype=jnp.float32)
    return -(onehot * jnp.log(jnp.clip(p, eps, 1 - eps))).sum(-1)


def brier_terms(y_true, y_prob, *, num_classes=None, pos_label=1, scale_by_half="auto"):
    """Per-example squared error of the probability vector against the one-hot truth;
    'auto' halves it for binary inputs (then it is (p - y)^2), as sklearn."""
    y = jnp.asarray(y_true).reshape(-1)
    if jnp.ndim(y_prob) == 1:
        y = (y == pos_label).astype(jnp.int32)
    p = _two_columns(y_prob)
    k = p.shape[1] if num_classes is None else num_classes
    half = (k < 3) if scale_by_half == "auto" else bool(scale_by_half)
    return ((p - jax.nn.one_hot(y, k, dtype=jnp.float32)) ** 2).sum(-1) * (0.5 if half else 1.)


def _mean(terms, sample_weight, normalize=True):
    w = weights(sample_weight, terms.shape[0])
    total = (w * terms).sum()
    return divide(total, w.sum(), 0.0) if normalize else total


@jit_metric("num_classes", "normalize", finite=("y_prob",), hint=SCORE_HINT)
def log_loss(y_true, y_prob, *, num_classes=None, normalize=True, sample_weight=None):
    """Mean negative log-likelihood of the true class (see :func:`log_loss_terms`)."""
    check = score_labels(y_true, y_prob, sample_weight, num_classes)
    return invalidate(_mean(log_loss_terms(y_true, y_prob, num_classes=num_classes),
                            sample_weight, normalize), check), check


@jit_metric("num_classes", "pos_label", "scale_by_half", finite=("y_prob",), hint=SCORE_HINT)
def brier_score(y_true, y_prob, *, num_classes=None, sample_weight=None, pos_label=1,
                scale_by_half="auto"):
    """Mean squared error of the probability vector against the one-hot truth.

    ``scale_by_half='auto'`` halves it for binary inputs (then it is the usual (p - y)^2
    mean in [0, 1]), as sklearn's ``brier_score_loss``.
    """
    if jnp.ndim(y_prob) == 1 and pos_label not in (0, 1):
        raise ValueError(f"pos_label must be 0 or 1, got {pos_label!r}")
    check = score_labels(y_true, y_prob, sample_weight, num_classes)
    return invalidate(_mean(brier_terms(y_true, y_prob, num_classes=num_classes,
                                        pos_label=pos_label, scale_by_half=scale_by_half),
                            sample_weight), check), check


def reliability_sums(y_true, y_prob, *, num_bins=15, sample_weight=None):
    """Per-bin sums ``count, confidence, outcome`` (each (num_bins,)): a streamable state."""
    p, y = replicated(jnp.asarray(y_prob, jnp.float32), jnp.asarray(y_true).reshape(-1))
    if p.ndim == 1:
        conf, outcome = p, y.astype(jnp.float32)
    else:
        conf, outcome = p.max(-1), (jnp.argmax(p, -1) == y).astype(jnp.float32)
    w = weights(sample_weight, conf.shape[0])
    b = bin_index(conf, num_bins)
    seg = lambda v: jax.ops.segment_sum(v, b, num_segments=num_bins)
    sums = {"count": seg(w), "confidence": seg(w * conf), "outcome": seg(w * outcome)}
    return settle(sums, score_labels(y, p, sample_weight), "y_true", SCORE_HINT)


def calibration_from_sums(sums):
    """ECE, maximum calibration error and the reliability diagram from per-bin sums.

    Returns a dict: ``ece``, ``mce`` (scalars) and per bin ``bin_edges`` (num_bins + 1),
    ``count``, ``mean_confidence``, ``mean_outcome`` (nan for empty bins).
    """
    n = sums["count"]
    gap = jnp.abs(sums["outcome"] - sums["confidence"])
    nb = n.shape[-1]
    return {
        "ece": divide(gap.sum(), n.sum(), jnp.nan),
        "mce": jnp.max(jnp.where(n > 0, divide(gap, n, 0.0), n * 0.0)),  # NaN sums: NaN
        "bin_edges": jnp.linspace(0.0, 1.0, nb + 1),
        "count": n,
        "mean_confidence": divide(sums["confidence"], n, jnp.nan),
        "mean_outcome": divide(sums["outcome"], n, jnp.nan),
    }


def _diagram(y_true, y_prob, num_bins, sample_weight):
    sums = reliability_sums(y_true, y_prob, num_bins=num_bins, sample_weight=sample_weight)
    check = score_labels(y_true, y_prob, sample_weight)
    return invalidate(calibration_from_sums(sums), check), check


@jit_metric("num_bins", finite=("y_prob",), hint=SCORE_HINT)
def reliability_diagram(y_true, y_prob, *, num_bins=15, sample_weight=None):
    """The data to plot a reliability diagram (and the ECE); see :func:`calibration_from_sums`."""
    return _diagram(y_true, y_prob, num_bins, sample_weight)


@jit_metric("num_bins", finite=("y_prob",), hint=SCORE_HINT)
def expected_calibration_error(y_true, y_prob, *, num_bins=15, sample_weight=None):
    """ECE: the weighted mean gap between confidence and accuracy over equal-width bins."""
    diagram, check = _diagram(y_true, y_prob, num_bins, sample_weight)
    return diagram["ece"], check
