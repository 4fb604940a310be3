"""ResNet-20 (CIFAR layout, option A shortcuts) on CIFAR-10 with He et al. 2015's recipe.

    python -m jaxclf.main --config=configs/resnet20_cifar10.py --workdir=runs/resnet20_cifar10

Paper (He et al. 2015, Table 6): 8.75% test error.
Needs CIFAR-10 in the TFDS data_dir (downloaded on first use where there is internet).
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "resnet20"
    recipes.he2015_cifar10(c)
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
