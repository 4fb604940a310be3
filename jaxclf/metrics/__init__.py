"""Classification metrics as jittable functions and mergeable statistics.

Functions follow scikit-learn's names and semantics with static class counts (see each
module's docstring): ``confusion`` (matrices, per-class counts), ``threshold`` (metrics of hard
predictions), ``ranking`` (ROC/PR curves, AUC, average precision, top-k), ``calibration``
(log loss, Brier, ECE). ``statistics`` holds the specs of one protocol, ``empty /
from_model_output / merge / compute`` (and ``update``), whose states are pytrees of sums (so
they merge across batches, devices and processes by addition). The training loop uses
:func:`collection`, named metrics composed of the statistics they read (one table,
``METRICS``), and :func:`means` for models that define their own loss; both
follow the same protocol.

No metric infers its classes from the data: each declares them (``num_classes``, the columns
of the scores, or 0/1 for binary inputs). A label outside them raises ValueError outside jit
and makes the result NaN inside jit; :func:`check_labels` (raises) and :func:`labels_valid`
(jittable) check labels, :func:`is_valid` a streamed state. :func:`from_confusion` reads any
threshold metric from a (merged) confusion matrix.
"""

from jaxclf.metrics import statistics
from jaxclf.metrics._common import check_labels, labels_valid
from jaxclf.metrics.calibration import (brier_score, calibration_from_sums,
                                        expected_calibration_error, log_loss,
                                        reliability_diagram)
from jaxclf.metrics.collection import (METRICS, Collection, Metric, collection, names,
                                       report_names)
from jaxclf.metrics.means import Means, means
from jaxclf.metrics.confusion import (Counts, confusion, confusion_matrix, counts,
                                      counts_from_confusion, multilabel_confusion_matrix)
from jaxclf.metrics.ranking import (average_precision, best_thresholds, histogram_auc,
                                    histogram_curves, precision_recall_curve, roc_auc,
                                    roc_curve, top_k_accuracy)
from jaxclf.metrics.statistics import (BinnedAUC, Brier, Calibration, ConfusionMatrix,
                                       ExactScores, LogLoss, Mean, PairHistograms, Statistic,
                                       SubsetAccuracy, TopKAccuracy, is_valid)
from jaxclf.metrics.threshold import (accuracy, balanced_accuracy, cohen_kappa, f1, fbeta, fnr,
                                      fpr, from_confusion, matthews_corrcoef, npv, precision,
                                      recall, sensitivity, specificity)

brier_score_loss = brier_score
roc_auc_score = roc_auc
average_precision_score = average_precision

__all__ = [
    "BinnedAUC", "Brier", "Calibration", "Collection", "ConfusionMatrix", "Counts",
    "ExactScores", "LogLoss", "METRICS", "Mean", "Means", "Metric", "PairHistograms",
    "Statistic", "SubsetAccuracy", "TopKAccuracy", "accuracy", "average_precision",
    "average_precision_score", "balanced_accuracy", "best_thresholds", "brier_score",
    "brier_score_loss", "calibration_from_sums", "check_labels", "cohen_kappa", "collection",
    "confusion", "confusion_matrix", "counts", "counts_from_confusion",
    "expected_calibration_error", "f1", "fbeta", "fnr", "fpr", "from_confusion",
    "histogram_auc", "histogram_curves", "is_valid", "labels_valid", "log_loss",
    "matthews_corrcoef", "means", "multilabel_confusion_matrix", "names", "npv", "precision",
    "precision_recall_curve", "recall", "reliability_diagram", "report_names", "roc_auc",
    "roc_auc_score", "roc_curve", "sensitivity", "specificity", "statistics", "top_k_accuracy",
]
