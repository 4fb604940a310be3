"""Named metrics for the training loop, computed from summed sufficient statistics.

A state is a dict of arrays that are sums over examples (masked by the per-example weight),
so ``merge`` is addition and the result is exact whatever the batching or sharding. Only the
statistics the listed metrics need are kept:

- ``count``: the examples (sum of the mask); ``loss_sum``: for the mean loss, kept only when
  'loss' is listed (then ``update`` needs ``loss=``);
- ``confusion``: (K, K) counts (binary: 2x2; multilabel: (K, 2, 2) per label, pooled to one
  2x2 matrix for accuracy / balanced_accuracy / mcc / cohen_kappa);
- ``hist_pos``, ``hist_neg``: (C, num_bins) histograms of probabilities per class, for ROC AUC
  (with lower/upper bounds), average precision, best thresholds and curves;
- ``pair_hist``: (K, K, num_bins) histograms of each class's probability per true class, for
  one-vs-one AUC (K^2 * num_bins floats; only when ``roc_auc_ovo`` is listed);
- ``calib_*``: reliability sums for ECE; ``log_loss_sum``, ``brier_sum``, ``topk_hits``;
- ``auc_mode='exact'`` instead keeps fixed-capacity score buffers (``capacity`` rows; not a
  sum, merged by appending; see :class:`streaming.ExactScores`).

Probabilities: softmax of logits (multiclass), sigmoid (binary: P(positive); multilabel: per
label). Hard predictions: argmax, or probability >= ``threshold``. In a multilabel task every
(example, label) pair is one binary decision: 'accuracy' is the per-label (Hamming) accuracy,
'subset_accuracy' the exact-match ratio, '*_macro' average over labels.

Labels outside the task's classes (multiclass ``0..K-1``, binary 0/1, multilabel 0/1
indicators) in rows of nonzero mask raise in an eager ``update``; under jit they make every
label-dependent sum of the batch NaN (``loss_sum`` and ``count`` stay), so the merged state
and its metrics are NaN (``streaming.is_valid(state)`` is False). Any confusion-matrix metric
of a state is ``from_confusion(state['confusion'], name, ...)``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxclf.metrics import calibration, ranking, streaming, threshold as thr
from jaxclf.metrics._common import (divide, invalidate, label_check, nanaverage, replicated,
                                     settle)
from jaxclf.metrics.calibration import calibration_from_sums
from jaxclf.metrics.confusion import confusion_matrix, multilabel_confusion_matrix

TASKS = ("multiclass", "binary", "multilabel")
ALL = frozenset(TASKS)


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
    return confusion_matrix(y_true, y_pred, num_classes=num_classes, sample_weight=weight)


@dataclasses.dataclass(frozen=True)
class _Metric:
    stats: tuple[str, ...]
    fn: Callable  # (collection, state) -> scalar
    tasks: frozenset = ALL


# ---- readers of the state ----

def _from_confusion(name):
    return lambda c, s: thr.from_confusion(s["confusion"], name)


def _rate(name, average):
    return lambda c, s: thr.from_confusion(s["confusion"], name, average=average,
                                           zero_division=c.zero_division)


def _binned(c, s):
    return ranking.histogram_auc(s["hist_pos"], s["hist_neg"])


def _auc(average):
    def fn(c, s):
        if c.auc_mode == "exact":
            ex = s["exact"]
            y = ex["label"]
            check = label_check(y, 2 if c.task != "multiclass" else c.num_classes,
                                ex["weight"])
            if c.task == "multiclass" and average == "micro":
                y = jax.nn.one_hot(y, c.num_classes, dtype=jnp.int32)
            return invalidate(ranking.roc_auc(y, ex["score"], sample_weight=ex["weight"],
                                              average=average), check)
        if average == "micro":
            return ranking.histogram_auc(s["hist_pos"].sum(0), s["hist_neg"].sum(0))[0]
        auc = _binned(c, s)[0]
        weight = s["hist_pos"].sum(-1) if average == "weighted" else None
        return nanaverage(auc, weight)
    return fn


def _auc_bound(i):
    return lambda c, s: nanaverage(_binned(c, s)[i])


def _ovo(average):
    def fn(c, s):
        if c.auc_mode == "exact":
            ex = s["exact"]
            return ranking.roc_auc(ex["label"], ex["score"], sample_weight=ex["weight"],
                                   multi_class="ovo", average=average)
        h = s["pair_hist"]  # [true class, score of class, bin]
        pairs = np.array(list(itertools.combinations(range(c.num_classes), 2)))
        a, b = pairs[:, 0], pairs[:, 1]
        auc_a = ranking.histogram_auc(h[a, a], h[b, a])[0]
        auc_b = ranking.histogram_auc(h[b, b], h[a, b])[0]
        support = h[:, 0].sum(-1)
        prevalence = support[a] + support[b] if average == "weighted" else None
        return nanaverage((auc_a + auc_b) / 2, prevalence)
    return fn


def _average_precision(c, s):
    if c.auc_mode == "exact":
        ex = s["exact"]
        return ranking.average_precision(ex["label"], ex["score"], sample_weight=ex["weight"])
    return nanaverage(ranking.histogram_average_precision(s["hist_pos"], s["hist_neg"]))


def _cell(i, j):
    return lambda c, s: s["confusion"][i, j]


def _mean(key):
    return lambda c, s: divide(s[key], s["count"] * c._values_per_example, 0.0)


_METRICS: dict[str, _Metric] = {
    "loss": _Metric(("loss",), lambda c, s: divide(s["loss_sum"], s["count"], 0.0)),
    "accuracy": _Metric(("confusion",), _from_confusion("accuracy")),
    "subset_accuracy": _Metric(("subset",), lambda c, s: divide(s["subset_hits"],
                                                                 s["count"], 0.0),
                               frozenset({"multilabel"})),
    "balanced_accuracy": _Metric(("confusion",), _from_confusion("balanced_accuracy")),
    "mcc": _Metric(("confusion",), _from_confusion("matthews_corrcoef")),
    "cohen_kappa": _Metric(("confusion",), _from_confusion("cohen_kappa")),
    "log_loss": _Metric(("log_loss",), _mean("log_loss_sum")),
    "brier": _Metric(("brier",), _mean("brier_sum")),
    "ece": _Metric(("calibration",), lambda c, s: calibration_from_sums(
        {k: s["calib_" + k] for k in ("count", "confidence", "outcome")})["ece"]),
    "roc_auc": _Metric(("auc",), _auc("macro")),
    "roc_auc_ovr": _Metric(("auc",), _auc("macro")),
    "roc_auc_ovr_weighted": _Metric(("auc",), _auc("weighted")),
    "roc_auc_micro": _Metric(("auc",), _auc("micro")),
    "roc_auc_lower": _Metric(("hist",), _auc_bound(1)),
    "roc_auc_upper": _Metric(("hist",), _auc_bound(2)),
    "roc_auc_ovo": _Metric(("ovo",), _ovo("macro"), frozenset({"multiclass"})),
    "roc_auc_ovo_weighted": _Metric(("ovo",), _ovo("weighted"), frozenset({"multiclass"})),
    "average_precision": _Metric(("auc",), _average_precision),
}
for _name in ("precision", "recall", "specificity", "npv", "fpr", "fnr", "f1"):
    for _avg in ("macro", "micro", "weighted"):
        _METRICS[f"{_name}_{_avg}"] = _Metric(("confusion",), _rate(_name, _avg))
    _METRICS[_name] = _Metric(("confusion",), _rate(_name, "binary"), frozenset({"binary"}))
_METRICS["sensitivity"] = _METRICS["recall"]
for _name, (_i, _j) in {"tn": (0, 0), "fp": (0, 1), "fn": (1, 0), "tp": (1, 1)}.items():
    _METRICS[_name] = _Metric(("confusion",), _cell(_i, _j), frozenset({"binary"}))
_METRICS["best_f1_threshold"] = _Metric(("hist",), lambda c, s: ranking.best_thresholds(
    s["hist_pos"][0], s["hist_neg"][0])[0], frozenset({"binary"}))
_METRICS["best_youden_threshold"] = _Metric(("hist",), lambda c, s: ranking.best_thresholds(
    s["hist_pos"][0], s["hist_neg"][0])[1], frozenset({"binary"}))
_TOPK = re.compile(r"top(\d+)_accuracy$")


def _lookup(name: str) -> _Metric:
    m = _TOPK.match(name)
    if m:
        return _Metric((f"top{m.group(1)}",), lambda c, s: divide(
            s[f"top{m.group(1)}_hits"], s["count"], 0.0), frozenset({"multiclass"}))
    return _METRICS[name]


def names() -> list[str]:
    """All metric names a config may list ('topK_accuracy' works for any K)."""
    return sorted(_METRICS) + ["top5_accuracy"]


@dataclasses.dataclass(frozen=True)
class Collection:
    """A fixed set of metrics over one task; see module docstring."""

    metric_names: tuple[str, ...]
    num_classes: int
    task: str = "multiclass"
    threshold: float = 0.5
    num_bins: int = 200  # score histogram bins for binned AUC
    calibration_bins: int = 15
    auc_mode: str = "binned"  # or 'exact' (needs capacity)
    capacity: int = 0  # exact mode: rows of the score buffers (padded eval set size)
    zero_division: float = 0.0

    @property
    def _cm_classes(self) -> int:
        return 2 if self.task in ("binary", "multilabel") else self.num_classes

    @property
    def _score_classes(self) -> int:
        return 1 if self.task == "binary" else self.num_classes

    @property
    def _values_per_example(self) -> int:
        return self.num_classes if self.task == "multilabel" else 1

    @property
    def _stats(self) -> set[str]:
        stats = set()
        for name in self.metric_names:
            stats.update(_lookup(name).stats)
        if "auc" in stats or ("ovo" in stats and self.auc_mode == "exact"):
            stats.add("exact" if self.auc_mode == "exact" else "hist")
        if "ovo" in stats and self.auc_mode != "exact":
            stats.add("pair_hist")
        return stats

    def _exact(self):
        shape = () if self.task == "binary" else (self.num_classes,)
        return streaming.ExactScores(self.capacity, shape,
                                     shape if self.task == "multilabel" else ())

    def empty(self) -> dict[str, Any]:
        stats, k, z = self._stats, self._cm_classes, jnp.zeros(())
        s = {"count": z, **({"loss_sum": z} if "loss" in stats else {})}
        if "confusion" in stats:
            shape = (self.num_classes, 2, 2) if self.task == "multilabel" else (k, k)
            s["confusion"] = jnp.zeros(shape)
        if "hist" in stats:
            s["hist_pos"] = s["hist_neg"] = jnp.zeros((self._score_classes, self.num_bins))
        if "pair_hist" in stats:
            s["pair_hist"] = jnp.zeros((self.num_classes,) * 2 + (self.num_bins,))
        if "exact" in stats:
            s["exact"] = self._exact().empty()
        if "calibration" in stats:
            for key in ("count", "confidence", "outcome"):
                s["calib_" + key] = jnp.zeros((self.calibration_bins,))
        for key in ("log_loss", "brier", "subset"):
            if key in stats:
                s[("subset_hits" if key == "subset" else key + "_sum")] = z
        for key in stats:
            if re.fullmatch(r"top\d+", key):
                s[key + "_hits"] = z
        return s

    def _probs(self, logits):
        if self.task == "multiclass":
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        p = jax.nn.sigmoid(logits.astype(jnp.float32))
        return p.reshape(p.shape[0]) if self.task == "binary" else p

    def from_model_output(self, *, logits, labels, loss=None, mask=None) -> dict[str, Any]:
        """The state of one batch: ``update(empty(), ...)``; merge it into a running state."""
        return self.update(self.empty(), logits=logits, labels=labels, loss=loss, mask=mask)

    def update(self, state, *, logits, labels, loss=None, mask=None) -> dict[str, Any]:
        """Adds one batch of ``logits`` (N, K) ((N,) or (N, 1) for binary) and ``labels``.

        ``loss``: per-example losses (N,), needed only when 'loss' is listed. ``mask``: 0/1
        (or weights) per example; padding rows get 0; default all ones. Bad labels: see the
        module docstring.
        """
        logits, labels = replicated(jnp.asarray(logits), jnp.asarray(labels))
        n = logits.shape[0]
        mask = (jnp.ones((n,), jnp.float32) if mask is None
                else replicated(jnp.asarray(mask, jnp.float32)).reshape(-1))
        stats = self._stats
        k = 2 if self.task != "multiclass" else self.num_classes
        check = label_check(labels, k, mask)
        settle(None, check, "labels", f"task {self.task!r} with num_classes={self.num_classes}")
        labels = labels.astype(jnp.int32)
        batch = {"count": jnp.sum(mask)}
        if "loss" in stats:
            if loss is None:
                raise ValueError("metric 'loss' needs update(..., loss=<per-example losses>); "
                                 "leave 'loss' out of the collection to track none")
            loss = replicated(jnp.asarray(loss, jnp.float32))
            batch["loss_sum"] = jnp.sum(loss.reshape(-1) * mask)
        preds = _predictions(logits, self.task, self.threshold)
        probs = self._probs(logits)
        ml = self.task == "multilabel"
        if "confusion" in stats:
            if ml:
                batch["confusion"] = multilabel_confusion_matrix(labels, preds,
                                                                 sample_weight=mask)
            else:
                batch["confusion"] = confusion_counts(labels, preds, num_classes=self._cm_classes,
                                                      weight=mask)
        if "hist" in stats:
            h = streaming.BinnedAUC(self._score_classes, self.num_bins)
            hs = h.update(h.empty(), labels, probs, mask)
            batch["hist_pos"], batch["hist_neg"] = hs["pos"], hs["neg"]
        if "pair_hist" in stats:
            onehot = jax.nn.one_hot(labels, self.num_classes) * mask[:, None]  # (N, K)
            bins = jax.nn.one_hot(ranking.bin_index(probs, self.num_bins), self.num_bins)
            batch["pair_hist"] = jnp.einsum("nt,nsb->tsb", onehot, bins)
        if "calibration" in stats:
            y, p, w = labels, probs, mask
            if ml:
                y, p, w = labels.reshape(-1), probs.reshape(-1), jnp.repeat(mask, self.num_classes)
            cal = streaming.Calibration(self.calibration_bins)
            for key, v in cal.update(cal.empty(), y, p, w).items():
                batch["calib_" + key] = v
        for key, terms in (("log_loss", calibration.log_loss_terms),
                           ("brier", calibration.brier_terms)):
            if key in stats:  # multilabel: binary terms per label, summed per example
                k = self.num_classes if self.task == "multiclass" else None
                t = terms(labels.reshape(-1), probs.reshape(-1) if ml else probs, num_classes=k)
                batch[key + "_sum"] = (t.reshape(mask.shape[0], -1).sum(-1) * mask).sum()
        if "subset" in stats:
            batch["subset_hits"] = (jnp.all(preds == labels, -1) * mask).sum()
        for key in stats:
            if re.fullmatch(r"top\d+", key):
                hits = ranking.top_k_accuracy(labels, probs, k=int(key[3:]), sample_weight=mask,
                                              normalize=False)
                batch[key + "_hits"] = hits
        label_sums = {key: v for key, v in batch.items() if key not in ("count", "loss_sum")}
        batch.update(settle(label_sums, check))  # eager: already raised above if bad
        out = {key: state[key] + batch[key] for key in batch}
        if "exact" in stats:
            out["exact"] = self._exact().update(state["exact"], labels, probs, mask)
        return out

    @staticmethod
    def merge(a, b) -> dict[str, Any]:
        """Adds two states (exact-mode score buffers are appended instead)."""
        out = {k: jnp.add(a[k], b[k]) for k in a if k != "exact"}
        if "exact" in a:
            ex = a["exact"]
            spec = streaming.ExactScores(ex["score"].shape[0], ex["score"].shape[1:],
                                         ex["label"].shape[1:])
            out["exact"] = spec.merge(ex, b["exact"])
        return out

    def compute(self, state) -> dict[str, jax.Array]:
        """Scalars by name. One compiled program (not dozens of eager multi-device ops on a
        state that may be sharded across devices)."""
        return _compiled_compute(self)(state)

    def _compute(self, state) -> dict[str, jax.Array]:
        return {name: _lookup(name).fn(self, state) for name in self.metric_names}

    def curves(self, state) -> dict[str, Any]:
        """Curve data for plots: ``roc``/``pr`` per class from the histograms (thresholds
        b / num_bins) and ``reliability`` (calibration_from_sums) when those are tracked."""
        out = {}
        if "hist_pos" in state:
            out["roc_pr"] = ranking.histogram_curves(state["hist_pos"], state["hist_neg"])
        if "calib_count" in state:
            out["reliability"] = calibration_from_sums(
                {k: state["calib_" + k] for k in ("count", "confidence", "outcome")})
        return out


@functools.lru_cache(maxsize=None)
def _compiled_compute(coll: Collection):
    return jax.jit(coll._compute)


def collection(metric_names, *, num_classes: int, task: str = "multiclass",
               **options: Any) -> Collection:
    """The :class:`Collection` of ``metric_names`` ('loss', the mean of the per-example
    losses given to ``update``, only when listed; it comes first).

    Options: ``threshold`` (0.5), ``num_bins`` (200), ``calibration_bins`` (15),
    ``auc_mode`` ('binned' | 'exact'), ``capacity`` (exact mode), ``zero_division`` (0.0).
    Raises ValueError naming the valid choices for an unknown metric, task or option.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    unknown = [m for m in metric_names if not (m in _METRICS or _TOPK.match(m))]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid metrics: {', '.join(names())}")
    wrong = [m for m in metric_names if task not in _lookup(m).tasks]
    if wrong:
        raise ValueError(f"metric(s) {wrong} are not defined for task {task!r}")
    if options.get("auc_mode", "binned") not in ("binned", "exact"):
        raise ValueError("auc_mode must be 'binned' or 'exact'")
    if options.get("auc_mode") == "exact" and options.get("capacity", 0) <= 0:
        raise ValueError("auc_mode='exact' needs capacity=<rows of the (padded) eval set>")
    ordered = ("loss",) * ("loss" in metric_names) + tuple(m for m in metric_names
                                                          if m != "loss")
    return Collection(tuple(dict.fromkeys(ordered)), num_classes=num_classes, task=task, **options)
