"""Variable-length sequences and model-defined losses through the training loop: Sketch-RNN
trains, resumes and draws through ``train_and_evaluate``; stroke classifiers get their
lengths; stroke augmentation keeps lengths consistent."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxclf import config as config_lib
from jaxclf import data, models
from jaxclf.data import strokes
from jaxclf.run import train_and_evaluate
from jaxclf.train import checkpoint
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(name, tfds_dir, arg="smoke"):
    c = config_lib.load(os.path.join(REPO, "configs", name), arg)
    c.dataset.data_dir = tfds_dir
    c.train.progress = False
    return c


def _params(workdir):
    return checkpoint.load(os.path.join(workdir, "checkpoints"))[1]["state"]["params"]


def _records(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_sketch_rnn_trains_resumes_and_draws_through_the_loop(tfds_dir, tmp_path):
    c = _config("sketch_rnn_shapes.py", tfds_dir)
    c.train.num_steps = c.train.eval_every = 4  # logs every step, evaluates once (the results compared)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    expected = train_and_evaluate(c, whole, devices=jax.devices()[:1])
    assert set(expected["test"]) == {"loss", "recon", "offsets", "pen", "kl", "kl_weight"}
    train = [r for r in _records(whole) if r["split"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4]
    # The logged KL weight is the annealing schedule at the steps of each window.
    from jaxclf.models.sketch_rnn import kl_weight_schedule

    want = [float(kl_weight_schedule(s, kl_decay=c.loss.kl_decay)) for s in range(4)]
    np.testing.assert_allclose([r["kl_weight"] for r in train], want, rtol=1e-5)
    for r in train:
        assert r["recon"] == pytest.approx(r["offsets"] + r["pen"], rel=1e-5)
        assert r["loss"] == pytest.approx(r["recon"] + r["kl_weight"] * max(r["kl"], c.loss.kl_tolerance), rel=1e-5)
    assert {"samples_t0.1.png", "reconstructions.png", "interpolations.png", "sample.svg"} <= set(os.listdir(whole / "report"))
    c.eval.report = False  # the resumed run need not draw the figures again (5-10 s)
    assert train_and_evaluate(c, parts, devices=jax.devices()[:1], stop_at=2) == {}
    assert train_and_evaluate(c, parts, devices=jax.devices()[:1]) == expected
    jax.tree.map(np.testing.assert_array_equal, _params(whole), _params(parts))


def test_generative_config_errors_name_the_choices(tfds_dir):
    c = _config("sketch_rnn_shapes.py", tfds_dir)
    c.metrics = ("accuracy",)
    with pytest.raises(ValueError, match="does not log.*accuracy.*it logs: loss, recon"):
        config_lib.validate(c)
    c = _config("lenet5_digits.py", tfds_dir)
    c.task = "generative"
    c.metrics = ()
    with pytest.raises(ValueError, match="no loss of its own.*sketch_rnn"):
        config_lib.validate(c)
    with pytest.raises(TypeError, match="unknown loss setting.*kl_weigth"):
        models.loss("sketch_rnn", models.create("sketch_rnn"), kl_weigth=0.5)


def test_stroke_classifier_evaluates_with_the_sketch_lengths(tfds_dir, tmp_path):
    """The loop's evaluation equals the model applied with each sketch's length, and differs
    from applying it to the padded sequences without lengths (so lengths do reach the model)."""
    c = _config("sketch_classifier_shapes.py", tfds_dir)
    c.train.num_steps = 3
    c.eval.report = False  # plots of the results, not what this test checks
    results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    ds = data.load(c.dataset)
    test = ds.splits["test"]
    model = models.from_config(c, ds.num_classes)
    variables = {"params": _params(tmp_path)}
    logits = np.asarray(model.apply(variables, jnp.asarray(test.inputs), lengths=jnp.asarray(test.lengths), train=False))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, test.labels)
    assert results["test"]["loss"] == pytest.approx(float(np.mean(loss)), rel=1e-5)
    assert results["test"]["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == test.labels), abs=1e-7)
    unpadded = np.asarray(model.apply(variables, jnp.asarray(test.inputs), train=False))
    assert np.abs(unpadded - logits).max() > 1e-3


def test_stroke_drop_augmentation_updates_lengths():
    ds = strokes.shapes_data(num_train=4, num_test=1)
    train = ds.splits["train"]
    batch = {"inputs": jnp.asarray(train.strokes), "lengths": jnp.asarray(train.lengths), "labels": jnp.asarray(train.labels)}
    cfg = config_lib.base_config().dataset
    cfg.strokes.stroke_drop = 0.5
    out = data.augment_batch(batch, jax.random.key(0), ("stroke_scale", "stroke_drop"), cfg)
    lengths = np.asarray(out["lengths"])
    np.testing.assert_array_equal(lengths, strokes.stroke5_length(np.asarray(out["inputs"])))
    assert (lengths < train.lengths).any() and (lengths <= train.lengths).all()
    np.testing.assert_array_equal(out["labels"], train.labels)
