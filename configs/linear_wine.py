"""Multi-class linear classification on the bundled wine data (178 wines, 3 cultivars):
softmax (one weight vector per class, trained jointly) against one-vs-rest (three
independent sigmoid classifiers, predicting the most confident).

    python -m jaxclf.main --config=configs/linear_wine.py --workdir=runs/linear_wine_softmax
    python -m jaxclf.main --config=configs/linear_wine.py:ovr --workdir=runs/linear_wine_ovr

Result: see the README's table.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "linear"
    c.dataset.name = "wine"
    c.dataset.image_key = "features"
    c.metrics = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_ovr", "log_loss")
    c.optim.name = "adam"
    c.optim.lr = 1e-2
    c.train.batch_size = 32
    c.train.eval_batch_size = 48
    c.train.num_steps = 500
    c.train.log_every = c.train.eval_every = 100
    c.train.checkpoint_every = 250
    c.train.steps_per_call = 100
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke, "ovr": _ovr})


def _ovr(c):
    c.model.name = "linear_ovr"
