"""Every experiment config loads, validates, and trains in its smoke variant.

Catalog datasets (MNIST, CIFAR-10) are served by tfds.testing.mock_data: random images of
the right shapes, so these runs check the wiring, not the accuracy.
"""

import glob
import os

import jax
import pytest
import tensorflow_datasets as tfds

import jax.numpy as jnp

from jaxclf import config as config_lib
from jaxclf import metrics, models
from jaxclf.data import builders
from jaxclf.run import train_and_evaluate
from jaxclf.train import optim
from jaxclf.train import steps as steps_lib

from conftest import REPO

SMOKE_CONFIGS = [
    "lenet5_digits", "lenet5_mnist", "resnet20_cifar10",
    "linear_breast_cancer", "linear_wine", "mnist1d_logreg", "mnist1d_mlp", "mnist1d_cnn", "mnist1d_gru",
    "not_hotdog",
]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "configs", "*.py"))), ids=os.path.basename)
def test_config_loads_and_validates(path):
    c = config_lib.load(path)
    config_lib.validate(c)
    assert c.train.num_steps > 0
    doc = open(path).read()
    assert "python -m jaxclf.main --config=configs/" in doc, "the docstring must hold the launch command"


# The deeper CIFAR models share resnet20_cifar10's recipe and code path; compiling them costs
# minutes of CPU, so their smoke test traces one train step abstractly (jax.eval_shape: every
# shape, the optimizer and the loss, without compiling).
TRACED_CONFIGS = ["resnet56_cifar10", "resnet110_cifar10", "resnet18_cifar10", "vgg16_bn_cifar10"]


@pytest.mark.parametrize("name", TRACED_CONFIGS)
def test_deep_smoke_variant_traces_a_train_step(name):
    c = config_lib.load(os.path.join(REPO, "configs", f"{name}.py"), "smoke")
    model = models.from_config(c, 10)
    tx = optim.optimizer(c.optim, c.train.num_steps)
    coll = metrics.collection(c.metrics, num_classes=10, task=c.task)
    train_step, _ = steps_lib.make_steps(model, tx, coll, task=c.task, key=jax.random.key(0))
    images = jax.ShapeDtypeStruct((c.train.batch_size, 32, 32, 3), jnp.float32)
    state = jax.eval_shape(lambda x: steps_lib.init_state(model, tx, x, jax.random.key(0)), images)
    batch = {
        "inputs": images,
        "labels": jax.ShapeDtypeStruct((c.train.batch_size,), jnp.int32),
        "mask": jax.ShapeDtypeStruct((c.train.batch_size,), jnp.float32),
    }
    new_state, stats = jax.eval_shape(train_step, state, batch)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state.params) == jax.tree.map(lambda a: (a.shape, a.dtype), state.params)
    assert stats["grad_norm"].shape == ()


# The ImageNet configs stream (dataset.in_memory=False) through TFDS data sources, which
# tfds.testing.mock_data also serves (MockPolicy.USE_CODE: random encoded images of random
# sizes). AlexNet runs its smoke variant end to end in about 30 s; all four trace a train step
# at their smoke crop size with 1,000 classes (compiling the others costs minutes of CPU).
IMAGENET_CONFIGS = ["alexnet_imagenet2012", "vgg16_imagenet2012", "googlenet_imagenet2012", "resnet50_imagenet2012"]


@pytest.mark.parametrize("name", IMAGENET_CONFIGS)
def test_imagenet_smoke_variant_traces_a_train_step(name):
    c = config_lib.load(os.path.join(REPO, "configs", f"{name}.py"), "smoke")
    assert not c.dataset.in_memory and c.metrics == ("accuracy", "top5_accuracy")
    model = models.from_config(c, 1000)
    tx = optim.optimizer(c.optim, c.train.num_steps)
    coll = metrics.collection(c.metrics, num_classes=1000, task=c.task)
    train_step, _ = steps_lib.make_steps(model, tx, coll, task=c.task, key=jax.random.key(0), aux_weight=c.train.aux_loss_weight)
    b = c.train.batch_size
    images = jax.ShapeDtypeStruct((b, *c.dataset.resize, 3), jnp.float32)
    state = jax.eval_shape(lambda x: steps_lib.init_state(model, tx, x, jax.random.key(0)), images)
    batch = {"inputs": images, "labels": jax.ShapeDtypeStruct((b,), jnp.int32), "mask": jax.ShapeDtypeStruct((b,), jnp.float32)}
    new_state, stats = jax.eval_shape(train_step, state, batch)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), new_state.params) == jax.tree.map(lambda a: (a.shape, a.dtype), state.params)
    assert stats["grad_norm"].shape == ()


def test_imagenet_smoke_variant_streams_mock_data(tmp_path, tfds_dir):
    c = config_lib.load(os.path.join(REPO, "configs", "alexnet_imagenet2012.py"), "smoke")
    c.dataset.data_dir = tfds_dir
    c.train.progress = False
    c.train.allow_unusual = True  # 16 mock examples: fewer than a batch
    # The stream is what this tests: a narrow AlexNet (the full one is 57M parameters,
    # checkpointed every step) trains on the same batches.
    c.model.widths, c.model.hidden = (8, 16, 16, 16, 16), (32, 32)
    c.train.eval_every = c.train.num_steps  # each evaluation streams through new workers
    c.dataset.stream.num_workers = 1  # worker counts: test_streaming.py
    with tfds.testing.mock_data(num_examples=16, policy=tfds.testing.MockPolicy.USE_CODE):
        results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    assert set(results["validation"]) == {"accuracy", "top5_accuracy", "loss"}
    assert 0.0 <= results["validation"]["top5_accuracy"] <= 1.0


@pytest.mark.parametrize("name", SMOKE_CONFIGS)
def test_smoke_variant_trains(name, tmp_path, tfds_dir):
    c = config_lib.load(os.path.join(REPO, "configs", f"{name}.py"), "smoke")
    if c.dataset.name != "image_folder":  # its smoke variant generates its own folder
        c.dataset.data_dir = tfds_dir
    c.train.progress = False
    c.train.allow_unusual = True  # mock data (16 examples) can hold fewer examples than a batch
    c.eval.report = False  # the report's figures are tested per task in test_report.py
    if c.dataset.name in builders.BUILDERS:
        results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    else:
        with tfds.testing.mock_data(num_examples=16):
            results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    assert 0.0 <= results["test"]["accuracy"] <= 1.0
    assert (tmp_path / "results.json").exists()
