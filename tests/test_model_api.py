"""The model API a flax user expects (issue 21): feature extraction, per-block remat, a
required ``train`` flag, ``dtype``/``param_dtype`` everywhere, one aux-head convention, input
checks that name the model, ``describe``/``create`` keyword validation, documented calls,
and a VGG head that suits small inputs. Every check runs on tiny models (traced or a few
ms of compute)."""

from __future__ import annotations

import dataclasses
import functools
import inspect

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util

from conftest import fast_init
from jaxclf import models
from jaxclf.models import recurrent
from jaxclf.train import steps as steps_lib

KEY = jax.random.key(0)
IMG = jnp.linspace(-1, 1, 2 * 32 * 32 * 3).reshape(2, 32, 32, 3)
SEQ = jax.random.normal(jax.random.key(1), (2, 5, 3))
TOK = jnp.array([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]], jnp.int32)
SMALL_CNN = dict(widths=(4, 4, 8, 8, 8), hidden=(16, 16))
RNN = dict(hidden=6)

# One member of every family (and every model class): (create kwargs, inputs, call kwargs).
CASES = {
    "lenet5": (dict(num_classes=5), (IMG[..., :1],), {}),
    "linear": (dict(num_classes=5), (IMG,), {}),
    "mlp": (dict(num_classes=5, hidden=(8, 8)), (IMG,), {}),
    "conv1d": (dict(num_classes=5), (jnp.ones((2, 40, 1)),), {}),
    "alexnet": (dict(num_classes=5, **SMALL_CNN), (jnp.ones((2, 63, 63, 3)),), {}),
    "vgg11_bn": (dict(num_classes=5, **SMALL_CNN), (IMG,), {}),
    "resnet20": (dict(num_classes=5, stage_sizes=(1, 1, 1)), (IMG,), {}),
    "resnet50": (dict(num_classes=5, widths=(2, 2, 2, 2), stage_sizes=(1, 1, 1, 1)), (IMG,), {}),
    "googlenet": (dict(num_classes=5, width_mult=1 / 16, aux_logits=True), (IMG,), {}),
    "bilstm": (dict(num_classes=5, num_layers=2, **RNN), (SEQ,), {"lengths": jnp.array([3, 5])}),
    "lstm_attention": (dict(num_classes=5, **RNN), (SEQ,), {"lengths": jnp.array([3, 5])}),
    "rnn_tagger": (dict(num_classes=5, **RNN), (SEQ,), {"lengths": jnp.array([3, 5])}),
    "rnn_generator": (dict(num_classes=3, vocab_size=7, **RNN), (jnp.array([0, 2]),), {"targets": TOK % 7}),
    "seq2seq": (dict(num_classes=6, **RNN), (SEQ,), {"targets": TOK % 6}),
    "text_rnn": (dict(num_classes=5, vocab_size=9, embed_dim=4, **RNN), (TOK,), {}),
    "text_cnn": (dict(num_classes=5, vocab_size=9, embed_dim=4, features=3), (TOK,), {}),
    "sketch_rnn": (dict(enc_hidden=4, dec_hidden=4, z_size=2, num_mixtures=2), (jnp.zeros((2, 6, 5)),), {}),
}
# GoogLeNet's many small ops take minutes to run eagerly on 2 loaded cores: its features
# and remat are checked from shapes (test_googlenet_features_and_remat_from_shapes).
CLASSIFIERS = [n for n in CASES if models.takes_features(n) and n != "googlenet"]


def _init(model, args, kwargs, **extra):
    return model.init({"params": KEY, "dropout": KEY}, *args, **kwargs, **extra)


def _flat(tree):
    return traverse_util.flatten_dict(dict(tree), sep="/")


def test_every_model_family_is_covered():
    classes = {models.describe.__globals__["_REGISTRY"][n] for n in models.names()}
    classes = {c.func if isinstance(c, functools.partial) else c for c in classes}
    covered = set()
    for name in CASES:
        f = models.describe.__globals__["_REGISTRY"][name]
        covered.add(f.func if isinstance(f, functools.partial) else f)
    assert classes == covered


