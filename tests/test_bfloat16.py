"""With ``dtype='bfloat16'`` every model keeps float32 parameters and float32 logits close to
the float32 model's."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxclf import models


def _assert_close(a, b, rtol):
    scale = float(jnp.max(jnp.abs(b))) or 1.0
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=rtol * scale)


BF16_MODELS = [
    ("lenet5", {}, (4, 32, 32, 1)),
    ("resnet20", {}, (4, 32, 32, 3)),
    ("vgg11_bn", dict(widths=(8, 16, 16, 32, 32), hidden=(16, 16), pool_size=1), (4, 32, 32, 3)),
    ("conv1d", {}, (4, 40, 1)),
    ("linear", {}, (4, 30)),
    ("mlp", {}, (4, 40)),
    ("lstm", dict(hidden=16), (4, 12, 3)),
    ("bigru", dict(hidden=16), (4, 12, 3)),
    ("rnn", dict(hidden=16), (4, 12, 3)),
    ("lstm_attention", dict(hidden=16), (4, 12, 3)),
    ("rnn_classifier", dict(cell="flax_optimized_lstm", hidden=16), (4, 12, 3)),
    ("rnn_tagger", dict(hidden=16), (4, 12, 3)),
]


@pytest.mark.parametrize("name,kwargs,shape", BF16_MODELS, ids=[m[0] for m in BF16_MODELS])
def test_bfloat16_compute_keeps_float32_params_and_logits(name, kwargs, shape):
    x = jax.random.normal(jax.random.key(0), shape)
    full = models.create(name, num_classes=10, dtype="float32", **kwargs)
    half = models.create(name, num_classes=10, dtype="bfloat16", **kwargs)
    variables = half.init(jax.random.key(1), x, train=False)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert jax.tree.structure(variables) == jax.tree.structure(full.init(jax.random.key(1), x, train=False))
    logits, reference = half.apply(variables, x, train=False), full.apply(variables, x, train=False)
    assert logits.dtype == jnp.float32
    _assert_close(logits, reference, rtol=5e-2)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("alexnet", dict(widths=(8, 16, 16, 16, 16), hidden=(16, 16), pool_size=2), (2, 63, 63, 3)),
    ("googlenet", dict(width_mult=0.125), (2, 64, 64, 3)),
])
def test_bfloat16_deep_models_trace_with_float32_params_and_logits(name, kwargs, shape):
    """Types only (jax.eval_shape: no compile), for models whose compile costs most of a minute."""
    half = models.create(name, num_classes=10, dtype="bfloat16", **kwargs)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(lambda x: half.init(jax.random.key(1), x, train=False), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert jax.eval_shape(lambda v, x: half.apply(v, x, train=False), variables, x).dtype == jnp.float32


@pytest.mark.parametrize("name", ["rnn_generator", "seq2seq"])
def test_bfloat16_sequence_generators(name):
    model = models.create(name, num_classes=6, hidden=16, dtype="bfloat16")
    cond = jnp.arange(3) if name == "rnn_generator" else jax.random.normal(jax.random.key(0), (3, 5, 2))
    targets = jnp.ones((3, 4), jnp.int32)
    variables = model.init(jax.random.key(1), cond, targets=targets, train=False)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert model.apply(variables, cond, targets=targets, train=False).dtype == jnp.float32
    tokens, lengths = model.sample(variables, jax.random.key(2), cond, max_len=5)
    assert tokens.shape == (3, 5) and lengths.shape == (3,)


