"""Per-step targets (task 'sequence'): tagging, generation from a class and encoder-decoder
train through the same loop. The generated datasets hold what they say, the token-level loss
and metrics match numpy on a padded batch, and Seq2Seq without attention reads the source
only through the encoder's final state."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxclf import config as config_lib
from jaxclf import data, metrics, models
from jaxclf.data.builders import sequence_tasks as st
from jaxclf.models import recurrent
from jaxclf.run import train_and_evaluate
from jaxclf.train import checkpoint
from jaxclf.train import steps as steps_lib
from jaxclf.transfer import freeze_batch_norm

from conftest import REPO

# ----------------------------------------------------------------------------- datasets


@pytest.mark.parametrize("order", st.ORDERS)
def test_token_order_targets_are_the_symbols_reversed_or_copied(order):
    x, y = st.token_order(order, 7, 50, 0)
    assert x.shape == (50, 8, st.SYMBOLS + 1) and y.shape == (50, 8)
    np.testing.assert_array_equal(x.sum(-1), 1.0)  # one-hot
    source = x.argmax(-1)
    assert (source[:, -1] == st.END).all() and (y[:, -1] == st.END).all()
    assert ((source[:, :-1] >= 1) & (source[:, :-1] <= st.SYMBOLS)).all()
    for s, t in zip(source, y):
        symbols = list(s[:-1])
        assert list(t[:-1]) == (symbols[::-1] if order == "reverse" else symbols)
    np.testing.assert_array_equal(st.token_order(order, 7, 50, 0)[1], y)  # deterministic
    assert not np.array_equal(st.token_order(order, 7, 50, 1)[1], y)  # test is another draw


def test_token_order_loads_through_the_pipeline_with_per_step_labels(tfds_dir):
    cfg = config_lib.base_config().dataset
    cfg.name, cfg.image_key, cfg.normalize, cfg.data_dir = "token_order/reverse_t5", "sequence", "none", tfds_dir
    ds = data.load(cfg)
    test = ds.splits["test"]
    assert ds.num_classes == st.SYMBOLS + 1 and ds.class_names == st.TOKEN_NAMES
    assert test.inputs.shape == (st.SIZES["test"], 6, st.SYMBOLS + 1) and ds.label_shape == (6,)
    np.testing.assert_array_equal(test.labels[:, :5], test.inputs.argmax(-1)[:, 4::-1])


def test_running_parity_labels_are_prefix_parities():
    x, y = st.running_parity(9, 40, 0)
    bits = x.argmax(-1)
    for b, labels in zip(bits, y):
        parity = 0
        for bit, label in zip(b, labels):
            parity ^= int(bit)
            assert label == parity


def test_class_sequences_are_noisy_copies_of_one_sequence_per_class():
    condition, tokens, classes = st.class_sequences(4000, 0)
    np.testing.assert_array_equal(condition.argmax(-1), classes)
    prototypes = st.class_prototypes()
    assert len({tuple(p) for p in prototypes}) == st.NUM_CLASSES and (prototypes[:, -1] == st.END).all()
    assert (tokens[:, -1] == st.END).all() and (tokens[:, :-1] >= 1).all()
    changed = tokens != prototypes[classes]
    # replaced with probability NOISE by a uniform symbol, which is the same one 1/8 of the time
    assert abs(changed[:, :-1].mean() - st.NOISE * 7 / 8) < 0.01
    for c in range(st.NUM_CLASSES):  # the most frequent symbol at every step is the class's own
        mine = tokens[classes == c]
        modes = [np.bincount(mine[:, t], minlength=st.SYMBOLS + 1).argmax() for t in range(st.GEN_LENGTH)]
        np.testing.assert_array_equal(modes, prototypes[c])


# ----------------------------------------------------------------------------- loss and metrics


def test_per_step_loss_and_token_metrics_match_numpy_on_a_padded_batch():
    rng = np.random.default_rng(0)
    b, t, c = 3, 4, 5
    logits = rng.normal(size=(b, t, c)).astype(np.float32)
    labels = rng.integers(0, c, size=(b, t)).astype(np.int32)
    labels[0, :2] = logits[0, :2].argmax(-1)  # some right, some wrong
    batch = {"labels": jnp.asarray(labels), "mask": jnp.asarray([1.0, 1.0, 0.0]), "lengths": jnp.asarray([4, 2, 3])}
    loss_fn = steps_lib.make_loss(None, task="sequence")
    loss, inputs = loss_fn(jnp.asarray(logits), batch, 0)
    coll = metrics.collection(("loss", "accuracy"), num_classes=c, task=config_lib.metrics_task("sequence"))
    values = coll.compute(coll.from_model_output(**inputs))

    weights = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], np.float64)  # example mask x valid steps
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    ce = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0]
    right = logits.argmax(-1) == labels
    np.testing.assert_allclose(loss, (ce * weights).sum() / weights.sum(), rtol=1e-5)
    np.testing.assert_allclose(values["loss"], (ce * weights).sum() / weights.sum(), rtol=1e-5)
    np.testing.assert_allclose(values["accuracy"], (right * weights).sum() / weights.sum(), rtol=1e-6)


def test_per_step_loss_refuses_one_logit_row_per_example():
    batch = {"labels": jnp.zeros((2, 3), jnp.int32), "mask": jnp.ones((2,))}
    with pytest.raises(ValueError, match=r"per-step logits \(B, T, classes\).*\(2, 5\)"):
        steps_lib.make_loss(None, task="sequence")(jnp.zeros((2, 5)), batch, 0)


def test_model_inputs_follow_the_call_signature():
    batch = {"inputs": None, "labels": "y", "lengths": "n"}
    generator = models.create("rnn_generator", num_classes=2, vocab_size=4, hidden=4)
    assert steps_lib.model_inputs(generator, batch) == {"targets": "y"}  # no lengths argument
    seq2seq = models.create("seq2seq", num_classes=4, hidden=4)
    assert steps_lib.model_inputs(seq2seq, batch) == {"targets": "y", "lengths": "n"}
    assert steps_lib.model_inputs(freeze_batch_norm(seq2seq), batch) == {"targets": "y", "lengths": "n"}
    assert steps_lib.model_inputs(models.create("rnn_tagger", num_classes=4, hidden=4), batch) == {"lengths": "n"}
    with pytest.raises(ValueError, match="RNNGenerator reads its targets"):
        steps_lib.model_inputs(generator, {"inputs": None})


# ----------------------------------------------------------------------------- the loop

SEQUENCE_CONFIGS = [  # (config, arg, whether the model reads its targets)
    ("tagging_parity.py", "smoke", False),
    ("generate_class_sequences.py", "smoke", True),
    ("seq2seq_reverse.py", "5,smoke", True),
    ("seq2seq_reverse.py", "5,no_attention,smoke", True),
]


@pytest.mark.parametrize("name,arg,teacher_forced", SEQUENCE_CONFIGS, ids=lambda v: str(v))
def test_sequence_config_smoke_variant_trains_and_scores_tokens(name, arg, teacher_forced, tmp_path, tfds_dir):
    c = config_lib.load(os.path.join(REPO, "configs", name), arg)
    c.dataset.data_dir = tfds_dir
    c.train.progress = False
    assert c.task == "sequence"
    results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    assert json.loads((tmp_path / "results.json").read_text()) == results
    # The reported accuracy is that of every test token under the final parameters.
    test = data.load(c.dataset).splits["test"]
    model = models.from_config(c, st.SYMBOLS + 1 if teacher_forced else 2)
    params = checkpoint.load(str(tmp_path / "checkpoints"))[1]["state"]["params"]
    kwargs = {"targets": test.labels} if teacher_forced else {}
    logits = np.asarray(jax.jit(lambda p: model.apply({"params": p}, test.inputs, train=False, **kwargs))(params))
    assert logits.shape[:2] == test.labels.shape
    np.testing.assert_allclose(results["test"]["accuracy"], (logits.argmax(-1) == test.labels).mean(), atol=1e-6)


# ----------------------------------------------------------------------------- Seq2Seq attention


def _seq2seq_grads(attention):
    model = recurrent.Seq2Seq(num_classes=5, hidden=6, embed_dim=3, bidirectional=True, attention=attention)
    x = jax.random.normal(jax.random.key(0), (2, 7, 3))
    y = jnp.array([[1, 2, 3, 4], [4, 3, 2, 1]])
    params = jax.jit(lambda: model.init(jax.random.key(1), x, targets=y, train=False)["params"])()
    grads = jax.jit(jax.grad(lambda p: model.apply({"params": p}, x, targets=y, train=False).sum()))(params)
    return model, params, grads, x, y


def test_seq2seq_without_attention_reads_the_source_only_through_the_final_state():
    model, params, grads, x, y = _seq2seq_grads("none")
    assert "score" not in params and params["combine"]["kernel"].shape == (6, 6)
    # The backward direction of the encoder reaches the outputs only through attention.
    bwd = jax.tree.leaves(grads["encoder"]["layer_0"]["bwd"])
    assert bwd and all(np.all(np.asarray(g) == 0) for g in bwd)
    sown = jax.jit(lambda p: model.apply({"params": p}, x, targets=y, train=False, mutable=["intermediates"])[1])(params)
    assert "attention" not in sown.get("intermediates", {})
    _, params, grads, *_ = _seq2seq_grads("luong")
    assert params["score"]["kernel"].shape == (6, 12) and params["combine"]["kernel"].shape == (18, 6)
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads["encoder"]["layer_0"]["bwd"]))


def test_seq2seq_refuses_an_unknown_attention():
    model = recurrent.Seq2Seq(num_classes=5, hidden=4, attention="bahdanau")
    with pytest.raises(ValueError, match="unknown attention 'bahdanau'; valid: luong, none"):
        model.init(jax.random.key(0), jnp.zeros((1, 3, 2)), targets=jnp.zeros((1, 2), jnp.int32), train=False)