# ----------------------------------------------------------------------------- 1. features


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_logits_are_the_head_of_the_features_and_num_classes_0_returns_them(name):
    kw, args, call = CASES[name]
    model = models.create(name, **kw)
    variables = fast_init(model, *args, **call) or _init(model, args, call, train=False)
    logits = model.apply(variables, *args, **call, train=False)
    features = model.apply(variables, *args, **call, train=False, output="features")
    head_path = {"googlenet": ("fc",), "text_rnn": ("classifier", "head")}.get(name, ("head",))
    head_params = functools.reduce(lambda t, k: t[k], head_path, variables["params"])
    dense = nn.Dense(kw["num_classes"], use_bias="bias" in head_params)
    reference = dense.apply({"params": head_params}, features)
    if name == "rnn_tagger":  # per-step logits, zero at padded steps
        reference = reference * recurrent.sequence_mask(call["lengths"], features.shape[1])[..., None]
    np.testing.assert_array_equal(logits, reference)
    # num_classes=0: no head parameters, the output is the features.
    bare = models.create(name, **{**kw, "num_classes": 0})
    bare_vars = jax.eval_shape(lambda: _init(bare, args, call, train=False))
    assert not any("head/" in p or p.startswith("params/fc/") for p in _flat(bare_vars))
    np.testing.assert_array_equal(bare.apply(variables, *args, **call, train=False), features)
    stages = model.apply(variables, *args, **call, train=False, output="stages")
    assert isinstance(stages, dict)


def test_resnet_stages_and_features_agree_and_create_accepts_num_classes_0():
    model = models.create("resnet20", num_classes=0)  # refused before
    variables = model.init(KEY, IMG, train=False)
    stages = model.apply(variables, IMG, train=False, output="stages")
    assert list(stages) == ["stem", "stage1", "stage2", "stage3"]
    assert [s.shape[1:] for s in stages.values()] == [(32, 32, 16), (32, 32, 16), (16, 16, 32), (8, 8, 64)]
    np.testing.assert_allclose(model.apply(variables, IMG, train=False), stages["stage3"].mean((1, 2)), rtol=1e-6)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1"):
        models.create("rnn_generator", num_classes=0)
    with pytest.raises(ValueError, match="unknown output 'pooled'; valid: logits, features, stages"):
        model.apply(variables, IMG, train=False, output="pooled")


def test_reset_head_reinitialises_only_the_head():
    kw, args, _ = CASES["resnet20"]
    model = models.create("resnet20", **kw)
    variables = _init(model, args, {}, train=False)
    new_model, new_vars = models.reset_head(model, variables, 3, jax.random.key(7), *args)
    assert new_model.num_classes == 3 and new_model.apply(new_vars, *args, train=False).shape == (2, 3)
    old, new = _flat(variables), _flat(new_vars)
    assert set(old) == set(new)
    for path in old:
        if path.startswith("params/head/"):
            assert old[path].shape[-1] == 5 and new[path].shape[-1] == 3
        else:
            np.testing.assert_array_equal(old[path], new[path])
    # The same class count: fresh head values, same backbone.
    _, same = models.reset_head(model, variables, 5, jax.random.key(8), *args)
    assert not np.allclose(_flat(same)["params/head/kernel"], old["params/head/kernel"])
    np.testing.assert_array_equal(_flat(same)["params/stem/conv/kernel"], old["params/stem/conv/kernel"])
    # 0 classes: the head is removed.
    bare, bare_vars = models.reset_head(model, variables, 0, KEY, *args)
    assert "head" not in bare_vars["params"] and bare.apply(bare_vars, *args, train=False).shape == (2, 64)


# ----------------------------------------------------------------------------- 2. remat


def _loss_and_grad(model, variables, args, call):
    params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def loss(p, *a):
        out = model.apply({"params": p, **rest}, *a, **call, train=True, rngs={"dropout": KEY}, mutable=list(rest) or False)
        out = out[0] if rest else out
        return jnp.sum(jnp.square(out))

    return jax.jit(jax.grad(loss)), params


