"""The gradients experiment: the first_symbol task, its config, and the dL/dh_t helper."""

import importlib.util
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxclf import config as config_lib
from jaxclf import data, models
from jaxclf.data.builders import first_symbol
from jaxclf.run import train_and_evaluate
from conftest import REPO

CONFIG = os.path.join(REPO, "configs", "gradients_first_symbol.py")


def _state_grads():
    path = os.path.join(REPO, "experiments", "gradients", "state_grads.py")
    spec = importlib.util.spec_from_file_location("state_grads", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generation_is_deterministic_and_seeded():
    a, b = first_symbol.generate(25, 100, 0), first_symbol.generate(25, 100, 0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], first_symbol.generate(25, 100, 1)[0])


def test_builder_labels_are_the_first_symbol(tfds_dir):
    cfg = config_lib.load(CONFIG, "rnn,10").dataset
    cfg.data_dir = tfds_dir
    ds = data.load(cfg)
    assert {k: v.num_examples for k, v in ds.splits.items()} == {"train": 4000, "test": 1000}
    assert ds.input_shape == (10, 8) and ds.num_classes == 4
    for split in ("train", "test"):
        x, y = ds.splits[split].inputs, ds.splits[split].labels
        np.testing.assert_array_equal(x.sum(-1), 1.0)  # one-hot at every step
        np.testing.assert_array_equal(np.argmax(x[:, 0], -1), y)  # step 0: the class symbol
        assert (np.argmax(x[:, 1:], -1) >= 4).all()  # later steps: distractors only
        expected = first_symbol.generate(10, first_symbol.SIZES[split], first_symbol.split_seed(split))
        by_row = {xi.tobytes(): yi for xi, yi in zip(*expected)}  # TFDS shuffles the order
        assert all(by_row[xi.tobytes()] == yi for xi, yi in zip(x, y))
    assert np.bincount(ds.splits["train"].labels).min() > 900  # about balanced


def test_config_variants():
    c = config_lib.load(CONFIG, "lstm,25,clip,sgd")
    assert (c.model.cell, c.dataset.name, c.optim.clip_norm, c.optim.name) == ("lstm", "first_symbol/t25", 1.0, "momentum")
    assert config_lib.load(CONFIG).optim.clip_norm == 0.0
    with pytest.raises(ValueError, match="valid"):
        config_lib.load(CONFIG, "rnn,37")


def test_smoke_run_logs_finite_layer_grad_norms(tfds_dir, tmp_path):
    c = config_lib.load(CONFIG, "gru,10,clip,smoke")
    c.dataset.data_dir, c.train.progress = tfds_dir, False
    results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    assert 0 <= results["test"]["accuracy"] <= 1
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert train
    for row in train:
        for key in ("grad_norm", "grad_norm/encoder/layer_0", "grad_norm/head"):
            assert math.isfinite(row[key]) and row[key] > 0


def test_state_gradients_of_a_linear_rnn_are_powers_of_w_transposed():
    sg = _state_grads()
    rng = np.random.default_rng(0)
    n, steps = 3, 6
    w = rng.normal(size=(n, n)) / 2
    v = rng.normal(size=n)
    xs = jnp.asarray(rng.normal(size=(steps, 1, n)), jnp.float32)
    step = lambda h, x: h @ jnp.asarray(w.T, jnp.float32) + x  # h_t = W h_{t-1} + x_t
    readout = lambda h: jnp.sum(h @ jnp.asarray(v, jnp.float32))  # L = v . h_{T-1}
    grads = sg.state_gradients(step, readout, jnp.zeros((1, n)), xs)
    for t in range(steps):
        expected = np.linalg.matrix_power(w.T, steps - 1 - t) @ v
        np.testing.assert_allclose(grads[t, 0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sg.per_step_norms(grads)[:, 0], np.linalg.norm(grads[:, 0], axis=-1), rtol=1e-6)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_helper_scan_reproduces_the_model(cell):
    sg = _state_grads()
    model = models.create("rnn_classifier", num_classes=4, cell=cell, hidden=5, pooling="last")
    x = jax.random.normal(jax.random.key(1), (3, 7, 8))
    params = model.init(jax.random.key(0), x, train=False)["params"]
    np.testing.assert_allclose(sg.model_logits(cell, 5, 4, params, x), model.apply({"params": params}, x, train=False), rtol=1e-5, atol=1e-6)
    profile = sg.relative_profile(cell, 5, 4, params, x, jnp.array([0, 1, 2]))
    assert profile.shape == (7,) and float(profile[-1]) == pytest.approx(1.0)
