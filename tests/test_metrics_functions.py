"""jaxclf.metrics functions against scikit-learn on random inputs (hypothesis).

Inputs: binary and multi-class, scores from few values (many ties) or continuous, heavy
imbalance and absent classes, optional sample weights. Every example has N=48 rows; weighted
examples pad to 48 with garbage rows of weight 0 (a mask), which sklearn never sees. Fixed
shapes keep jit/op compilation to one per shape.
"""

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

import jaxclf.metrics as M

N = 48
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
warnings.filterwarnings("ignore", module="sklearn")


@st.composite
def problems(draw, classes=(2, 3, 5), weighted=None):
    """(y_true, y_pred, y_prob, w, real) with class priors that can be extreme or zero."""
    k = draw(st.sampled_from(classes))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    prior = np.array(draw(st.lists(st.sampled_from([0, 0.05, 1, 5]), min_size=k, max_size=k)))
    prior = prior + (prior.sum() == 0)
    prior = prior / prior.sum()
    use_weights = weighted or (weighted is None and draw(st.booleans()))
    n_real = draw(st.integers(2, N)) if use_weights else N
    y = rng.choice(k, size=N, p=prior)
    # predictions correlated with y, often wrong; sometimes constant
    y_pred = np.where(rng.random(N) < draw(st.sampled_from([0.0, 0.5, 0.9])), y,
                      rng.integers(0, k, N))
    if draw(st.booleans()) and draw(st.booleans()):
        y_pred[:] = draw(st.integers(0, k - 1))
    levels = draw(st.sampled_from([2, 3, 5, 0]))  # 0: continuous
    raw = rng.normal(size=(N, k)) + 1.5 * np.eye(k)[y] * rng.random((N, 1))
    if levels:
        raw = np.round(raw * levels / 3) / levels
    prob = np.exp(raw) / np.exp(raw).sum(1, keepdims=True)
    prob = prob.astype(np.float32)
    if n_real < N:
        w = np.zeros(N, np.float32)
        w[:n_real] = rng.choice([0.5, 1.0, 2.0, 3.0], n_real)
    else:
        w = None
    return y, y_pred, prob, w, n_real


def real(x, n):
    return None if x is None else np.asarray(x)[:n]


def close(a, b, tol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol, equal_nan=True)


ZD = [0.0, 1.0, np.nan]


@given(problems(), st.sampled_from(ZD))
@SETTINGS
def test_threshold_metrics(p, zd):
    y, yp, _, w, n = p
    k = problems_k(y, yp)
    sy, sp, sw = real(y, n), real(yp, n), real(w, n)
    labels = list(range(k))
    close(M.confusion_matrix(y, yp, num_classes=k, sample_weight=w),
          skm.confusion_matrix(sy, sp, labels=labels, sample_weight=sw))
    close(M.accuracy(y, yp, sample_weight=w), skm.accuracy_score(sy, sp, sample_weight=sw))
    averages = ["micro", "macro", "weighted", None] + (["binary"] if k == 2 else [])
    for avg in averages:
        kw = dict(average=avg, sample_weight=sw, zero_division=zd, labels=labels)
        ours = dict(num_classes=k, average=avg, sample_weight=w, zero_division=zd)
        close(M.precision(y, yp, **ours), skm.precision_score(sy, sp, **kw))
        close(M.recall(y, yp, **ours), skm.recall_score(sy, sp, **kw))
        close(M.f1(y, yp, **ours), skm.f1_score(sy, sp, **kw))
        close(M.fbeta(y, yp, beta=0.5, **ours), skm.fbeta_score(sy, sp, beta=0.5, **kw))
        # specificity / npv of class c are recall / precision of "not c"; fpr, fnr complements
        for ours_fn, sk_fn in ((M.specificity, skm.recall_score), (M.npv, skm.precision_score)):
            per = [sk_fn(sy != c, sp != c, zero_division=zd, sample_weight=sw) for c in labels]
            got = ours_fn(y, yp, **{**ours, "average": None})
            close(got, per)
        close(M.fpr(y, yp, **{**ours, "average": None, "zero_division": np.nan}),
              1 - np.array([skm.recall_score(sy != c, sp != c, zero_division=np.nan,
                                             sample_weight=sw) for c in labels]))
        close(M.fnr(y, yp, **{**ours, "average": None, "zero_division": np.nan}),
              1 - skm.recall_score(sy, sp, **{**kw, "average": None, "zero_division": np.nan}))