REMAT = {
    "resnet20": dict(num_classes=5, widths=(4, 4, 4), stage_sizes=(2, 2, 2)),
    "vgg11_bn": dict(num_classes=5, **SMALL_CNN, dropout_rate=0.0),
    "alexnet": dict(num_classes=5, **SMALL_CNN, dropout_rate=0.0),
    "bilstm": dict(num_classes=5, num_layers=2, **RNN),
}


@pytest.mark.parametrize("name", sorted(REMAT))
def test_remat_gives_the_same_gradients(name):
    _, args, call = CASES[name]
    plain = models.create(name, **REMAT[name])
    variables = fast_init(plain, *args, **call) or _init(plain, args, call, train=False)
    remat = plain.clone(remat=True)
    assert jax.tree.structure(jax.eval_shape(lambda: _init(remat, args, call, train=False))) == jax.tree.structure(variables)
    grad, params = _loss_and_grad(plain, variables, args, call)
    grad_remat, _ = _loss_and_grad(remat, variables, args, call)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6),
                 grad_remat(params, *args), grad(params, *args))


def test_googlenet_features_and_remat_from_shapes():
    kw, args, _ = CASES["googlenet"]
    model = models.create("googlenet", **kw)
    variables = jax.eval_shape(lambda: _init(model, args, {}, train=False))
    remat = jax.eval_shape(lambda: _init(model.clone(remat=True), args, {}, train=False))
    assert jax.tree.map(lambda s: s.shape, remat) == jax.tree.map(lambda s: s.shape, variables)
    run = lambda m, **k: jax.eval_shape(lambda v: m.apply(v, *args, train=False, **k), variables)  # noqa: E731
    assert run(model, output="features").shape == (2, variables["params"]["fc"]["kernel"].shape[0])
    assert run(models.create("googlenet", **{**kw, "num_classes": 0})).shape == run(model, output="features").shape
    assert set(run(model, output="stages")) == {f"stage{i}" for i in range(1, 6)}


def _saved_bytes(model, x):
    """Bytes of the residuals a gradient keeps from the forward pass for the backward pass
    (what remat trades for recomputation), from shapes alone. XLA:CPU's
    ``memory_analysis().temp_size_in_bytes`` does not show the saving: it grew with remat,
    even for a plain ``jax.checkpoint`` chain (34.6 -> 42.5 MB), as the CPU backend does not
    schedule the recomputation late."""
    variables = jax.eval_shape(lambda: model.init(KEY, x, train=False))
    rest = {k: v for k, v in variables.items() if k != "params"}

    def loss(p, r):
        out = model.apply({**r, "params": p}, x, train=True, mutable=list(r) or False)
        return jnp.sum(out[0] if r else out)

    residuals = jax.eval_shape(lambda p, r: jax.vjp(lambda q: loss(q, r), p)[1], variables["params"], rest)
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(residuals))


@pytest.mark.parametrize("name,kwargs,shape", [
    ("resnet20", dict(num_classes=5, widths=(8, 8, 8), stage_sizes=(6, 6, 6)), (8, 32, 32, 3)),
    ("lstm", dict(num_classes=5, hidden=32, num_layers=4), (8, 64, 16)),
])
def test_remat_stores_fewer_activations_for_the_backward_pass(name, kwargs, shape):
    plain = models.create(name, **kwargs)
    x = jnp.ones(shape)
    plain_bytes, remat_bytes = _saved_bytes(plain, x), _saved_bytes(plain.clone(remat=True), x)
    assert remat_bytes < plain_bytes / 4, (remat_bytes, plain_bytes)  # measured 18.8 -> 3.3 MB, 3.5 -> 0.36 MB


# ----------------------------------------------------------------------------- 3. train


@pytest.mark.parametrize("name", sorted(CASES))
def test_train_is_a_required_keyword_named_with_the_model(name):
    kw, args, call = CASES[name]
    model = models.create(name, **kw)
    cls = type(model).__name__
    with pytest.raises(TypeError, match=rf"{cls}.__call__\(\) missing 1 required keyword-only argument: 'train'"):
        model.init(KEY, *args, **call)


