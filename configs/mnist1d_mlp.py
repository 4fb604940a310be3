"""The MNIST-1D paper's MLP: 40 -> 100 -> 100 (residual) -> 10, ReLU.

    python -m jaxclf.main --config=configs/mnist1d_mlp.py --workdir=runs/mnist1d_mlp --config.seed=0

Paper (Greydanus 2020, MNIST-1D benchmark): 68% test accuracy. Ours: see
experiments/mnist1d/README.md (3 seeds).
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    recipes.greydanus2020_mnist1d(c)
    c.model.name = "mlp"
    c.model.hidden = (100, 100)
    c.model.residual = True  # h2 = h1 + relu(W2 h1), as the paper's MLP
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
