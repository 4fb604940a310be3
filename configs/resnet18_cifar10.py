"""ResNet-18 (torchvision's blocks, with a 3x3 stem for 32x32 images) on CIFAR-10.

    python -m jaxclf.main --config=configs/resnet18_cifar10.py --workdir=runs/resnet18_cifar10

No paper figure: the common reference recipe (SGD 0.1, momentum 0.9, weight decay 5e-4,
cosine over 200 epochs, crop + flip) is reported around 93-95% test accuracy.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "resnet18"
    c.model.stem = "cifar"
    recipes.he2015_cifar10(c)
    c.optim.weight_decay = 5e-4
    c.optim.schedule = "cosine"
    c.train.num_steps = 78_200  # 200 epochs of 50,000 images at batch 128
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