# ----------------------------------------------------------------------------- 4. dtypes


@pytest.mark.parametrize("name", sorted(CASES))
def test_param_dtype_and_dtype_on_every_model(name):
    kw, args, call = CASES[name]
    half_params = models.create(name, **kw, param_dtype="bfloat16")
    shapes = jax.eval_shape(lambda: _init(half_params, args, call, train=False))
    assert {leaf.dtype for leaf in jax.tree.leaves(shapes["params"])} == {jnp.dtype(jnp.bfloat16)}
    half = models.create(name, **kw, dtype="bfloat16")
    variables = jax.eval_shape(lambda: _init(half, args, call, train=False))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
    out = jax.eval_shape(lambda v: half.apply(v, *args, **call, train=False), variables)
    assert {leaf.dtype for leaf in jax.tree.leaves(out)} == {jnp.dtype(jnp.float32)}


# ----------------------------------------------------------------------------- 5. aux heads


def test_googlenet_returns_logits_in_training_and_the_loss_adds_its_aux_heads():
    kw, args, _ = CASES["googlenet"]
    model = models.create("googlenet", **{**kw, "dropout_rate": 0.0, "aux_dropout_rate": 0.0})
    variables = fast_init(model, args[0])  # (evaluation mode's logits: test_cnn_models)
    params, rest = variables["params"], {"batch_stats": variables["batch_stats"]}
    labels = jnp.array([1, 3])
    batch = {"inputs": args[0], "labels": labels, "mask": jnp.ones(2)}
    outputs, new_rest = jax.jit(lambda p, b: steps_lib._apply(model, rest, p, b, train=True, key=KEY))(params, batch)
    out, (aux1, aux2) = outputs  # _apply: model.apply's value in training, then the sown aux logits
    assert isinstance(out, jax.Array) and out.shape == (2, 5)  # was (logits, aux) in training
    assert set(new_rest) == {"batch_stats"}  # the sown logits are not carried as state

    total, metric_inputs = steps_lib.classification_loss(
        optax.softmax_cross_entropy_with_integer_labels, aux_weight=0.3)(outputs, batch, 0)
    assert metric_inputs["logits"] is outputs[0]  # metrics read the main head only
    ce = lambda z: np.mean(optax.softmax_cross_entropy_with_integer_labels(z, labels))  # noqa: E731
    np.testing.assert_allclose(total, ce(out) + 0.3 * (ce(aux1) + ce(aux2)), rtol=1e-5)
    assert not np.isclose(ce(out), total)


# ----------------------------------------------------------------------------- 6. inputs


def test_recurrent_models_refuse_token_ids_and_lengths_out_of_range():
    model = models.create("lstm", num_classes=3, hidden=4)
    variables = model.init(KEY, SEQ, train=False)
    with pytest.raises(TypeError, match=r"RNNClassifier expects float features of shape \(B, T, F\); "
                                        r"got a int32 array of shape \(2, 5\) \(token ids: embed them first"):
        model.apply(variables, TOK, train=False)
    with pytest.raises(ValueError, match=r"RNNClassifier: lengths must lie in \[0, 5\].*got values in \[3, 6\]"):
        model.apply(variables, SEQ, lengths=jnp.array([3, 6]), train=False)
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 5\]"):
        model.apply(variables, SEQ, lengths=jnp.array([-1, 2]), train=False)
    # Traced lengths cannot be read: they are clipped to [0, T] (documented).
    clipped = jax.jit(lambda n: model.apply(variables, SEQ, lengths=n, train=False))(jnp.array([3, 9]))
    np.testing.assert_allclose(clipped, model.apply(variables, SEQ, lengths=jnp.array([3, 5]), train=False), rtol=1e-6)
    with pytest.raises(TypeError, match=r"TextCNN expects integer token ids of shape \(B, T\)"):
        models.create("text_cnn", num_classes=2, vocab_size=9).init(KEY, SEQ[..., 0], train=False)


