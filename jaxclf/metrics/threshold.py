"""Metrics of hard predictions, all derived from per-class counts (:class:`Counts`).

Every ratio metric is ``num / den`` of counts, so one helper (:func:`ratio`) does the
averaging for all of them:

- ``'binary'``: the class ``pos_label`` only (needs 2 classes);
- ``'micro'``: sum numerators and denominators over classes, then divide;
- ``'macro'``: unweighted mean of per-class ratios (NaN ratios ignored, as sklearn);
- ``'weighted'``: mean weighted by support (true count) of each class;
- ``None``: the per-class vector.

Undefined ratios (zero denominator) take ``zero_division`` (0.0, 1.0 or nan; see _common).
Classes are ``0..num_classes-1``: sklearn with ``labels=range(num_classes)``. Without
``num_classes`` class-index inputs are binary (0/1; other labels are refused), so averages
over classes ('micro', 'macro', 'weighted', None) need ``num_classes``; 2-D indicator
inputs need none.

Every metric here is a function of the confusion matrix: :func:`from_confusion` computes any
of them from a (merged, streamed) matrix, and the functions of labels are
``from_confusion(confusion(y_true, y_pred), ...)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxclf.metrics._common import (as_labels, divide, label_check, merge_checks, nanaverage,
                                     settle, weights)
from jaxclf.metrics.confusion import Counts, confusion, counts_from_confusion

AVERAGES = ("binary", "micro", "macro", "weighted", None)

# How a binary run picks its decision threshold (config ``decision.rule``): rule -> the
# evaluated scalar that holds it (None: ``decision.threshold`` as given).
DECISION_RULES = {"fixed": None, "best_f1": "best_f1_threshold", "best_youden": "best_youden_threshold"}

# name -> (numerator, denominator) of the per-class counts.
RATES = {
    "precision": lambda c: (c.tp, c.tp + c.fp),
    "recall": lambda c: (c.tp, c.tp + c.fn),  # sensitivity, true positive rate
    "specificity": lambda c: (c.tn, c.tn + c.fp),  # true negative rate
    "npv": lambda c: (c.tn, c.tn + c.fn),  # negative predictive value
    "fpr": lambda c: (c.fp, c.fp + c.tn),  # fall-out, type I error rate
    "fnr": lambda c: (c.fn, c.fn + c.tp),  # miss rate, type II error rate
}


def fbeta_parts(c: Counts, beta: float):
    """F-beta as a ratio of counts: (1+b²)tp / ((1+b²)tp + b² fn + fp) (sklearn's form)."""
    b2 = beta * beta
    return (1 + b2) * c.tp, (1 + b2) * c.tp + b2 * c.fn + c.fp


def ratio(num, den, c: Counts, *, average="binary", pos_label=1, zero_division=0.0):
    """Averages a per-class ratio num/den (arrays (K,)) as described in the module docstring."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    if average == "micro":
        return divide(num.sum(), den.sum(), zero_division)
    per_class = divide(num, den, zero_division)
    if average is None:
        return per_class
    if average == "binary":
        if per_class.shape[0] != 2:
            raise ValueError("average='binary' needs num_classes=2; use 'macro', 'micro', "
                             "'weighted' or None for more classes or multi-label inputs")
        if pos_label not in (0, 1):
            raise ValueError(f"pos_label must be 0 or 1 for average='binary', got {pos_label!r}")
        return per_class[pos_label]
    return nanaverage(per_class, c.tp + c.fn if average == "weighted" else None)


def _needs_classes(y_pred, num_classes, average):
    """Class-index inputs averaged over classes need num_classes (sklearn infers it)."""
    if num_classes is None and average != "binary" and jnp.ndim(y_pred) != 2:
        raise ValueError(f"average={average!r} over class indices needs num_classes=K (the "
                         "classes are not inferred from the data, which jit cannot see)")


def _rate_fn(name: str, doc: str):
    def fn(y_true, y_pred, *, num_classes=None, average="binary", pos_label=1,
           sample_weight=None, zero_division=0.0):
        _needs_classes(y_pred, num_classes, average)
        cm = confusion(y_true, y_pred, num_classes=num_classes, sample_weight=sample_weight)
        return from_confusion(cm, name, average=average, pos_label=pos_label,
                              zero_division=zero_division)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = doc + """

    ``y_true``/``y_pred``: class indices (N,) or multi-label 0/1 indicators (N, K).
    ``num_classes`` (static): without it 1-D inputs are binary (labels 0/1); averages over
    classes of 1-D inputs need it. See the module docstring for ``average`` and
    ``zero_division``.
    """
    return fn


precision = _rate_fn("precision", "tp / (tp + fp): of the predicted positives, the share right.")
recall = _rate_fn("recall", "tp / (tp + fn): sensitivity, true positive rate (TPR).")
sensitivity = recall
specificity = _rate_fn("specificity", "tn / (tn + fp): true negative rate (TNR).")
npv = _rate_fn("npv", "tn / (tn + fn): negative predictive value.")
fpr = _rate_fn("fpr", "fp / (fp + tn): false positive rate, the type I error rate.")
fnr = _rate_fn("fnr", "fn / (fn + tp): false negative rate, the type II error rate.")


def fbeta(y_true, y_pred, *, beta: float, num_classes=None, average="binary", pos_label=1,
          sample_weight=None, zero_division=0.0):
    """F-beta: weighted harmonic mean of precision and recall (recall counts beta times)."""
    _needs_classes(y_pred, num_classes, average)
    cm = confusion(y_true, y_pred, num_classes=num_classes, sample_weight=sample_weight)
    return from_confusion(cm, "fbeta", beta=beta, average=average, pos_label=pos_label,
                          zero_division=zero_division)


def f1(y_true, y_pred, *, num_classes=None, average="binary", pos_label=1, sample_weight=None,
       zero_division=0.0):
    """F1 = 2 tp / (2 tp + fp + fn), the harmonic mean of precision and recall."""
    return fbeta(y_true, y_pred, beta=1.0, num_classes=num_classes, average=average,
                 pos_label=pos_label, sample_weight=sample_weight, zero_division=zero_division)


def accuracy(y_true, y_pred, *, normalize=True, sample_weight=None, num_classes=None):
    """Share of correct predictions; for multi-label (N, K) inputs the exact-match ratio.

    Accuracy needs no classes; with ``num_classes`` labels outside them are refused (raise
    outside jit, NaN inside), as 2-D inputs that are not 0/1 indicators always are.
    """
    t, p = as_labels(y_true), as_labels(y_pred)
    correct = (t == p) if t.ndim == 1 else jnp.all(t == p, axis=-1)
    w = weights(sample_weight, t.shape[0])
    total = (w * correct).sum()
    value = divide(total, w.sum(), 0.0) if normalize else total
    k = 2 if t.ndim == 2 else num_classes
    if k is None:
        return value
    checks = [label_check(y, k, sample_weight) for y in (y_true, y_pred)]
    settle(None, checks[0], "y_true")
    return settle(value, merge_checks(*checks), "y_pred")


# ---- metrics of a whole confusion matrix (multi-class aware) ----

def balanced_accuracy_from_confusion(cm, *, adjusted=False):
    """Mean recall over classes present in y_true; ``adjusted`` rescales chance to 0."""
    support = cm.sum(1)
    present = support > 0
    per_class = jnp.where(present, jnp.diagonal(cm) / jnp.where(present, support, 1.0), 0.0)
    n = present.sum()
    score = divide(per_class.sum(), n, jnp.nan)
    if adjusted:
        chance = divide(1.0, n, jnp.nan)
        score = (score - chance) / (1 - chance)
    return score


def mcc_from_confusion(cm, *, zero_division=0.0):
    """Matthews correlation (Gorodkin's multi-class R_K); 0.0 when undefined, as sklearn."""
    t, p = cm.sum(1), cm.sum(0)
    n = cm.sum()
    cov_tp = jnp.trace(cm) * n - t @ p
    cov_pp = n * n - p @ p
    cov_tt = n * n - t @ t
    den = cov_tt * cov_pp
    return divide(cov_tp, jnp.sqrt(jnp.maximum(den, 0.0)), zero_division)


def kappa_from_confusion(cm, *, weights=None, zero_division=float("nan")):
    """Cohen's kappa: 1 - observed / expected disagreement (sklearn ``replace_undefined_by``)."""
    k = cm.shape[0]
    idx = jnp.arange(k, dtype=jnp.float32)
    if weights is None:
        w = 1.0 - jnp.eye(k)
    elif weights == "linear":
        w = jnp.abs(idx[:, None] - idx[None, :])
    elif weights == "quadratic":
        w = (idx[:, None] - idx[None, :]) ** 2
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")
    n = cm.sum()
    expected = jnp.outer(cm.sum(1), cm.sum(0)) / jnp.where(n > 0, n, 1.0)
    return 1.0 - divide((w * cm).sum(), (w * expected).sum(), 1.0 - zero_division)


def balanced_accuracy(y_true, y_pred, *, num_classes=None, sample_weight=None, adjusted=False):
    """Mean per-class recall over classes present in ``y_true`` (sklearn semantics).

    Without ``num_classes`` the labels are binary (0/1; others are refused)."""
    cm = confusion(y_true, y_pred, num_classes=num_classes, sample_weight=sample_weight)
    return from_confusion(cm, "balanced_accuracy", adjusted=adjusted)


def matthews_corrcoef(y_true, y_pred, *, num_classes=None, sample_weight=None):
    """Matthews correlation coefficient in [-1, 1]; 0 for a constant predictor.

    Without ``num_classes`` the labels are binary (0/1; others are refused)."""
    cm = confusion(y_true, y_pred, num_classes=num_classes, sample_weight=sample_weight)
    return from_confusion(cm, "matthews_corrcoef")


def cohen_kappa(y_true, y_pred, *, num_classes=None, weights=None, sample_weight=None,
                zero_division=float("nan")):
    """Cohen's kappa with ``weights`` None / 'linear' / 'quadratic' (ordinal classes).

    Without ``num_classes`` the labels are binary (0/1; others are refused)."""
    cm = confusion(y_true, y_pred, num_classes=num_classes, sample_weight=sample_weight)
    return from_confusion(cm, "cohen_kappa", weights=weights, zero_division=zero_division)


# ---- any metric from a confusion matrix ----

def _ratio_metric(name):
    def fn(cm, *, average="binary", pos_label=1, zero_division=0.0):
        c = counts_from_confusion(cm)
        num, den = RATES[name](c)
        return ratio(num, den, c, average=average, pos_label=pos_label,
                     zero_division=zero_division)
    return fn


def _fbeta_metric(beta):
    def fn(cm, *, beta=beta, average="binary", pos_label=1, zero_division=0.0):
        c = counts_from_confusion(cm)
        num, den = fbeta_parts(c, beta)
        return ratio(num, den, c, average=average, pos_label=pos_label,
                     zero_division=zero_division)
    return fn


def _pooled(cm):
    """(K, 2, 2) multi-label matrices pool into one 2x2 matrix of all (example, label) calls."""
    cm = jnp.asarray(cm, jnp.float32)
    return cm.sum(0) if cm.ndim == 3 else cm


FROM_CONFUSION = {
    **{name: _ratio_metric(name) for name in RATES},
    "sensitivity": _ratio_metric("recall"),
    "f1": _fbeta_metric(1.0),
    "fbeta": _fbeta_metric(None),
    "accuracy": lambda cm: divide(jnp.trace(_pooled(cm)), _pooled(cm).sum(), 0.0),
    "balanced_accuracy": lambda cm, *, adjusted=False: balanced_accuracy_from_confusion(
        _pooled(cm), adjusted=adjusted),
    "matthews_corrcoef": lambda cm: mcc_from_confusion(_pooled(cm)),
    "cohen_kappa": lambda cm, *, weights=None, zero_division=float("nan"):
        kappa_from_confusion(_pooled(cm), weights=weights, zero_division=zero_division),
}
FROM_CONFUSION["mcc"] = FROM_CONFUSION["matthews_corrcoef"]


def from_confusion(cm, metric: str, **options) -> jax.Array:
    """``metric`` computed from a confusion matrix, e.g. a merged statistic's state.

    ``cm``: (K, K) counts (rows true, columns predicted; :func:`confusion_matrix`,
    :class:`ConfusionMatrix`, a collection's ``state['confusion']['confusion']``) or
    (K, 2, 2) multi-label matrices (accuracy, balanced accuracy, MCC and kappa then pool all
    (example, label) calls). ``metric``: one of :data:`FROM_CONFUSION` ('f1', 'precision', 'recall',
    'specificity', 'npv', 'fpr', 'fnr', 'fbeta', 'accuracy', 'balanced_accuracy',
    'matthews_corrcoef'/'mcc', 'cohen_kappa'); ``options`` are that function's (``average``,
    ``pos_label``, ``zero_division``, ``beta``, ``adjusted``, ``weights``). A NaN matrix (bad
    labels under jit) gives NaN.
    """
    if metric not in FROM_CONFUSION:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(sorted(FROM_CONFUSION))}")
    if metric == "fbeta" and options.get("beta") is None:
        raise ValueError("metric 'fbeta' needs beta=<float>")
    try:
        return FROM_CONFUSION[metric](cm, **options)
    except TypeError as e:
        raise TypeError(f"{metric}: {e}") from None
