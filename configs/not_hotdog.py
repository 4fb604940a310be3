"""Not hotdog: a binary classifier over an image folder, fine-tuned from ImageNet weights.

    # once: torchvision weights -> an orbax checkpoint (needs torch; or pass an .npz state_dict)
    python -m jaxclf.convert --model=resnet18 --pth=resnet18-f37072fd.pth --out=runs/resnet18_imagenet
    python -m jaxclf.main --config=configs/not_hotdog.py --workdir=runs/not_hotdog \
        --config.dataset.data_dir=data/hotdog --config.transfer.init_from=runs/resnet18_imagenet
    python -m jaxclf.predict --workdir=runs/not_hotdog photo1.jpg photo2.jpg

``data/hotdog`` holds ``hotdog/`` and ``not_hotdog/`` (split 80/20 per class), or ``train/`` and
``test/`` each with those two folders; class 1 (the positive class) is the second name in sorted
order, so ``hotdog/`` vs ``not_hotdog/`` predicts "not_hotdog" as positive. Variants
(``--config=configs/not_hotdog.py:ARG``): a backbone (``resnet18`` (default), ``resnet34``,
``resnet50``, ``alexnet``, ``vgg11_bn``, ``vgg16_bn``, ``googlenet``, any with a torchvision
conversion), ``scratch`` (no pretrained weights: small ResNet-20 at 96x96, whole net trained) and
``smoke`` (a few steps on a generated 16-image folder). The backbone is frozen (only the new
1-logit head trains, batch-norm statistics kept) unless ``transfer.unfreeze_after`` >= 0, after
which it trains at ``transfer.backbone_lr_factor`` times the learning rate. No result recorded yet.
"""

import os
import tempfile

from jaxclf import recipes, transfer
from jaxclf.config import base_config

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's pretrained models expect these
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES = ("resnet18", "resnet34", "resnet50", "alexnet", "vgg11_bn", "vgg16_bn", "googlenet")


def get_config(arg=None):
    c = base_config()
    c.task = "binary"
    c.metrics = ("accuracy", "precision", "recall", "f1", "roc_auc")
    c.model.name = "resnet18"

    d = c.dataset
    d.name = "image_folder"
    d.data_dir = "data/hotdog"
    d.resize = (224, 224)
    d.normalize = "standardize"
    d.mean, d.std = IMAGENET_MEAN, IMAGENET_STD
    d.augment = ("flip", "random_crop")
    d.crop_padding = 16
    d.image_folder.split_ratio = 0.8  # train fraction per class when the folder has no train/test folders
    d.image_folder.split_seed = 0
    d.image_folder.on_bad_file = "skip"  # or 'error'

    c.transfer.init_from = ""  # a workdir or a `python -m jaxclf.convert` output
    c.transfer.freeze = transfer.BACKBONE_PATTERN  # train only the new head
    c.transfer.freeze_batch_stats = True

    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.optim.schedule = "cosine"
    c.train.batch_size = 32
    c.train.eval_batch_size = 64
    c.train.num_steps = 1500
    c.train.eval_every = c.train.checkpoint_every = 250
    c.train.log_every = 50
    variants = {name: _backbone(name) for name in BACKBONES}
    return recipes.apply_variant(c, arg, {**variants, "scratch": _scratch, "smoke": _smoke})




def _backbone(name):
    def apply(c):
        c.model.name = name
        if name == "googlenet":  # torchvision's pretrained GoogLeNet maps its inputs to (x - 0.5) / 0.5
            c.dataset.mean, c.dataset.std = (0.5,) * 3, (0.5,) * 3

    return apply


def _scratch(c):
    """No pretrained weights: a CIFAR-style ResNet-20 at 96x96 trained end to end."""
    c.model.name = "resnet20"
    c.dataset.resize = (96, 96)
    c.dataset.crop_padding = 8
    c.dataset.mean = c.dataset.std = None  # train-split statistics
    c.transfer.freeze = ""
    c.transfer.freeze_batch_stats = False


def _smoke(c):
    """A few steps on a generated 2 x 8-image folder (made on first use in the temp dir)."""
    from jaxclf.data.image_folder import write_synthetic_folder

    _scratch(c)
    c.model.widths = (4, 8, 8)
    c.dataset.resize = (32, 32)
    c.dataset.crop_padding = 4
    c.dataset.data_dir = str(write_synthetic_folder(os.path.join(tempfile.gettempdir(), "jaxclf_not_hotdog_smoke")))
    c.dataset.image_folder.split_ratio = 0.75
    recipes.smoke(c)
