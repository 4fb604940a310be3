"""GoogLeNet (Inception v1, torchvision's layout with batch norm) on ImageNet-2012, with the
auxiliary classifiers of Szegedy et al. 2014.

    python -m jaxclf.main --config=configs/googlenet_imagenet2012.py --workdir=runs/googlenet_imagenet2012 \
        --config.dataset.data_dir=DIR

Paper (sec. 5-6): SGD momentum 0.9, the two auxiliary losses weighted 0.3, lr decreased 4% every
8 epochs (asynchronous, Polyak averaging; neither the base lr, batch size nor epoch count is
given). As the paper's schedule is not fully specified, the rest follows torchvision's
classification reference: batch 256, lr 0.1, weight decay 1e-4, divided by 10 at epochs 30 and
60 of 90. Paper: 6.67% top-5 error (7 models, 144 crops); torchvision's googlenet: 69.78%
top-1 / 89.53% top-5 accuracy (224 center crop). Not trained here (no GPU, no ImageNet).
Prepare the data once: ``tfds build imagenet2012 --data_dir=DIR --file_format=array_record``.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "googlenet"
    c.model.aux_logits = True
    c.train.aux_loss_weight = 0.3
    recipes.imagenet2012(c, batch_size=256, epochs=90, lr=0.1, weight_decay=1e-4, decay_epochs=(30, 60))
    return recipes.apply_variant(c, arg, {"smoke": recipes.imagenet_smoke})
