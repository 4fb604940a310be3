"""ResNet-110 (CIFAR layout, option A shortcuts) on CIFAR-10 with He et al. 2015's recipe.

    python -m jaxclf.main --config=configs/resnet110_cifar10.py --workdir=runs/resnet110_cifar10

Paper (He et al. 2015, Table 6): 6.43% (best of 5 runs; mean 6.61 +- 0.16) test error.
The paper warms up at lr 0.01 for about 400 iterations; here lr rises linearly over 400 steps.
Needs CIFAR-10 in the TFDS data_dir (downloaded on first use where there is internet).
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "resnet110"
    recipes.he2015_cifar10(c, warmup_steps=400)
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
