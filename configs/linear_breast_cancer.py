"""Binary classification: logistic regression (linear model, sigmoid output) on the bundled
Wisconsin breast-cancer data (569 tumours, 30 features; positive class = malignant).

    python -m jaxclf.main --config=configs/linear_breast_cancer.py --workdir=runs/linear_breast_cancer

The run's report (runs/linear_breast_cancer/report/report.md) shows the ROC curve and AUC,
the confusion matrix at decision.threshold with the type I (FP) and type II (FN) error counts,
and the thresholds that maximise F1 and Youden's J. Result: see the README's table.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.task = "binary"
    c.model.name = "linear"
    c.dataset.name = "breast_cancer"
    c.dataset.image_key = "features"
    c.metrics = ("accuracy", "balanced_accuracy", "precision", "recall", "specificity", "npv", "f1", "roc_auc", "tp", "fp", "fn", "tn")
    c.optim.name = "adam"
    c.optim.lr = 1e-2
    c.optim.weight_decay = 1e-3
    c.train.batch_size = 64
    c.train.eval_batch_size = 144
    c.train.num_steps = 600
    c.train.log_every = c.train.eval_every = 100
    c.train.checkpoint_every = 300
    c.train.steps_per_call = 100
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
