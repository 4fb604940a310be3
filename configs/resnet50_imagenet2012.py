"""ResNet-50 (v1.5, torchvision's layout) on ImageNet-2012 with He et al. 2015's recipe.

    python -m jaxclf.main --config=configs/resnet50_imagenet2012.py --workdir=runs/resnet50_imagenet2012 \
        --config.dataset.data_dir=DIR

Paper (sec. 3.4): SGD momentum 0.9, batch 256, weight decay 1e-4, lr 0.1 divided by 10 when
the error plateaus (torchvision's reference: at epochs 30 and 60 of 90, as here); scale
augmentation and 224 crops + flip. The authors' released ResNet-50: 24.7% top-1 / 7.8% top-5
error (10 crops of the image resized to 256; github.com/KaimingHe/deep-residual-networks);
torchvision's resnet50 (IMAGENET1K_V1): 76.13% top-1 / 92.86% top-5 accuracy (224 center crop).
Not trained here (no GPU, no ImageNet on this machine).
Prepare the data once: ``tfds build imagenet2012 --data_dir=DIR --file_format=array_record``.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "resnet50"
    recipes.imagenet2012(c, batch_size=256, epochs=90, lr=0.1, weight_decay=1e-4, decay_epochs=(30, 60))
    return recipes.apply_variant(c, arg, {"smoke": recipes.imagenet_smoke})
