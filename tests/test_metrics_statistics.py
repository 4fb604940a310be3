"""Metric statistics and the training-loop collection: batching, merging, sharding, bounds."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from sklearn import metrics as skm

import jaxclf.metrics as M

N = 48
SETTINGS = settings(max_examples=20, deadline=None, derandomize=True)
CHUNKS = {1: [48], 2: [24, 24], 3: [16, 16, 16], 6: [8] * 6}


def data(seed, k, levels=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, N)
    logits = np.round(rng.normal(size=(N, k)) * levels) / levels + 1.5 * np.eye(k)[y]
    mask = (rng.random(N) < 0.8).astype(np.float32)
    return dict(logits=jnp.asarray(logits, jnp.float32), labels=jnp.asarray(y),
                loss=jnp.asarray(rng.random(N), jnp.float32), mask=jnp.asarray(mask))


# state leaves that count examples (exact whatever the batching)
COUNTS = ("confusion", "pos", "neg", "pairs", "count")


def split(batch, parts):
    out, i = [], 0
    for size in CHUNKS[parts]:
        out.append({k: v[i:i + size] for k, v in batch.items()})
        i += size
    return out


_COLL = {
    "multiclass": M.collection(
        ["loss", "accuracy", "balanced_accuracy", "f1_macro", "f1_weighted", "precision_micro",
         "mcc", "cohen_kappa", "top2_accuracy", "log_loss", "brier", "ece", "roc_auc_ovr",
         "roc_auc_ovo", "average_precision"], num_classes=4),
    "binary": M.collection(
        ["loss", "precision", "recall", "specificity", "npv", "fpr", "fnr", "f1", "tp", "fp",
         "fn", "tn", "roc_auc", "roc_auc_lower", "roc_auc_upper", "best_f1_threshold",
         "best_youden_threshold", "ece"], num_classes=2, task="binary", num_bins=20),
}
_UPDATE = {name: jax.jit(lambda s, b, c=c: c.update(s, **b)) for name, c in _COLL.items()}


def binary(batch):
    return {**batch, "logits": batch["logits"][:, 1] - batch["logits"][:, 0],
            "labels": (batch["labels"] == 1).astype(jnp.int32)}


@given(st.integers(0, 10**6), st.sampled_from([2, 3, 6]), st.sampled_from(list(_COLL)),
       st.booleans())
@SETTINGS
def test_collection_identical_for_any_batching(seed, parts, task, tree_merge):
    coll, update = _COLL[task], _UPDATE[task]
    batch = data(seed, 4)
    batch = binary(batch) if task == "binary" else batch
    one = update(coll.empty(), batch)
    if tree_merge:  # states of separate shards merged afterwards
        states = [update(coll.empty(), b) for b in split(batch, parts)]
        many = states[0]
        for s in states[1:]:
            many = coll.merge(many, s)
    else:
        many = coll.empty()
        for b in split(batch, parts):
            many = update(many, b)
    for key in one:  # counts are exact; float sums (losses, confidences) up to rounding
        for leaf in one[key]:
            a, b = np.asarray(one[key][leaf]), np.asarray(many[key][leaf])
            if leaf in COUNTS or key.startswith("top"):
                np.testing.assert_array_equal(a, b, f"{key}/{leaf}")
            else:
                np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=f"{key}/{leaf}")
    a, b = coll.compute(one), coll.compute(many)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, err_msg=name)


@given(st.integers(0, 10**6), st.sampled_from(list(_COLL)))
@SETTINGS
def test_collection_matches_functions(seed, task):
    """compute() = the function API on the unmasked rows; padding rows never count."""
    coll, batch = _COLL[task], data(seed, 4)
    if task == "binary":
        batch = binary(batch)
    out = coll.compute(_UPDATE[task](coll.empty(), batch))
    keep = np.asarray(batch["mask"]) > 0
    y = np.asarray(batch["labels"])[keep]
    logits = np.asarray(batch["logits"])[keep]
    assert all(np.shape(v) == () for v in out.values())
    np.testing.assert_allclose(out["loss"], np.asarray(batch["loss"])[keep].mean(), rtol=1e-5)
    if task == "multiclass":
        prob = np.asarray(jax.nn.softmax(logits))
        pred = logits.argmax(1)
        want = {"accuracy": skm.accuracy_score(y, pred),
                "f1_macro": skm.f1_score(y, pred, average="macro", labels=range(4)),
                "mcc": skm.matthews_corrcoef(y, pred),
                "log_loss": skm.log_loss(y, prob, labels=range(4)),
                "top2_accuracy": skm.top_k_accuracy_score(y, prob, k=2, labels=range(4))}
        for name, v in want.items():
            np.testing.assert_allclose(out[name], v, rtol=1e-4, atol=1e-6, err_msg=name)
    else:
        prob = np.asarray(jax.nn.sigmoid(logits))
        pred = (prob >= 0.5).astype(int)
        tn, fp, fn, tp = skm.confusion_matrix(y, pred, labels=[0, 1]).ravel()
        assert (out["tp"], out["fp"], out["fn"], out["tn"]) == (tp, fp, fn, tn)
        np.testing.assert_allclose(out["recall"], skm.recall_score(y, pred), rtol=1e-6)
        np.testing.assert_allclose(out["specificity"], skm.recall_score(y, pred, pos_label=0),
                                   rtol=1e-6)
        if 0 < y.sum() < len(y):
            exact = skm.roc_auc_score(y, prob)
            assert out["roc_auc_lower"] - 1e-6 <= exact <= out["roc_auc_upper"] + 1e-6


@st.composite
def scored(draw):
    rng = np.random.default_rng(draw(st.integers(0, 10**6)))
    n_bins = draw(st.sampled_from([1, 3, 10, 50]))
    levels = draw(st.sampled_from([2, 5, 10, 1000]))  # some scores land on bin edges
    y = (rng.random(N) < draw(st.sampled_from([0.05, 0.3, 0.7]))).astype(np.int32)
    y[:2] = [0, 1]
    s = np.clip(rng.integers(0, levels + 1, N) / levels + 0.2 * y * rng.random(N), 0, 1)
    w = rng.choice([0.0, 0.5, 1.0, 3.0], N).astype(np.float32) if draw(st.booleans()) else None
    if w is not None:
        w[:2] = 1.0
    return y, s.astype(np.float32), w, n_bins


@given(scored())
@SETTINGS
def test_binned_auc_bounds_contain_exact(p):
    y, s, w, n_bins = p
    spec = M.BinnedAUC(num_classes=1, num_bins=n_bins)
    out = spec.compute(spec.update(spec.empty(), y, s, w))
    exact = float(M.roc_auc(y, s, sample_weight=w))
    assert float(out["lower"][0]) - 1e-6 <= exact <= float(out["upper"][0]) + 1e-6
    assert float(out["lower"][0]) <= float(out["auc"][0]) <= float(out["upper"][0])


@given(scored())
@settings(max_examples=4, deadline=None, derandomize=True)  # each builds a 2**20-bin histogram
def test_binned_auc_is_exact_with_one_bin_per_distinct_score(p):
    y, s, w, _ = p
    fine = M.BinnedAUC(num_classes=1, num_bins=1 << 20)
    grid = np.floor(s * 16) / 16
    np.testing.assert_allclose(
        fine.compute(fine.update(fine.empty(), y, grid, w))["auc"][0],
        M.roc_auc(y, grid, sample_weight=w), rtol=1e-5)


def test_states_one_shot_vs_batches():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, N)
    prob = rng.dirichlet(np.ones(3), N).astype(np.float32)
    w = rng.choice([0.0, 1.0], N).astype(np.float32)
    specs = [(M.ConfusionMatrix(3), lambda sl: (y[sl], prob[sl].argmax(1), w[sl])),
             (M.BinnedAUC(3, 16), lambda sl: (y[sl], prob[sl], w[sl])),
             (M.Calibration(5), lambda sl: (y[sl], prob[sl], w[sl])),
             (M.Mean(), lambda sl: (prob[sl, 0], w[sl])),
             (M.ExactScores(N, (3,)), lambda sl: (y[sl], prob[sl], w[sl]))]
    for spec, args in specs:
        one = spec.update(spec.empty(), *args(slice(None)))
        a = spec.update(spec.empty(), *args(slice(0, 20)))
        b = spec.update(spec.empty(), *args(slice(20, None)))
        many = spec.merge(a, b)
        # counts exactly; float sums (confidence, totals) up to summation order
        jax.tree.map(lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v),
                                                             rtol=1e-6), one, many)
    ex = M.ExactScores(N, (3,))
    state = ex.update(ex.empty(), y, prob, w)
    np.testing.assert_allclose(ex.compute(state)["auc"],
                               M.roc_auc(y, prob, sample_weight=w), rtol=1e-6)
    small = M.ExactScores(30, (3,))
    full = small.update(small.update(small.empty(), y[:20], prob[:20]), y[20:], prob[20:])
    assert int(full["count"]) == 30 and int(full["overflow"]) == N - 30


def test_exact_mode_collection_equals_function():
    batch = binary(data(7, 2))
    coll = M.collection(["roc_auc", "average_precision"], num_classes=2, task="binary",
                        auc_mode="exact", capacity=N)
    state = coll.empty()
    for b in split(batch, 3):
        state = jax.jit(lambda s, b: coll.update(s, **b))(state, b)
    out = coll.compute(state)
    keep = np.asarray(batch["mask"]) > 0
    y, score = np.asarray(batch["labels"])[keep], np.asarray(batch["logits"])[keep]
    np.testing.assert_allclose(out["roc_auc"], skm.roc_auc_score(y, score), rtol=1e-6)
    np.testing.assert_allclose(out["average_precision"],
                               skm.average_precision_score(y, score), rtol=1e-5)


def test_collection_contract_and_curves():
    with pytest.raises(ValueError, match="valid metrics"):
        M.collection(["acuracy"], num_classes=3)
    with pytest.raises(ValueError, match="not defined"):
        M.collection(["roc_auc_ovo"], num_classes=3, task="binary")
    with pytest.raises(ValueError, match="capacity"):
        M.collection(["roc_auc"], num_classes=3, auc_mode="exact")
    for name in ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                 "f1_micro", "f1_weighted", "specificity_macro", "npv_macro", "mcc",
                 "cohen_kappa", "log_loss", "brier", "ece", "roc_auc_ovr", "roc_auc_ovo",
                 "average_precision", "precision", "recall", "specificity", "npv", "fpr",
                 "fnr", "f1", "roc_auc", "tp", "fp", "fn", "tn", "best_f1_threshold",
                 "best_youden_threshold", "top5_accuracy"):
        assert name in M.names()
    coll = _COLL["binary"]
    state = _UPDATE["binary"](coll.empty(), binary(data(1, 2)))
    curves = coll.curves(state)
    assert curves["roc_pr"]["tpr"].shape == (1, 20)
    assert curves["reliability"]["count"].shape == (15,)
    ml = M.collection(["accuracy", "subset_accuracy", "f1_macro", "roc_auc"], num_classes=3,
                      task="multilabel")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (N, 3))
    logits = rng.normal(size=(N, 3)).astype(np.float32)
    out = ml.compute(ml.update(ml.empty(), logits=logits, labels=labels, loss=np.ones(N),
                               mask=np.ones(N)))
    pred = (logits >= 0).astype(int)
    np.testing.assert_allclose(out["subset_accuracy"], skm.accuracy_score(labels, pred))
    np.testing.assert_allclose(out["f1_macro"], skm.f1_score(labels, pred, average="macro"),
                               rtol=1e-6)


def test_sharded_over_4_devices_matches_one_device():
    """4 simulated CPU devices (conftest), batch sharded on a ('data',) mesh (Explicit and
    Auto axes): jitted collection updates and functions equal the one-device results."""
    from jax.sharding import NamedSharding, PartitionSpec as P

    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    n, k = 64, 5
    names = ["accuracy", "f1_macro", "mcc", "top2_accuracy", "log_loss", "ece", "roc_auc_ovr",
             "roc_auc_ovo", "average_precision", "roc_auc_lower"]
    batches = [dict(logits=jnp.asarray(np.round(rng.normal(size=(n, k)), 1), jnp.float32),
                    labels=jnp.asarray(rng.integers(0, k, n)),
                    loss=jnp.asarray(rng.random(n), jnp.float32),
                    mask=jnp.asarray(np.arange(n) < n - 3 * i, jnp.float32)) for i in range(3)]

    for axis_type in (jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto):
        mesh = jax.make_mesh((4,), ("data",), axis_types=(axis_type,))
        shard = NamedSharding(mesh, P("data"))
        for mode in ("binned", "exact") if axis_type == jax.sharding.AxisType.Explicit else ("binned",):
            coll = M.collection(names if mode == "binned" else ["roc_auc_ovr"], num_classes=k,
                                auc_mode=mode, capacity=3 * n)
            step = jax.jit(lambda s, b: coll.update(s, **b))
            one = coll.empty()
            for b in batches:
                one = step(one, b)
            many = coll.empty()
            for b in batches:
                many = step(many, jax.device_put(b, shard))
            a, b = coll.compute(one), coll.compute(many)
            for name in a:
                np.testing.assert_allclose(np.asarray(a[name]), np.asarray(b[name]), rtol=1e-6,
                                           err_msg=f"{axis_type} {mode} {name}")
            for key, leaf in (("confusion", "confusion"), ("histograms", "pos"),
                              ("pair_histograms", "pairs"), ("calibration", "count")):
                if key in one:
                    np.testing.assert_array_equal(np.asarray(one[key][leaf]),
                                                  np.asarray(many[key][leaf]))
        # functions on sharded inputs
        y = jax.device_put(batches[0]["labels"], shard)
        s = jax.device_put(jax.nn.softmax(batches[0]["logits"]), shard)
        w = jax.device_put(batches[0]["mask"], shard)
        for fn in (lambda y, s, w: M.roc_auc(y == 1, s[:, 1]),
                   lambda y, s, w: M.average_precision(y, s, sample_weight=w),
                   lambda y, s, w: M.f1(y, jnp.argmax(s, 1), num_classes=k, average="macro",
                                        sample_weight=w)):
            want = fn(batches[0]["labels"], jax.nn.softmax(batches[0]["logits"]),
                      batches[0]["mask"])
            np.testing.assert_allclose(np.asarray(jax.jit(fn)(y, s, w)), np.asarray(want),
                                       rtol=1e-6)


# ---- derived metrics of a merged confusion matrix ----

def _sk_from_confusion(name, y, p, k, w, **opts):
    """scikit-learn's value of a from_confusion metric (labels = range(k))."""
    labels = list(range(k))
    avg = opts.get("average", "binary")
    zd = opts.get("zero_division", 0.0)
    ratio = dict(average=avg, labels=labels, zero_division=zd, sample_weight=w,
                 pos_label=opts.get("pos_label", 1))
    if name in ("precision", "recall", "f1"):
        return getattr(skm, f"{name}_score")(y, p, **ratio)
    if name == "fbeta":
        return skm.fbeta_score(y, p, beta=opts["beta"], **ratio)
    if name in ("specificity", "npv", "fpr"):  # one-vs-rest of "not c"
        sk = skm.precision_score if name == "npv" else skm.recall_score
        per = np.array([sk(y != c, p != c, zero_division=zd, sample_weight=w) for c in labels])
        return 1 - per if name == "fpr" else per
    if name == "fnr":
        return 1 - skm.recall_score(y, p, **ratio)
    if name == "accuracy":
        return skm.accuracy_score(y, p, sample_weight=w)
    if name == "balanced_accuracy":
        return skm.balanced_accuracy_score(y, p, sample_weight=w, **opts)
    if name == "matthews_corrcoef":
        return skm.matthews_corrcoef(y, p, sample_weight=w)
    return skm.cohen_kappa_score(y, p, labels=labels, sample_weight=w, **opts)


