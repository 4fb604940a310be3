"""One protocol for every statistic, Collection and Means: ``empty / from_model_output /
merge / compute`` (and ``update``). The state of concatenated batches is the merge of the
batches' states, every function is jittable and ``empty()`` merges as the identity."""

import functools

import jax
import numpy as np
import pytest
from sklearn import metrics as skm

import jaxclf.metrics as M

N, K = 24, 3
PARTS = (0, 7, 15, N)  # three unequal batches
_rng = np.random.default_rng(11)
_logits = _rng.normal(size=(N, K)).astype(np.float32)
_mask = (_rng.random(N) < 0.8).astype(np.float32)
_y = _rng.integers(0, K, N)
_ind = _rng.integers(0, 2, (N, K))
_prob = np.asarray(jax.nn.softmax(_logits))
_sig = np.asarray(jax.nn.sigmoid(_logits))

# one dict of outputs per task; every statistic reads the names it needs and ignores the rest
OUTPUTS = {
    "multiclass": dict(y_true=_y, y_pred=_prob.argmax(1), y_prob=_prob, sample_weight=_mask,
                       values=_rng.random(N).astype(np.float32)),
    "binary": dict(y_true=_ind[:, 0], y_pred=(_sig[:, 0] >= 0.5).astype(np.int32),
                   y_prob=_sig[:, 0], sample_weight=_mask),
    "multilabel": dict(y_true=_ind, y_pred=(_sig >= 0.5).astype(np.int32), y_prob=_sig,
                       sample_weight=_mask),
}
SPECS = {
    "Mean": (M.Mean(), "multiclass"),
    "TopKAccuracy": (M.TopKAccuracy(2), "multiclass"),
    "SubsetAccuracy": (M.SubsetAccuracy(), "multilabel"),
    "LogLoss": (M.LogLoss(K), "multiclass"),
    "LogLoss binary": (M.LogLoss(), "binary"),
    "Brier multilabel": (M.Brier(), "multilabel"),
    "ConfusionMatrix": (M.ConfusionMatrix(K), "multiclass"),
    "ConfusionMatrix multilabel": (M.ConfusionMatrix(K, multilabel=True), "multilabel"),
    "BinnedAUC": (M.BinnedAUC(K, 8), "multiclass"),
    "BinnedAUC binary": (M.BinnedAUC(1, 8), "binary"),
    "PairHistograms": (M.PairHistograms(K, 8), "multiclass"),
    "Calibration": (M.Calibration(5), "multiclass"),
    "Calibration multilabel": (M.Calibration(5), "multilabel"),
    "ExactScores": (M.ExactScores(N, (K,)), "multiclass"),
}
_COLL_NAMES = {
    "multiclass": ["loss", "accuracy", "f1_macro", "top2_accuracy", "log_loss", "brier", "ece",
                   "roc_auc_ovr", "roc_auc_ovo", "average_precision"],
    "binary": ["loss", "f1", "tp", "roc_auc", "roc_auc_lower", "best_f1_threshold", "brier"],
    "multilabel": ["loss", "accuracy", "subset_accuracy", "f1_macro", "log_loss", "ece",
                   "roc_auc"],
}


def _sliced(outputs):
    """``slice -> those rows of every output``."""
    return lambda sl: {k: v[sl] for k, v in outputs.items()}


def _collection_case(task, auc_mode):
    coll = M.collection(_COLL_NAMES[task], num_classes=K, task=task, num_bins=8,
                        auc_mode=auc_mode, capacity=N)
    labels = {"multiclass": _y, "binary": _ind[:, 0], "multilabel": _ind}[task]
    logits = _logits[:, 0] if task == "binary" else _logits
    return coll, _sliced(dict(logits=logits, labels=labels, loss=OUTPUTS["multiclass"]["values"],
                              mask=_mask))


def _means_case():
    per_example = {"loss": _rng.random(N), "kl": _rng.random(N)}

    def outputs(sl):  # a generative model's batch: means over the batch, weighted by its size
        return dict(values={k: np.float32(v[sl].mean()) for k, v in per_example.items()},
                    weight=np.float32(len(range(N)[sl])))
    return M.means(["kl"]), outputs


CASES = {**{name: (spec, _sliced(OUTPUTS[task])) for name, (spec, task) in SPECS.items()},
         **{f"Collection {task} {mode}": _collection_case(task, mode)
            for task in ("multiclass", "binary", "multilabel") for mode in ("binned", "exact")},
         "Means": _means_case()}


