"""Logistic regression (a linear softmax classifier) on MNIST-1D.

    python -m jaxclf.main --config=configs/mnist1d_logreg.py --workdir=runs/mnist1d_logreg --config.seed=0

Paper (Greydanus 2020, MNIST-1D benchmark): 32% test accuracy. Ours: see
experiments/mnist1d/README.md (3 seeds).
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    recipes.greydanus2020_mnist1d(c)
    c.model.name = "linear"
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