@pytest.mark.parametrize("pooling,bidirectional", [("last", True), ("mean", False), ("max", True), ("attention", False)])
def test_a_zero_length_row_reads_nothing(pooling, bidirectional):
    model = models.create("rnn_classifier", num_classes=3, hidden=4, pooling=pooling, bidirectional=bidirectional)
    variables = model.init(KEY, SEQ, train=False)
    lengths = jnp.array([0, 4])
    logits = model.apply(variables, SEQ, lengths=lengths, train=False)
    other = model.apply(variables, SEQ.at[0].set(7.0), lengths=lengths, train=False)
    np.testing.assert_array_equal(logits[0], other[0])  # the padding does not matter
    np.testing.assert_allclose(logits[0], variables["params"]["head"]["bias"], atol=1e-7)  # zero features
    features = model.apply(variables, SEQ, lengths=lengths, train=False, output="features")
    np.testing.assert_array_equal(features[0], 0.0)


@pytest.mark.parametrize("name", ["lenet5", "alexnet", "vgg11", "resnet20", "googlenet"])
def test_image_models_name_themselves_and_the_expected_shape(name):
    model = models.create(name, num_classes=3)
    cls = type(model).__name__
    with pytest.raises(ValueError, match=rf"{cls} expects images of shape \(N, H, W, C\); got an array of shape \(32, 32, 3\)"):
        model.init(KEY, IMG[0], train=False)


# ----------------------------------------------------------------------------- 7. create


def test_describe_lists_documented_keywords_and_create_refuses_unknown_ones():
    for name in models.names():
        described = models.describe(name)
        assert described and all(v["doc"] for v in described.values()), name
    resnet = models.describe("resnet20")
    assert resnet["widths"]["default"] == (16, 32, 64) and resnet["remat"]["default"] is False
    assert "rematerialise" in resnet["remat"]["doc"]
    with pytest.raises(TypeError, match=r"model 'resnet20' takes no keyword 'width'; valid: num_classes, stage_sizes"):
        models.create("resnet20", num_classes=3, width=4)
    with pytest.raises(TypeError, match=r"model 'resnet20' needs num_classes \(0: features only\)"):
        models.create("resnet20")
    model = models.create("sketch_rnn")  # no classes, none demanded
    assert "num_classes" not in models.describe("sketch_rnn")
    assert not hasattr(model, "num_classes")
    with pytest.raises(TypeError, match="model 'sketch_rnn' takes no keyword 'num_classes'"):
        models.create("sketch_rnn", num_classes=5)


# ----------------------------------------------------------------------------- 8. docstrings


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_call_is_documented(name):
    factory = models.describe.__globals__["_REGISTRY"][name]
    cls = factory.func if isinstance(factory, functools.partial) else factory
    doc = inspect.getdoc(cls.__call__)
    assert doc and doc != "Call self as a function."
    assert "train" in doc and ("Returns" in doc or "logits" in doc)
    fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
    assert {"dtype", "param_dtype"} <= fields


# ----------------------------------------------------------------------------- 9. VGG head


def test_vgg11_at_32x32_does_not_replicate_its_last_map():
    model = models.create("vgg11", num_classes=10)
    variables = jax.eval_shape(lambda: model.init(KEY, IMG, train=False))
    count = sum(np.prod(s.shape) for s in jax.tree.leaves(variables))
    convs, c_in = 0, 3
    for c_out in (64, 128, 256, 256, 512, 512, 512, 512):  # configuration A
        convs += 9 * c_in * c_out + c_out
        c_in = c_out
    head = 512 * 4096 + 4096 + 4096 * 4096 + 4096 + 4096 * 10 + 10  # 1x1x512 map read as it is
    assert count == convs + head == 28_144_010
    explicit = models.create("vgg11", num_classes=10, pool_size=7)
    shapes = jax.eval_shape(lambda: explicit.init(KEY, IMG, train=False))
    assert sum(np.prod(s.shape) for s in jax.tree.leaves(shapes)) == convs + head + 48 * 512 * 4096