def problems_k(y, yp):
    return int(max(y.max(), yp.max(), 1) + 1)


@given(problems(), st.booleans(), st.sampled_from([None, "linear", "quadratic"]))
@SETTINGS
def test_confusion_summaries(p, adjusted, kappa_weights):
    y, yp, _, w, n = p
    k = problems_k(y, yp)
    sy, sp, sw = real(y, n), real(yp, n), real(w, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        close(M.balanced_accuracy(y, yp, num_classes=k, sample_weight=w, adjusted=adjusted),
              skm.balanced_accuracy_score(sy, sp, sample_weight=sw, adjusted=adjusted))
        close(M.matthews_corrcoef(y, yp, num_classes=k, sample_weight=w),
              skm.matthews_corrcoef(sy, sp, sample_weight=sw))
        close(M.cohen_kappa(y, yp, num_classes=k, weights=kappa_weights, sample_weight=w),
              skm.cohen_kappa_score(sy, sp, weights=kappa_weights, sample_weight=sw,
                                    labels=list(range(k))))


@given(problems(classes=(2,)))
@SETTINGS
def test_binary_ranking(p):
    y, _, prob, w, n = p
    s = prob[:, 1]
    sy, ss, sw = real(y, n), real(s, n), real(w, n)
    close(M.average_precision(y, s, sample_weight=w),
          skm.average_precision_score(sy, ss, sample_weight=sw) if sy.any() else 0.0)
    if 0 < sy.sum() < n:
        close(M.roc_auc(y, s, sample_weight=w), skm.roc_auc_score(sy, ss, sample_weight=sw))
        # logits (wider key range than probabilities) give the same AUC
        logit = np.log(s) - np.log1p(-s)
        close(M.roc_auc(y, logit, sample_weight=w), skm.roc_auc_score(sy, ss, sample_weight=sw))
    else:
        assert math.isnan(float(M.roc_auc(y, s, sample_weight=w)))
    ours = M.roc_curve(y, s, sample_weight=w)
    want = skm.roc_curve(sy, ss, sample_weight=sw, drop_intermediate=False)
    if 0 < sy.sum() < n:  # (sklearn's nan curves differ in where the nan goes)
        for a, b in zip(ours, want):  # padding rows (weight 0) make no thresholds
            close(a, b)
    ours = M.precision_recall_curve(y, s, sample_weight=w)
    for a, b in zip(ours, skm.precision_recall_curve(sy, ss, sample_weight=sw)):
        close(a, b)


@given(problems(classes=(4,)), st.sampled_from(["macro", "weighted", "micro"]))
@SETTINGS
def test_multiclass_ranking(p, average):
    y, _, prob, w, n = p
    sy, sp, sw = real(y, n), real(prob, n), real(w, n)
    k = prob.shape[1]
    onehot = np.eye(k)[sy]
    present = onehot.any(0) & ~onehot.all(0)
    if present.all():
        close(M.roc_auc(y, prob, average=average, sample_weight=w),
              skm.roc_auc_score(sy, sp.astype(np.float64),
                                multi_class="ovr", average=average, sample_weight=sw,
                                labels=list(range(k))))
        if average != "micro" and w is None:
            close(M.roc_auc(y, prob, multi_class="ovo", average=average),
                  skm.roc_auc_score(sy, sp.astype(np.float64),
                                    multi_class="ovo", average=average))
    # average precision: sklearn binarizes the labels (one-vs-rest)
    if onehot.any(0).all():
        close(M.average_precision(y, prob, average=average, sample_weight=w),
              skm.average_precision_score(onehot, sp, average=average, sample_weight=sw))
        close(M.roc_auc(onehot, sp, average=average, sample_weight=sw) if present.all()
              else 0.0, skm.roc_auc_score(onehot, sp, average=average, sample_weight=sw)
              if present.all() else 0.0)
    for kk in (1, 2):
        close(M.top_k_accuracy(y, prob, k=kk, sample_weight=w),
              skm.top_k_accuracy_score(sy, sp, k=kk, sample_weight=sw, labels=list(range(k))))


@given(problems())
@SETTINGS
def test_probabilistic(p):
    y, _, prob, w, n = p
    k = prob.shape[1]
    sy, sp, sw = real(y, n), real(prob, n), real(w, n)
    labels = list(range(k))
    if k == 2:
        close(M.log_loss(y, prob[:, 1], sample_weight=w),
              skm.log_loss(sy, sp[:, 1], sample_weight=sw, labels=labels), 1e-4)
        close(M.brier_score(y, prob[:, 1], sample_weight=w),
              skm.brier_score_loss(sy, sp[:, 1], sample_weight=sw, labels=labels), 1e-4)
        # binary ECE vs sklearn's calibration_curve (uniform bins; no score on an edge)
        pr, pp = calibration_curve(sy, sp[:, 1], n_bins=7, strategy="uniform")
        counts = np.histogram(sp[:, 1], bins=np.linspace(0, 1, 8))[0]
        if w is None and not np.isin(sp[:, 1] * 7, np.arange(8)).any():
            ece = np.sum(counts[counts > 0] * np.abs(pr - pp)) / n
            close(M.expected_calibration_error(y, prob[:, 1], num_bins=7), ece, 1e-4)
    close(M.log_loss(y, prob, sample_weight=w),
          skm.log_loss(sy, sp, sample_weight=sw, labels=labels), 1e-4)
    close(M.brier_score(y, prob, sample_weight=w),
          skm.brier_score_loss(sy, sp, sample_weight=sw, labels=labels), 1e-4)


def test_top_label_ece_reference():
    """Multi-class ECE: top-label confidence vs accuracy, against a numpy loop."""
    rng = np.random.default_rng(0)
    prob = rng.dirichlet(np.ones(4), 200).astype(np.float32)
    y = rng.integers(0, 4, 200)
    conf, hit = prob.max(1), prob.argmax(1) == y
    b = np.minimum((conf * 10).astype(int), 9)
    ece = sum(abs(hit[b == i].sum() - conf[b == i].sum()) for i in range(10)) / 200
    close(M.expected_calibration_error(y, prob, num_bins=10), ece, 1e-5)
    diagram = M.reliability_diagram(y, prob, num_bins=10)
    assert diagram["count"].sum() == 200 and diagram["bin_edges"].shape == (11,)


@st.composite
def ranking_problems(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    levels = draw(st.sampled_from([1, 2, 4, 10**6]))
    y = (rng.random(N) < draw(st.sampled_from([0.05, 0.5]))).astype(np.int32)
    s = (rng.integers(0, levels, N) / levels + 0.3 * y * rng.random(N)).astype(np.float32)
    return y, s


@given(ranking_problems())
@SETTINGS
def test_unweighted_fast_path_and_curves(p):
    """No sample_weight: the packed one-array sort; curves trimmed equal sklearn's."""
    y, s = p
    for scale in (1.0, 1e30, -3.0):  # 1e30: key range too wide -> general sort
        sc = (s * scale).astype(np.float32)
        if 0 < y.sum() < N:
            close(M.roc_auc(y, sc), skm.roc_auc_score(y, sc))
            for a, b in zip(M.roc_curve(y, sc), skm.roc_curve(y, sc, drop_intermediate=False)):
                close(a, b)
        close(M.average_precision(y, sc), skm.average_precision_score(y, sc) if y.any() else 0)
        for a, b in zip(M.precision_recall_curve(y, sc), skm.precision_recall_curve(y, sc)):
            close(a, b)


# ---- jit ----

def _jit_cases():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 32)
    yb = (y == 1).astype(np.int32)
    yp = rng.integers(0, 3, 32)
    prob = rng.dirichlet(np.ones(3), 32).astype(np.float32)
    w = rng.random(32).astype(np.float32)
    cls = dict(num_classes=3, average="macro", sample_weight=w)
    return [
        (functools.partial(M.confusion_matrix, num_classes=3, sample_weight=w), (y, yp)),
        (functools.partial(M.accuracy, sample_weight=w), (y, yp)),
        (functools.partial(M.balanced_accuracy, num_classes=3, adjusted=True), (y, yp)),
        *[(functools.partial(f, **cls), (y, yp)) for f in
          (M.precision, M.recall, M.specificity, M.npv, M.fpr, M.fnr, M.f1)],
        (functools.partial(M.fbeta, beta=2.0, **cls), (y, yp)),
        (functools.partial(M.matthews_corrcoef, num_classes=3), (y, yp)),
        (functools.partial(M.cohen_kappa, num_classes=3, weights="quadratic"), (y, yp)),
        (functools.partial(M.top_k_accuracy, k=2), (y, prob)),
        (M.log_loss, (y, prob)),
        (M.brier_score, (y, prob)),
        (functools.partial(M.expected_calibration_error, num_bins=5), (y, prob)),
        (M.roc_auc, (yb, prob[:, 1])),
        (functools.partial(M.roc_auc, multi_class="ovo"), (y, prob)),
        (functools.partial(M.roc_auc, average="weighted", sample_weight=w), (y, prob)),
        (M.average_precision, (y, prob)),
        (functools.partial(M.roc_curve, padded=True), (yb, prob[:, 1])),
        (functools.partial(M.precision_recall_curve, padded=True), (yb, prob[:, 1])),
    ]


def test_every_function_jits():
    """All functions traced into one jitted program (one compile) equal their eager calls."""
    cases = _jit_cases()
    jitted = jax.jit(lambda args: [fn(*a) for (fn, _), a in zip(cases, args)])(
        [args for _, args in cases])
    for (fn, args), got in zip(cases, jitted):
        jax.tree.map(lambda a, b: close(a, b), fn(*args), got)


def test_padded_curves_trim_to_sklearn():
    y = np.array([0, 1, 1, 0, 1, 0, 0, 1])
    s = np.array([0.1, 0.4, 0.4, 0.4, 0.9, 0.2, 0.9, 0.6], np.float32)
    fpr, tpr, thr, valid = jax.jit(functools.partial(M.roc_curve, padded=True))(y, s)
    want = skm.roc_curve(y, s, drop_intermediate=False)
    for a, b in zip((fpr[valid], tpr[valid], thr[valid]), want):
        close(a, b)
    close(np.trapezoid(tpr, fpr), skm.roc_auc_score(y, s))  # padding repeats the last point
    prec, rec, thr, valid = jax.jit(functools.partial(M.precision_recall_curve, padded=True))(y, s)
    want = skm.precision_recall_curve(y, s)
    close(prec[valid], want[0]); close(rec[valid], want[1])
    close(thr[: int(valid.sum()) - 1], want[2])
    with pytest.raises(ValueError, match="padded=True"):
        jax.jit(M.roc_curve)(y, s)


def test_non_finite_scores_raise_outside_jit():
    y = np.array([0, 1, 1])
    for bad in (np.nan, np.inf):
        s = np.array([0.1, bad, 0.3], np.float32)
        for fn in (M.roc_auc, M.average_precision, M.roc_curve, M.log_loss):
            with pytest.raises(ValueError, match="NaN or inf"):
                fn(y, s)
    # inside jit a masked (zero-weight) row does not count, whatever its score
    s = jnp.array([0.1, jnp.nan, 0.3, 0.2, jnp.inf, -jnp.inf, 0.3])
    y = jnp.array([0, 1, 1, 0, 0, 1, 0])
    ok = jnp.isfinite(s).astype(jnp.float32)
    got = jax.jit(lambda y, s, w: (M.roc_auc(y, s, sample_weight=w),
                                   M.average_precision(y, s, sample_weight=w)))(y, s, ok)
    close(got[0], skm.roc_auc_score([0, 1, 0, 0], [0.1, 0.3, 0.2, 0.3]))
    close(got[1], skm.average_precision_score([0, 1, 0, 0], [0.1, 0.3, 0.2, 0.3]))


def test_zero_division_policy():
    y = np.zeros(6, np.int32)
    yp = np.zeros(6, np.int32)
    for zd in ZD:
        close(M.precision(y, yp, zero_division=zd), skm.precision_score(y, yp, zero_division=zd))
        close(M.recall(y, yp, zero_division=zd), skm.recall_score(y, yp, zero_division=zd))
        close(M.f1(y, yp, zero_division=zd), skm.f1_score(y, yp, zero_division=zd))
    assert math.isnan(float(M.roc_auc(y, np.linspace(0, 1, 6, dtype=np.float32))))
    assert float(M.roc_auc(y, np.linspace(0, 1, 6, dtype=np.float32), zero_division=0.5)) == 0.5
    with pytest.raises(ValueError):
        M.precision(y, yp, zero_division="never")
    with pytest.raises(ValueError, match="binary"):
        M.precision(y, yp, num_classes=3)


@given(st.integers(0, 10**6), st.sampled_from(ZD), st.booleans())
@SETTINGS
def test_multilabel_and_pos_label(seed, zd, weighted):
    rng = np.random.default_rng(seed)
    y = (rng.random((N, 4)) < [0.5, 0.1, 0.02, 0.0]).astype(np.int32)  # a label never set
    pred = np.where(rng.random((N, 4)) < 0.7, y, 1 - y)
    pred[:, 3] = 0
    w = rng.choice([0.5, 1.0, 2.0], N).astype(np.float32) if weighted else None
    for avg in ("micro", "macro", "weighted", None):
        kw = dict(average=avg, sample_weight=w, zero_division=zd)
        close(M.precision(y, pred, **kw), skm.precision_score(y, pred, **kw))
        close(M.recall(y, pred, **kw), skm.recall_score(y, pred, **kw))
        close(M.f1(y, pred, **kw), skm.f1_score(y, pred, **kw))
    close(M.accuracy(y, pred, sample_weight=w), skm.accuracy_score(y, pred, sample_weight=w))
    close(M.multilabel_confusion_matrix(y, pred, sample_weight=w),
          skm.multilabel_confusion_matrix(y, pred, sample_weight=w))
    score = (y + rng.normal(size=y.shape)).astype(np.float32)
    cols = slice(0, 2)  # labels with both classes present
    for avg in ("micro", "macro", "weighted"):
        close(M.roc_auc(y[:, cols], score[:, cols], average=avg, sample_weight=w),
              skm.roc_auc_score(y[:, cols], score[:, cols], average=avg, sample_weight=w))
        close(M.average_precision(y[:, cols], score[:, cols], average=avg, sample_weight=w),
              skm.average_precision_score(y[:, cols], score[:, cols], average=avg,
                                          sample_weight=w))
    yb, pb = y[:, 0], pred[:, 0]
    for fn, sk in ((M.precision, skm.precision_score), (M.recall, skm.recall_score),
                   (M.f1, skm.f1_score)):
        close(fn(yb, pb, pos_label=0, sample_weight=w),
              sk(yb, pb, pos_label=0, sample_weight=w))
