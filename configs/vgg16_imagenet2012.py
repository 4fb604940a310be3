"""VGG-16 (configuration D) on ImageNet-2012 with Simonyan & Zisserman 2014's recipe.

    python -m jaxclf.main --config=configs/vgg16_imagenet2012.py --workdir=runs/vgg16_imagenet2012 \
        --config.dataset.data_dir=DIR

Paper (sec. 3.1): SGD momentum 0.9, batch 256, weight decay 5e-4, dropout 0.5 in the first two
fully connected layers, lr 0.01 divided by 10 three times when the validation accuracy
stopped improving (here at epochs 30, 50 and 65), 74 epochs. (The paper trains on rescaled
images with 224 crops and initialises D from a shallower net; we use the random-resized-crop
pipeline and the default initialisation.) Paper (Table 3, D trained and tested at scale 256):
27.0% / 8.8% top-1 / top-5 error; torchvision's vgg16: 71.59% top-1 / 90.38% top-5 accuracy (224 center crop).
Not trained here (no GPU, no ImageNet on this machine).
Prepare the data once: ``tfds build imagenet2012 --data_dir=DIR --file_format=array_record``.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "vgg16"
    c.model.dropout_rate = 0.5
    recipes.imagenet2012(c, batch_size=256, epochs=74, lr=0.01, weight_decay=5e-4, decay_epochs=(30, 50, 65))
    return recipes.apply_variant(c, arg, {"smoke": recipes.imagenet_smoke})
