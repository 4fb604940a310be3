import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxclf import models


def param_count(model, shape):
    variables = jax.eval_shape(lambda k, x: model.init(k, x, train=False), jax.random.key(0), jnp.zeros(shape))
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"]))


def test_names_lists_foundation_models():
    assert {"lenet5", "linear", "linear_ovr", "mlp"} <= set(models.names())
    assert models.names() == sorted(models.names())


def test_lenet5_parameter_count_and_shape():
    model = models.create("lenet5", num_classes=10)
    assert isinstance(model, nn.Module)
    # conv1 5*5*1*6+6=156, conv2 5*5*6*16+16=2416, fc 400*120+120=48120, 120*84+84=10164, 84*10+10=850
    assert param_count(model, (1, 32, 32, 1)) == 156 + 2416 + 48120 + 10164 + 850 == 61706
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)), train=False)
    assert model.apply(variables, jnp.zeros((3, 32, 32, 1)), train=False).shape == (3, 10)


@pytest.mark.parametrize("name", ["linear", "linear_ovr"])
def test_linear_is_w_transpose_x_plus_b(name):
    model = models.create(name, num_classes=3)
    x = jax.random.normal(jax.random.key(1), (4, 2, 5))
    variables = model.init(jax.random.key(0), x, train=False)
    w, b = variables["params"]["head"]["kernel"], variables["params"]["head"]["bias"]
    expected = np.asarray(x).reshape(4, 10) @ np.asarray(w) + np.asarray(b)
    np.testing.assert_allclose(model.apply(variables, x, train=False), expected, rtol=1e-5, atol=1e-5)
    assert model.one_vs_rest == (name == "linear_ovr")


def test_mlp_dropout_only_in_training():
    model = models.create("mlp", num_classes=2, hidden=(8,), dropout_rate=0.5)
    x = jnp.ones((2, 4))
    variables = model.init(jax.random.key(0), x, train=False)
    a = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(1)})
    b = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(2)})
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(model.apply(variables, x, train=False), model.apply(variables, x, train=False))


def test_unknown_model_names_valid_choices():
    with pytest.raises(ValueError, match="unknown model 'lenet6'.*lenet5"):
        models.create("lenet6", num_classes=10)


def test_unknown_kwarg_names_model():
    with pytest.raises(TypeError, match="lenet5"):
        models.create("lenet5", num_classes=10, widht=3)


def test_bad_strategy_names_valid_choices():
    model = models.create("linear", num_classes=3, strategy="ovo")
    with pytest.raises(ValueError, match="ovr"):
        model.init(jax.random.key(0), jnp.zeros((1, 4)), train=False)
