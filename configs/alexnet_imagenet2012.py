"""AlexNet on ImageNet-2012 with Krizhevsky et al. 2012's recipe (streamed from ArrayRecord).

    python -m jaxclf.main --config=configs/alexnet_imagenet2012.py --workdir=runs/alexnet_imagenet2012 \
        --config.dataset.data_dir=DIR

Paper (Krizhevsky, Sutskever & Hinton 2012, sec. 5): SGD momentum 0.9, batch 128, weight
decay 5e-4, lr 0.01 divided by 10 three times (by hand, when the validation error stopped
improving; here at epochs 30, 60 and 80), about 90 epochs; dropout 0.5 in the first two
fully connected layers. One net: 40.7% top-1 / 18.2% top-5 error (10 crops).
torchvision's alexnet (this model's layout, no LRN, one tower): 56.52% top-1 / 79.07% top-5
accuracy (single 224 center crop). Not trained here (no GPU, no ImageNet on this machine).
Prepare the data once: ``tfds build imagenet2012 --data_dir=DIR --file_format=array_record``.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "alexnet"
    c.model.dropout_rate = 0.5
    recipes.imagenet2012(c, batch_size=128, epochs=90, lr=0.01, weight_decay=5e-4, decay_epochs=(30, 60, 80))
    return recipes.apply_variant(c, arg, {"smoke": recipes.imagenet_smoke})
