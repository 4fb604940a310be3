"""The imbalanced-data lesson: 95 negatives, 5 positives, a predictor that always says 0."""

import numpy as np
from sklearn import metrics as skm

import jaxclf.metrics as M


def test_always_negative_looks_accurate_but_finds_nothing():
    y = np.array([0] * 95 + [1] * 5)
    pred = np.zeros(100, np.int32)
    assert np.isclose(M.accuracy(y, pred), 0.95)
    assert float(M.recall(y, pred)) == 0.0
    assert np.isclose(M.balanced_accuracy(y, pred), 0.5)
    assert float(M.matthews_corrcoef(y, pred)) == 0.0
    assert float(M.precision(y, pred)) == 0.0  # zero_division=0: no predicted positives
    assert float(M.f1(y, pred)) == 0.0
    assert np.isclose(M.specificity(y, pred), 1.0)
    cm = np.asarray(M.confusion_matrix(y, pred, num_classes=2))
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y, pred))  # [[95, 0], [5, 0]]
    # a constant score ranks nothing: AUC one half
    assert np.isclose(M.roc_auc(y, np.zeros(100, np.float32)), 0.5)
