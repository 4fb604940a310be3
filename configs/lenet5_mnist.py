"""LeNet-5 on MNIST (28x28 padded to 32x32, as in LeCun et al. 1998).

    python -m jaxclf.main --config=configs/lenet5_mnist.py --workdir=runs/lenet5_mnist

Paper: 0.95% test error for LeNet-5 without distortions (LeCun et al. 1998, Fig. 9).
Needs MNIST in the TFDS data_dir (downloaded on first use where there is internet).
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.model.name = "lenet5"
    c.dataset.name = "mnist"
    c.dataset.pad = 2
    c.optim.name = "adam"
    c.optim.lr = 1e-3
    c.optim.schedule = "cosine"
    c.train.batch_size = 128
    c.train.num_steps = 9_400  # about 20 epochs of 60,000 images
    c.train.eval_every = 940
    c.train.log_every = 100
    c.train.checkpoint_every = 940
    c.train.steps_per_call = 1
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
