"""The MNIST-1D paper's 1-D CNN: three stride-2 convolutions with 25 channels, then dense.

    python -m jaxclf.main --config=configs/mnist1d_cnn.py --workdir=runs/mnist1d_cnn --config.seed=0

Paper (Greydanus 2020, MNIST-1D benchmark): 94% test accuracy. Ours: see
experiments/mnist1d/README.md (3 seeds).
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    recipes.greydanus2020_mnist1d(c)
    c.model.name = "conv1d"  # 3 convs, 25 channels, kernels 5-3-3, stride 2, then dense
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
