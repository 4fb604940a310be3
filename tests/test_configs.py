"""Every experiment config loads, validates, and trains in its smoke variant.

Catalog datasets (MNIST, CIFAR-10) are served by tfds.testing.mock_data: random images of
the right shapes, so these runs check the wiring, not the accuracy.
"""

import glob
import os

import jax
import pytest
import tensorflow_datasets as tfds

from jaxclf import config as config_lib
from jaxclf.data import builders
from jaxclf.train import train_and_evaluate

from conftest import REPO

SMOKE_CONFIGS = [
    "lenet5_digits", "lenet5_mnist",
    "resnet20_cifar10", "resnet56_cifar10", "resnet110_cifar10", "resnet18_cifar10", "vgg16_bn_cifar10",
    "not_hotdog",
]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))), ids=os.path.basename)
def test_config_loads_and_validates(path):
    c = config_lib.load(path)
    config_lib.validate(c)
    assert c.train.num_steps > 0
    doc = open(path).read()
    assert "python -m jaxclf.main --config=configs/" in doc, "the docstring must hold the launch command"


@pytest.mark.parametrize("name", SMOKE_CONFIGS)
def test_smoke_variant_trains(name, tmp_path, tfds_dir):
    c = config_lib.load(os.path.join(REPO, "configs", f"{name}.py"), "smoke")
    if c.dataset.name != "image_folder":  # its smoke variant generates its own folder
        c.dataset.data_dir = tfds_dir
    c.train.progress = False
    if c.dataset.name in builders.BUILDERS:
        results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    else:
        with tfds.testing.mock_data(num_examples=16):
            results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    assert 0.0 <= results["test"]["accuracy"] <= 1.0
    assert (tmp_path / "results.json").exists()