def _assert_trees_equal(a, b, rtol=0.0):
    """Same structure; arrays equal (``rtol``: sums of floats in another order)."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=0)


@pytest.mark.parametrize("case", list(CASES))
def test_protocol(case):
    spec, outputs = CASES[case]
    from_output = jax.jit(lambda o: spec.from_model_output(**o))
    merge = jax.jit(spec.merge)
    batches = [outputs(slice(a, b)) for a, b in zip(PARTS, PARTS[1:])]
    # jittable: the jitted state of the whole batch is the eager one
    whole = from_output(outputs(slice(None)))
    _assert_trees_equal(whole, spec.from_model_output(**outputs(slice(None))), rtol=1e-6)
    # the state of the concatenated batches = the merge of the batches' states
    merged = functools.reduce(merge, [from_output(b) for b in batches])
    _assert_trees_equal(merged, whole, rtol=1e-6)
    _assert_trees_equal(spec.compute(merged), spec.compute(whole), rtol=1e-6)
    _assert_trees_equal(jax.jit(spec.compute)(merged), spec.compute(merged), rtol=1e-6)
    # update = merge with the batch's state; empty() is the identity of merge
    updated = functools.reduce(lambda s, b: spec.update(s, **b), batches, spec.empty())
    _assert_trees_equal(updated, merged)
    _assert_trees_equal(merge(spec.empty(), whole), whole)
    _assert_trees_equal(merge(whole, spec.empty()), whole)
    assert bool(M.is_valid(merged))


def _state(spec, task):
    return spec.from_model_output(**OUTPUTS[task])


def test_statistics_match_sklearn():
    """The statistics of one batch (weighted by the mask) = scikit-learn."""
    w, y, prob = _mask, _y, _prob
    checks = {
        "TopKAccuracy": skm.top_k_accuracy_score(y, prob, k=2, sample_weight=w,
                                                 labels=range(K)),
        "SubsetAccuracy": skm.accuracy_score(_ind, OUTPUTS["multilabel"]["y_pred"],
                                             sample_weight=w),
        "LogLoss": skm.log_loss(y, prob, sample_weight=w, labels=range(K)),
        "LogLoss binary": skm.log_loss(_ind[:, 0], _sig[:, 0], sample_weight=w),
        "Brier multilabel": np.mean([skm.brier_score_loss(_ind[:, j], _sig[:, j],
                                                          sample_weight=w) for j in range(K)]),
        "Mean": np.average(OUTPUTS["multiclass"]["values"], weights=w),
    }
    for name, want in checks.items():
        spec, task = SPECS[name]
        np.testing.assert_allclose(spec.compute(_state(spec, task)), want, rtol=1e-5,
                                   err_msg=name)
    spec, task = SPECS["ConfusionMatrix multilabel"]
    np.testing.assert_array_equal(
        spec.compute(_state(spec, task)),
        skm.multilabel_confusion_matrix(_ind, OUTPUTS["multilabel"]["y_pred"], sample_weight=w))
    spec, task = SPECS["Calibration multilabel"]  # every (example, label) a binary call
    np.testing.assert_allclose(
        spec.compute(_state(spec, task))["ece"],
        M.expected_calibration_error(_ind.reshape(-1), _sig.reshape(-1), num_bins=5,
                                     sample_weight=np.repeat(w, K)), rtol=1e-6)


def test_pair_histograms_ovo_auc_equals_exact_on_separated_scores():
    """With one bin per distinct score, the binned one-vs-one AUC is sklearn's."""
    rng = np.random.default_rng(3)
    levels = rng.integers(1, 4, (N, K)).astype(np.float32)  # scores in {1, 2, 3} / 6 ...
    prob = levels / levels.sum(1, keepdims=True)
    y = np.arange(N) % K
    spec = M.PairHistograms(K, 1 << 16)
    state = spec.from_model_output(y_true=y, y_prob=prob)
    for average in ("macro", "weighted"):
        np.testing.assert_allclose(
            spec.compute(state, average),
            skm.roc_auc_score(y, prob, multi_class="ovo", average=average), rtol=1e-6)


def test_bad_labels_raise_eagerly_in_every_labelled_statistic():
    bad = {"multiclass": np.where(np.arange(N) == 3, K, _y),
           "binary": np.where(np.arange(N) == 3, 2, _ind[:, 0]),
           "multilabel": np.where(np.arange(N)[:, None] == 3, 2, _ind)}
    for name, (spec, task) in SPECS.items():
        if not spec.label_sums:
            continue
        with pytest.raises(ValueError, match="label"):
            spec.from_model_output(**{**OUTPUTS[task], "y_true": bad[task]})
        poisoned = jax.jit(lambda o, s=spec: s.from_model_output(**o))(
            {**OUTPUTS[task], "y_true": bad[task]})
        assert not bool(M.is_valid(poisoned)), name
