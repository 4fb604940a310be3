"""ResNet-56 (CIFAR layout, option A shortcuts) on CIFAR-10 with He et al. 2015's recipe.

    python -m jaxclf.main --config=configs/resnet56_cifar10.py --workdir=runs/resnet56_cifar10

Paper (He et al. 2015, Table 6): 6.97% test error.
Needs CIFAR-10 in the TFDS data_dir (downloaded on first use where there is internet).
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "resnet56"
    recipes.he2015_cifar10(c)
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
