"""VGG-16 with batch norm on CIFAR-10: the 13 conv layers, then one 512 -> 10 classifier.

    python -m jaxclf.main --config=configs/vgg16_bn_cifar10.py --workdir=runs/vgg16_bn_cifar10

No paper figure for CIFAR (Simonyan and Zisserman report ImageNet); this recipe (SGD 0.1,
momentum 0.9, weight decay 5e-4, cosine over 200 epochs, crop + flip) is commonly reported
around 93.5% test accuracy.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "vgg16_bn"
    c.model.hidden = ()  # no 4096-4096 block: 32x32 images leave a 1x1x512 feature map
    c.model.pool_size = 1
    c.model.dropout_rate = 0.0
    recipes.he2015_cifar10(c)
    c.optim.weight_decay = 5e-4
    c.optim.schedule = "cosine"
    c.train.num_steps = 78_200
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
