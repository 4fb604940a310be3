"""Named metrics for the training loop, each read from one statistic's merged state.

:data:`METRICS` is the one table: a metric names the statistic it reads (a spec of
:mod:`jaxclf.metrics.statistics`, keyed so that metrics reading the same state share it), a
function of that spec and its merged state, the tasks it is defined for and the tasks whose
report shows it. A :class:`Collection` keeps only the statistics its metrics need, so its
state is ``{key: statistic state}``: sums over examples (masked by the per-example weight),
merged by addition and exact whatever the batching or sharding. The keys:

- ``loss``: the mean of the per-example losses given as ``loss=`` (kept only when 'loss' is
  listed);
- ``confusion``: (K, K) counts (binary: 2x2; multilabel: (K, 2, 2) per label, pooled to one
  2x2 matrix for accuracy / balanced_accuracy / mcc / cohen_kappa);
- ``histograms``: (C, num_bins) histograms of probabilities per class, for ROC AUC (with
  lower/upper bounds), average precision, best thresholds and curves;
- ``pair_histograms``: (K, K, num_bins), for one-vs-one AUC (only when ``roc_auc_ovo*`` is
  listed);
- ``calibration`` (ECE), ``log_loss``, ``brier``, ``subset``, ``topK``;
- ``scores``: with ``auc_mode='exact'``, fixed-capacity score buffers instead of histograms
  for the AUCs (``capacity`` rows; not a sum, merged by appending; see
  :class:`jaxclf.metrics.ExactScores`).

Probabilities: softmax of logits (multiclass), sigmoid (binary: P(positive); multilabel: per
label). Hard predictions: argmax, or probability >= ``threshold``. In a multilabel task every
(example, label) pair is one binary decision: 'accuracy' is the per-label (Hamming) accuracy,
'subset_accuracy' the exact-match ratio, '*_macro' average over labels.

Labels outside the task's classes (multiclass ``0..K-1``, binary 0/1, multilabel 0/1
indicators) in rows of nonzero mask raise in an eager ``update``; under jit they make every
label-counted sum of the batch NaN (the loss stays), so the merged state and its metrics are
NaN (``is_valid(state)`` is False). Any confusion-matrix metric of a state is
``from_confusion(state['confusion']['confusion'], name, ...)``.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxclf.metrics import ranking, statistics as st
from jaxclf.metrics._common import invalidate, label_check, nanaverage, replicated, settle

TASKS = ("multiclass", "binary", "multilabel")
BINARY, MULTICLASS, MULTILABEL = (frozenset({t}) for t in ("binary", "multiclass", "multilabel"))
ALL = frozenset(TASKS)


@dataclasses.dataclass(frozen=True)
class Metric:
    """One named metric. ``statistic(collection) -> (key, spec)``; ``read(collection, spec,
    merged state) -> scalar``; shown in the reports of ``report`` tasks with more than
    ``report_above`` classes."""

    statistic: Callable
    read: Callable
    tasks: frozenset = ALL
    report: frozenset = frozenset()
    report_above: int = 0


# ---- the statistics, by the collection's settings ----

def _loss(c):
    return "loss", st.Mean()


def _confusion(c):
    return "confusion", st.ConfusionMatrix(2 if c.task == "binary" else c.num_classes,
                                           multilabel=c.task == "multilabel")


def _histograms(c):
    return "histograms", st.BinnedAUC(1 if c.task == "binary" else c.num_classes, c.num_bins)


def _scores(c):
    shape = () if c.task == "binary" else (c.num_classes,)
    return "scores", st.ExactScores(c.capacity, shape, shape if c.task == "multilabel" else ())


def _auc_scores(c):
    return _scores(c) if c.auc_mode == "exact" else _histograms(c)


def _pairs(c):
    if c.auc_mode == "exact":
        return _scores(c)
    return "pair_histograms", st.PairHistograms(c.num_classes, c.num_bins)


def _calibration(c):
    return "calibration", st.Calibration(c.calibration_bins)


def _log_loss(c):
    return "log_loss", st.LogLoss(c.num_classes if c.task == "multiclass" else None)


def _brier(c):
    return "brier", st.Brier(c.num_classes if c.task == "multiclass" else None)


def _subset(c):
    return "subset", st.SubsetAccuracy()


def _top(k):
    return lambda c: (f"top{k}", st.TopKAccuracy(k))


# ---- readers of a merged statistic ----

def _value(c, spec, s):
    return spec.compute(s)


def _from_confusion(name):
    return lambda c, spec, s: spec.compute(s, name)


def _rate(name, average):
    return lambda c, spec, s: spec.compute(s, name, average=average,
                                           zero_division=c.zero_division)


def _cell(i, j):
    return lambda c, spec, s: spec.compute(s)[i, j]


def _ece(c, spec, s):
    return spec.compute(s)["ece"]


def _auc(average):
    def read(c, spec, s):
        if c.auc_mode == "exact":
            y = s["label"]
            check = label_check(y, 2 if c.task != "multiclass" else c.num_classes, s["weight"])
            if c.task == "multiclass" and average == "micro":
                y = jax.nn.one_hot(y, c.num_classes, dtype=jnp.int32)
            return invalidate(ranking.roc_auc(y, s["score"], sample_weight=s["weight"],
                                              average=average), check)
        if average == "micro":
            return ranking.histogram_auc(s["pos"].sum(0), s["neg"].sum(0))[0]
        out = spec.compute(s)
        return nanaverage(out["auc"], out["support"] if average == "weighted" else None)
    return read


def _auc_bound(key):
    return lambda c, spec, s: nanaverage(spec.compute(s)[key])


def _ovo(average):
    def read(c, spec, s):
        if c.auc_mode == "exact":
            return ranking.roc_auc(s["label"], s["score"], sample_weight=s["weight"],
                                   multi_class="ovo", average=average)
        return spec.compute(s, average)
    return read


def _average_precision(c, spec, s):
    if c.auc_mode == "exact":
        return ranking.average_precision(s["label"], s["score"], sample_weight=s["weight"])
    return nanaverage(spec.compute(s)["average_precision"])


def _best_threshold(i):
    return lambda c, spec, s: ranking.best_thresholds(s["pos"][0], s["neg"][0])[i]


RATES = ("precision", "recall", "specificity", "npv", "fpr", "fnr", "f1")


def _rates(names, average, tasks=ALL, report=frozenset()):
    """``{name_average: Metric}`` (``name`` alone for average='binary')."""
    return {n if average == "binary" else f"{n}_{average}":
            Metric(_confusion, _rate(n, average), tasks, report) for n in names}


# Every metric, in the order the reports show them.
METRICS: dict[str, Metric] = {
    "loss": Metric(_loss, _value),
    "accuracy": Metric(_confusion, _from_confusion("accuracy"), report=ALL),
    "subset_accuracy": Metric(_subset, _value, MULTILABEL, report=MULTILABEL),
    "balanced_accuracy": Metric(_confusion, _from_confusion("balanced_accuracy"),
                                report=BINARY | MULTICLASS),
    **_rates(RATES, "binary", BINARY, report=BINARY),
    "sensitivity": Metric(_confusion, _rate("recall", "binary"), BINARY),
    **_rates(RATES[:4], "macro", report=MULTICLASS),
    **_rates(("f1",), "macro", report=MULTICLASS | MULTILABEL),
    **_rates(("f1",), "micro", report=MULTICLASS | MULTILABEL),
    **_rates(("f1",), "weighted", report=MULTICLASS),
    "mcc": Metric(_confusion, _from_confusion("matthews_corrcoef"), report=BINARY | MULTICLASS),
    "cohen_kappa": Metric(_confusion, _from_confusion("cohen_kappa"), report=MULTICLASS),
    "roc_auc_ovr": Metric(_auc_scores, _auc("macro"), report=MULTICLASS),
    "roc_auc_micro": Metric(_auc_scores, _auc("micro"), report=MULTICLASS),
    "roc_auc": Metric(_auc_scores, _auc("macro"), report=BINARY | MULTILABEL),
    "roc_auc_lower": Metric(_histograms, _auc_bound("lower"), report=BINARY),
    "roc_auc_upper": Metric(_histograms, _auc_bound("upper"), report=BINARY),
    "average_precision": Metric(_auc_scores, _average_precision, report=ALL),
    **{name: Metric(_confusion, _cell(i, j), BINARY, report=BINARY)
       for name, (i, j) in {"tp": (1, 1), "fp": (0, 1), "fn": (1, 0), "tn": (0, 0)}.items()},
    "best_f1_threshold": Metric(_histograms, _best_threshold(0), BINARY, report=BINARY),
    "best_youden_threshold": Metric(_histograms, _best_threshold(1), BINARY, report=BINARY),
    "log_loss": Metric(_log_loss, _value, report=BINARY | MULTICLASS),
    "brier": Metric(_brier, _value, report=BINARY | MULTICLASS),
    "ece": Metric(_calibration, _ece, report=BINARY | MULTICLASS),
    "top5_accuracy": Metric(_top(5), _value, MULTICLASS, report=MULTICLASS, report_above=5),
    "roc_auc_ovr_weighted": Metric(_auc_scores, _auc("weighted")),
    "roc_auc_ovo": Metric(_pairs, _ovo("macro"), MULTICLASS),
    "roc_auc_ovo_weighted": Metric(_pairs, _ovo("weighted"), MULTICLASS),
    **_rates(("fpr", "fnr"), "macro"),
    **_rates(RATES[:6], "micro"),
    **_rates(RATES[:6], "weighted"),
}
_TOPK = re.compile(r"top(\d+)_accuracy$")
# statistic key -> the name of its curves in Collection.curves
_CURVES = {"histograms": "roc_pr", "calibration": "reliability"}


def _lookup(name: str) -> Metric:
    m = _TOPK.match(name)
    if name not in METRICS and m:
        return Metric(_top(int(m.group(1))), _value, MULTICLASS)
    return METRICS[name]


def names() -> list[str]:
    """All metric names a config may list ('topK_accuracy' works for any K)."""
    return sorted(METRICS)


def report_names(task: str, num_classes: int) -> tuple[str, ...]:
    """The metrics every report of ``task`` shows, in table order."""
    return tuple(name for name, m in METRICS.items()
                 if task in m.report and num_classes > m.report_above)


def _predictions(logits: jax.Array, task: str, threshold: float) -> jax.Array:
    """Hard labels from logits: argmax for multi-class, sigmoid >= threshold otherwise."""
    if task == "multiclass":
        return jnp.argmax(logits, axis=-1)
    probs = jax.nn.sigmoid(logits)
    if task == "binary":
        return (probs.reshape(probs.shape[0]) >= threshold).astype(jnp.int32)
    return (probs >= threshold).astype(jnp.int32)


@dataclasses.dataclass(frozen=True)
class Collection(st.Statistic):
    """A fixed set of metrics over one task: the statistics they read, composed (see module
    docstring)."""

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
    def statistics(self) -> dict[str, st.Statistic]:
        """The specs the metrics read, by key (each once)."""
        return dict(_lookup(name).statistic(self) for name in self.metric_names)

    def empty(self) -> dict[str, Any]:
        return {key: spec.empty() for key, spec in self.statistics.items()}

    def _probs(self, logits):
        if self.task == "multiclass":
            return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        p = jax.nn.sigmoid(logits.astype(jnp.float32))
        return p.reshape(p.shape[0]) if self.task == "binary" else p

    def from_model_output(self, *, logits, labels, loss=None, mask=None) -> dict[str, Any]:
        """The state of one batch of ``logits`` (N, K) ((N,) or (N, 1) for binary) and
        ``labels``. ``loss``: per-example losses (N,), needed only when 'loss' is listed.
        ``mask``: 0/1 (or weights) per example; padding rows get 0; default all ones. Bad
        labels: see the module docstring."""
        logits, labels = replicated(jnp.asarray(logits), jnp.asarray(labels))
        n = logits.shape[0]
        mask = (jnp.ones((n,), jnp.float32) if mask is None
                else replicated(jnp.asarray(mask, jnp.float32)).reshape(-1))
        check = label_check(labels, 2 if self.task != "multiclass" else self.num_classes, mask)
        settle(None, check, "labels", f"task {self.task!r} with num_classes={self.num_classes}")
        stats = self.statistics
        if "loss" in stats and loss is None:
            raise ValueError("metric 'loss' needs update(..., loss=<per-example losses>); "
                             "leave 'loss' out of the collection to track none")
        outputs = {"y_true": labels.astype(jnp.int32), "sample_weight": mask, "values": loss,
                   "y_pred": _predictions(logits, self.task, self.threshold),
                   "y_prob": self._probs(logits)}
        batch = {key: spec.from_model_output(**outputs) for key, spec in stats.items()}
        return {key: settle(s, check) if stats[key].label_sums else s  # eager: raised above
                for key, s in batch.items()}

    def merge(self, a, b) -> dict[str, Any]:
        """Each statistic's merge: sums add, exact-mode score buffers append."""
        return {key: spec.merge(a[key], b[key]) for key, spec in self.statistics.items()}

    def compute(self, state) -> dict[str, jax.Array]:
        """Scalars by name. One compiled program (not dozens of eager multi-device ops on a
        state that may be sharded across devices)."""
        return _compiled_compute(self)(state)

    def _compute(self, state) -> dict[str, jax.Array]:
        out = {}
        for name in self.metric_names:
            metric = _lookup(name)
            key, spec = metric.statistic(self)
            out[name] = metric.read(self, spec, state[key])
        return out

    def curves(self, state) -> dict[str, Any]:
        """Curve data for plots: ``roc_pr`` per class from the histograms (thresholds
        b / num_bins) and ``reliability`` (calibration_from_sums) when those are tracked."""
        return {_CURVES[key]: spec.curves(state[key]) for key, spec in self.statistics.items()
                if key in _CURVES}


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
    unknown = [m for m in metric_names if not (m in METRICS or _TOPK.match(m))]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid metrics: {', '.join(names())}"
                         " (and topK_accuracy for any K)")
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
