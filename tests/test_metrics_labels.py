"""Labels outside the declared classes never give a confident number.

Every metric function and statistic, given one label outside its classes (K for
class indices, 2 for binary scores and 0/1 indicators; -1 too): outside jit a ValueError
names it; inside jit every float of the result is NaN; with that row's weight 0 the result
equals the one without the label (padding rows never count). The issue's examples are
checked against scikit-learn.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

import jaxclf.metrics as M

N, K = 24, 3
_rng = np.random.default_rng(0)
Y = _rng.integers(0, K, N)
Y[:K] = np.arange(K)
PRED = np.where(_rng.random(N) < 0.6, Y, _rng.integers(0, K, N))
PROB = _rng.dirichlet(np.ones(K), N).astype(np.float32)
YB = (Y == 1).astype(np.int32)
SCORE = PROB[:, 1]
IND = (_rng.random((N, K)) < 0.5).astype(np.int32)
IND[:2] = [[0, 1, 1], [1, 0, 0]]
IND_PRED = np.where(_rng.random((N, K)) < 0.7, IND, 1 - IND)
MACRO = dict(num_classes=K, average="macro")


# name -> (fn(labels, sample_weight), valid labels, labels that are out of range)
CASES = {
    "confusion_matrix": (lambda y, w: M.confusion_matrix(y, PRED, num_classes=K,
                                                         sample_weight=w), Y, (K, -1)),
    "counts": (lambda y, w: M.counts(y, PRED, num_classes=K, sample_weight=w), Y, (K,)),
    "confusion": (lambda y, w: M.confusion(y, PRED, num_classes=K, sample_weight=w), Y, (K,)),
    "confusion_multilabel": (lambda y, w: M.confusion(y, IND_PRED, sample_weight=w), IND, (2,)),
    "accuracy": (lambda y, w: M.accuracy(y, PRED, num_classes=K, sample_weight=w), Y, (K,)),
    "balanced_accuracy": (lambda y, w: M.balanced_accuracy(y, PRED, num_classes=K,
                                                           sample_weight=w), Y, (K,)),
    "matthews_corrcoef": (lambda y, w: M.matthews_corrcoef(y, PRED, num_classes=K,
                                                           sample_weight=w), Y, (K,)),
    "cohen_kappa": (lambda y, w: M.cohen_kappa(y, PRED, num_classes=K, sample_weight=w),
                    Y, (K,)),
    **{name: (lambda y, w, f=getattr(M, name): f(y, PRED, sample_weight=w, **MACRO), Y, (K,))
       for name in ("precision", "recall", "sensitivity", "specificity", "npv", "fpr", "fnr",
                    "f1")},
    "fbeta": (lambda y, w: M.fbeta(y, PRED, beta=2.0, sample_weight=w, **MACRO), Y, (K,)),
    "f1_binary_default": (lambda y, w: M.f1(y, YB, sample_weight=w), YB, (2, -1)),
    "mcc_binary_default": (lambda y, w: M.matthews_corrcoef(y, YB, sample_weight=w), YB, (2,)),
    "multilabel_confusion_matrix": (lambda y, w: M.multilabel_confusion_matrix(
        y, IND_PRED, sample_weight=w), IND, (2,)),
    "f1_multilabel": (lambda y, w: M.f1(y, IND_PRED, average="macro", sample_weight=w),
                      IND, (2,)),
    "roc_auc_binary": (lambda y, w: M.roc_auc(y, SCORE, sample_weight=w), YB, (2, -1)),
    "roc_auc_ovr": (lambda y, w: M.roc_auc(y, PROB, sample_weight=w), Y, (K,)),
    "roc_auc_ovo": (lambda y, w: M.roc_auc(y, PROB, multi_class="ovo", sample_weight=w),
                    Y, (K,)),
    "roc_auc_multilabel": (lambda y, w: M.roc_auc(y, PROB, sample_weight=w), IND, (2,)),
    "average_precision_binary": (lambda y, w: M.average_precision(y, SCORE, sample_weight=w),
                                 YB, (2,)),
    "average_precision": (lambda y, w: M.average_precision(y, PROB, sample_weight=w), Y, (K,)),
    "roc_curve": (lambda y, w: M.roc_curve(y, SCORE, sample_weight=w, padded=True), YB, (2,)),
    "precision_recall_curve": (lambda y, w: M.precision_recall_curve(
        y, SCORE, sample_weight=w, padded=True), YB, (2,)),
    "top_k_accuracy": (lambda y, w: M.top_k_accuracy(y, PROB, k=2, sample_weight=w), Y, (K,)),
    "log_loss": (lambda y, w: M.log_loss(y, PROB, sample_weight=w), Y, (K,)),
    "log_loss_binary": (lambda y, w: M.log_loss(y, SCORE, sample_weight=w), YB, (2,)),
    "brier_score": (lambda y, w: M.brier_score(y, PROB, sample_weight=w), Y, (K,)),
    "brier_score_binary": (lambda y, w: M.brier_score(y, SCORE, sample_weight=w), YB, (2,)),
    "expected_calibration_error": (lambda y, w: M.expected_calibration_error(
        y, PROB, num_bins=5, sample_weight=w), Y, (K, -1)),
    "reliability_diagram": (lambda y, w: M.reliability_diagram(y, SCORE, num_bins=5,
                                                               sample_weight=w), YB, (2,)),
}


def _with_bad(y, bad):
    y = np.array(y)
    if y.ndim == 2:
        y[0, 1] = bad
    else:
        y[0] = bad
    return y


def _all_nan(tree):
    floats = [np.asarray(x) for x in jax.tree.leaves(tree) if np.asarray(x).dtype.kind == "f"]
    return bool(floats) and all(np.isnan(x).all() for x in floats)


@pytest.mark.parametrize("name", sorted(CASES))
def test_label_outside_declared_classes_raises(name):
    fn, y, bads = CASES[name]
    assert not _all_nan(fn(y, None))  # valid labels: a number
    padding = np.ones(N, np.float32)
    padding[0] = 0.0
    for bad in bads:
        y_bad = _with_bad(y, bad)
        with pytest.raises(ValueError, match=f"outside the declared classes \\(e.g. {bad}\\)"):
            fn(y_bad, None)
        assert not np.asarray(M.labels_valid(y_bad, num_classes=2 if y is YB or y is IND else K))
        # a row of weight 0 is padding: its label never counts
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                     fn(y_bad, padding), fn(y, padding))


def test_label_outside_declared_classes_is_nan_under_jit():
    """Every case in one jitted program (one compile): each float of each result is NaN."""
    names = sorted(CASES)
    ys = [_with_bad(CASES[name][1], CASES[name][2][0]) for name in names]
    ones = np.ones(N, np.float32)
    out = jax.jit(lambda ys: [CASES[name][0](y, ones) for name, y in zip(names, ys)])(ys)
    for name, value in zip(names, out):
        assert _all_nan(value), name


def test_predicted_labels_outside_the_classes():
    bad = PRED.copy()
    bad[3] = K
    for fn in (functools.partial(M.confusion_matrix, num_classes=K),
               functools.partial(M.f1, **MACRO), functools.partial(M.cohen_kappa, num_classes=K),
               functools.partial(M.accuracy, num_classes=K)):
        with pytest.raises(ValueError, match="y_pred has 1 label"):
            fn(Y, bad)
        assert _all_nan(jax.jit(fn)(Y, bad))


def test_non_integer_float_labels_are_out_of_range():
    y = Y.astype(np.float32)
    y[0] = 0.5
    with pytest.raises(ValueError, match="e.g. 0.5"):
        M.confusion_matrix(y, PRED, num_classes=K)
    np.testing.assert_array_equal(M.confusion_matrix(Y.astype(np.float32), PRED, num_classes=K),
                                  skm.confusion_matrix(Y, PRED, labels=range(K)))


def test_issue_examples_against_sklearn():
    """y = [0, 1, 2, 3], p = [0, 1, 3, 2]: none of these may say 1.0."""
    y, p = np.array([0, 1, 2, 3]), np.array([0, 1, 3, 2])
    with pytest.raises(ValueError, match="needs num_classes"):
        M.f1(y, p, average="macro")
    np.testing.assert_allclose(M.f1(y, p, num_classes=4, average="macro"),
                               skm.f1_score(y, p, average="macro"))
    # binary average of a multi-class target: sklearn raises, so does jaxclf (both ways)
    with pytest.raises(ValueError, match="Target is multiclass"):
        skm.f1_score(y, p)
    with pytest.raises(ValueError, match="outside the declared classes"):
        M.f1(y, p)
    with pytest.raises(ValueError, match="average='binary' needs num_classes=2"):
        M.f1(y, p, num_classes=4)
    assert np.isnan(jax.jit(M.f1)(y, p))
    with pytest.raises(ValueError, match="pass num_classes=K"):
        M.matthews_corrcoef(y, p)
    np.testing.assert_allclose(M.matthews_corrcoef(y, p, num_classes=4),
                               skm.matthews_corrcoef(y, p), rtol=1e-6)
    with pytest.raises(ValueError, match="y_true has 2 label"):
        M.confusion_matrix(y, p, num_classes=2)
    assert float(M.confusion_matrix(y, p, num_classes=4).sum()) == 4
    for pos_label in (2, -1):
        with pytest.raises(ValueError, match="pos_label"):
            M.precision(YB, YB, pos_label=pos_label)
        with pytest.raises(ValueError, match="pos_label"):
            M.roc_curve(YB, SCORE, pos_label=pos_label)


def test_check_labels():
    M.check_labels(Y, num_classes=K)
    with pytest.raises(ValueError, match=r"labels has 1 label.*valid labels: integers in \[0, 3\)"):
        M.check_labels(_with_bad(Y, 7), num_classes=K, name="labels")
    M.check_labels(_with_bad(Y, 7), num_classes=K, sample_weight=np.arange(N) > 0)
    with pytest.raises(ValueError, match="labels_valid"):
        jax.jit(lambda y: M.check_labels(y, num_classes=K))(Y)
    valid = jax.jit(lambda y, w: M.labels_valid(y, num_classes=K, sample_weight=w))
    assert bool(valid(Y, np.ones(N))) and not bool(valid(_with_bad(Y, -1), np.ones(N)))


# ---- statistics (mergeable states) ----

def _states():
    """(name, spec, update(state, labels, weight), valid labels, bad label)."""
    return [
        ("ConfusionMatrix", M.ConfusionMatrix(K),
         lambda sp, s, y, w: sp.update(s, y, PRED, w), Y, K),
        ("BinnedAUC multiclass", M.BinnedAUC(K, 8), lambda sp, s, y, w: sp.update(s, y, PROB, w),
         Y, K),
        ("BinnedAUC binary", M.BinnedAUC(1, 8), lambda sp, s, y, w: sp.update(s, y, SCORE, w),
         YB, 2),
        ("BinnedAUC multilabel", M.BinnedAUC(K, 8),
         lambda sp, s, y, w: sp.update(s, y, PROB, w), IND, 2),
        ("Calibration", M.Calibration(5), lambda sp, s, y, w: sp.update(s, y, PROB, w), Y, K),
        ("Calibration binary", M.Calibration(5), lambda sp, s, y, w: sp.update(s, y, SCORE, w),
         YB, 2),
    ]


@pytest.mark.parametrize("case", range(6))
def test_streaming_state_with_bad_labels_is_nan_and_stays_nan(case):
    name, spec, update, y, bad = _states()[case]
    y_bad = _with_bad(y, bad)
    with pytest.raises(ValueError, match="outside the declared classes"):
        update(spec, spec.empty(), y_bad, None)
    step = jax.jit(lambda s, y, w: update(spec, s, y, w))
    good = step(spec.empty(), y, np.ones(N, np.float32))
    assert bool(M.is_valid(good)), name
    poisoned = step(spec.empty(), y_bad, np.ones(N, np.float32))
    assert not bool(M.is_valid(poisoned)), name
    merged = spec.merge(good, poisoned)  # merging keeps it invalid
    assert not bool(M.is_valid(merged))
    out = spec.compute(merged)
    if isinstance(out, dict):  # everything but the fixed bin edges
        out = {k: v for k, v in out.items() if k != "bin_edges"}
    assert _all_nan(out), name


def test_exact_scores_check_labels_at_compute():
    spec = M.ExactScores(N, (K,))
    state = spec.update(spec.empty(), _with_bad(Y, K), PROB)
    with pytest.raises(ValueError, match="outside the declared classes"):
        spec.compute(state)
    assert _all_nan(jax.jit(spec.compute)(state))


def test_mean_has_no_labels():
    """Mean (the only state without labels) averages its values: nothing to check."""
    spec = M.Mean()
    v = _rng.random(N).astype(np.float32)
    np.testing.assert_allclose(spec.compute(spec.update(spec.empty(), v)), v.mean(), rtol=1e-6)


@pytest.mark.parametrize("task", ["multiclass", "binary", "multilabel"])
def test_collection_with_bad_labels(task):
    names = {"multiclass": ["loss", "accuracy", "f1_macro", "top2_accuracy", "log_loss", "ece",
                            "roc_auc_ovo", "roc_auc"],
             "binary": ["loss", "f1", "tp", "roc_auc", "best_f1_threshold", "brier"],
             "multilabel": ["loss", "accuracy", "subset_accuracy", "f1_macro", "roc_auc"]}[task]
    coll = M.collection(names, num_classes=K, task=task)
    logits = jnp.asarray(_rng.normal(size=(N, K)), jnp.float32)
    y = {"multiclass": Y, "binary": YB, "multilabel": IND}[task]
    if task == "binary":
        logits = logits[:, 0]
    bad = _with_bad(y, K if task == "multiclass" else 2)
    loss = np.ones(N, np.float32)
    with pytest.raises(ValueError, match="labels has 1 label"):
        coll.update(coll.empty(), logits=logits, labels=bad, loss=loss)
    step = jax.jit(lambda s, y: coll.update(s, logits=logits, labels=y, loss=loss))
    good = step(coll.empty(), y)
    assert bool(M.is_valid(good))
    state = coll.merge(good, step(coll.empty(), bad))
    assert not bool(M.is_valid(state))
    out = coll.compute(state)
    assert float(out["loss"]) == 1.0  # the caller's losses stay; every label metric is NaN
    for name in names[1:]:
        assert np.isnan(out[name]), name
    # exact AUC mode checks the buffered labels
    exact = M.collection(["roc_auc"], num_classes=K, task=task, auc_mode="exact", capacity=N)
    ex_state = jax.jit(lambda s, y: exact.update(s, logits=logits, labels=y))(exact.empty(), bad)
    assert np.isnan(exact.compute(ex_state)["roc_auc"])
