"""Sequence data (MNIST-1D, rows of images) and the MNIST-1D paper's models."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxclf import data, models
from jaxclf.run import train_and_evaluate
def param_count(model, shape):
    variables = jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.key(0), jnp.zeros(shape))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))


def test_mnist1d_builder_is_the_generated_dataset(smoke_config):
    from mnist1d.data import get_dataset_args, make_dataset

    cfg = smoke_config.dataset
    cfg.name, cfg.image_key, cfg.resize, cfg.normalize = "mnist1d", "sequence", None, "none"
    cfg.validation_fraction, cfg.test_splits, cfg.eval_splits = 0.0, (), ("test",)
    ds = data.load(cfg)
    assert {k: v.num_examples for k, v in ds.splits.items()} == {"train": 4000, "test": 1000}
    assert ds.input_shape == (40, 1)
    reference = make_dataset(get_dataset_args())
    by_row = {np.asarray(x, np.float32).tobytes(): y for x, y in zip(reference["x_test"], reference["y_test"])}
    test = ds.splits["test"]
    assert all(by_row[x[:, 0].tobytes()] == y for x, y in zip(test.inputs, test.labels))


def test_rows_of_an_image_as_time_steps(smoke_config):
    cfg = smoke_config.dataset
    cfg.resize, cfg.sequence_view = None, "rows"
    ds = data.load(cfg)
    assert ds.input_shape == (8, 8)  # 8 time steps of 8 pixels


def test_paper_model_sizes():
    # ConvBase: conv 1->25 k5 (150) + 25->25 k3 (1,900) x2 + dense 125->10 (1,260)
    assert param_count(models.create("conv1d", num_classes=10), (1, 40, 1)) == 150 + 1900 + 1900 + 1260
    # MLPBase: 40->100, 100->100, 100->10
    assert param_count(models.create("mlp", num_classes=10, hidden=(100, 100), residual=True), (1, 40, 1)) == 4100 + 10100 + 1010
    # GRUBase (torch.nn.GRU, bidirectional, hidden 6, input 1): per direction 3 * (6*1 + 6*6 + 6 + 6)
    # = 162, then dense over 2 * 6 * 40 features: 4,810
    gru = models.create("rnn_classifier", num_classes=10, cell="gru_reset_after", hidden=6, bidirectional=True, pooling="flatten")
    assert param_count(gru, (1, 40, 1)) == 2 * 162 + 4810


def test_mlp_residual_adds_the_layer_input():
    model = models.create("mlp", num_classes=2, hidden=(3, 3), residual=True)
    x = jnp.arange(8.0).reshape(2, 4)  # input width 4: no skip around the first layer
    v = model.init(jax.random.key(0), x, train=False)
    p = v["params"]
    h1 = jax.nn.relu(x @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    h2 = h1 + jax.nn.relu(h1 @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])
    np.testing.assert_allclose(model.apply(v, x, train=False), h2 @ p["head"]["kernel"] + p["head"]["bias"], rtol=1e-6)


def test_flatten_pooling_ignores_padding():
    model = models.create("gru", num_classes=3, hidden=4, pooling="flatten")
    x = jax.random.normal(jax.random.key(0), (2, 6, 2))
    v = model.init(jax.random.key(1), x, train=False)
    lengths = jnp.array([4, 6])
    noisy = x.at[0, 4:].set(100.0)
    np.testing.assert_allclose(model.apply(v, x, lengths=lengths, train=False), model.apply(v, noisy, lengths=lengths, train=False), atol=1e-6)


def test_per_layer_gradient_norms_are_logged(smoke_config, tmp_path):
    smoke_config.train.log_grad_norms = True
    train_and_evaluate(smoke_config, tmp_path, devices=jax.devices()[:1])
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    layers = {k for k in record if k.startswith("grad_norm/")}
    assert layers == {f"grad_norm/{n}" for n in ("Conv_0", "Conv_1", "Dense_0", "Dense_1", "head")}
    total = np.sqrt(sum(record[k] ** 2 for k in layers))
    assert record["grad_norm"] == pytest.approx(total, rel=0.5)  # window means of norms, not exact