FROM_CONFUSION_CASES = [
    ("f1", dict(average="macro")), ("f1", dict(average="weighted")), ("f1", dict(average="micro")),
    ("precision", dict(average="macro", zero_division=1.0)), ("recall", dict(average=None)),
    ("fbeta", dict(beta=0.5, average="macro")), ("specificity", dict(average=None)),
    ("npv", dict(average=None)), ("fpr", dict(average=None, zero_division=np.nan)),
    ("fnr", dict(average=None, zero_division=np.nan)), ("accuracy", {}),
    ("balanced_accuracy", dict(adjusted=True)), ("matthews_corrcoef", {}),
    ("cohen_kappa", dict(weights="quadratic")),
]


@given(st.integers(0, 10**6), st.sampled_from([2, 3, 5]))
@SETTINGS
def test_metrics_from_merged_confusion_state(seed, k):
    """ConfusionMatrix.compute(state, name, ...) of a state merged from 3 batches = the
    function form = scikit-learn, for every metric from_confusion knows."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, N)
    p = np.where(rng.random(N) < 0.5, y, rng.integers(0, k, N))
    w = rng.choice([0.0, 0.5, 1.0, 2.0], N).astype(np.float32)
    spec = M.ConfusionMatrix(k)
    update = jax.jit(spec.update)
    states = [update(spec.empty(), y[i:i + 16], p[i:i + 16], w[i:i + 16]) for i in (0, 16, 32)]
    merged = functools.reduce(spec.merge, states)
    cases = FROM_CONFUSION_CASES + ([("f1", dict(average="binary", pos_label=0))] if k == 2
                                    else [])
    real = w > 0
    for name, opts in cases:
        got = spec.compute(merged, name, **opts)
        np.testing.assert_allclose(got, M.from_confusion(merged["confusion"], name, **opts))
        fn = getattr(M, name)
        np.testing.assert_allclose(got, fn(y, p, num_classes=k, sample_weight=w, **opts),
                                   rtol=1e-6, atol=1e-7, err_msg=name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = _sk_from_confusion(name, y[real], p[real], k, w[real], **opts)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {opts}")


def test_from_confusion_contract_and_collection_state():
    cm = M.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], num_classes=3)
    with pytest.raises(ValueError, match="valid: accuracy"):
        M.from_confusion(cm, "f2")
    with pytest.raises(ValueError, match="needs beta"):
        M.from_confusion(cm, "fbeta")
    with pytest.raises(TypeError, match="matthews_corrcoef"):
        M.from_confusion(cm, "matthews_corrcoef", average="macro")
    with pytest.raises(ValueError, match="average='binary' needs num_classes=2"):
        M.from_confusion(cm, "f1")
    # a training-loop collection's state: the same numbers as its named metrics
    coll = M.collection(["f1_macro", "mcc", "recall_weighted"], num_classes=4)
    batch = data(5, 4)
    state = jax.jit(lambda s, b: coll.update(s, **b))(coll.empty(), batch)
    out = coll.compute(state)
    for name, metric, opts in (("f1_macro", "f1", dict(average="macro")),
                               ("mcc", "mcc", {}),
                               ("recall_weighted", "recall", dict(average="weighted"))):
        np.testing.assert_allclose(M.from_confusion(state["confusion"]["confusion"], metric,
                                                    **opts),
                                   out[name], rtol=1e-6)


def test_collection_update_needs_only_what_it_uses():
    """No loss= or mask= for a collection without 'loss'; mask defaults to all ones; listing
    'loss' without giving it is an error naming the metric."""
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(N, 4)).astype(np.float32)
    y = rng.integers(0, 4, N)
    coll = M.collection(["accuracy", "f1_macro"], num_classes=4)
    assert coll.metric_names == ("accuracy", "f1_macro") and "loss" not in coll.empty()
    out = coll.compute(coll.update(coll.empty(), logits=logits, labels=y))
    pred = logits.argmax(1)
    np.testing.assert_allclose(out["accuracy"], skm.accuracy_score(y, pred), rtol=1e-6)
    np.testing.assert_allclose(out["f1_macro"], skm.f1_score(y, pred, average="macro",
                                                             labels=range(4)), rtol=1e-6)
    with_loss = M.collection(["accuracy", "loss"], num_classes=4)
    assert with_loss.metric_names == ("loss", "accuracy")
    with pytest.raises(ValueError, match="metric 'loss' needs update"):
        with_loss.update(with_loss.empty(), logits=logits, labels=y)
