"""Optimizers and schedules from the config, checked against their formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxclf.config import base_config
from jaxclf.train import optim


def cfg(**kw):
    c = base_config().optim
    for k, v in kw.items():
        c[k] = v
    return c


def test_warmup_then_cosine():
    s = optim.schedule(cfg(lr=1.0, schedule="cosine", warmup_steps=10), 110)
    assert float(s(0)) == 0.0 and float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.5 * (1 + np.cos(np.pi * 50 / 100)), abs=1e-6)


def test_step_decay_at_fractions():
    s = optim.schedule(cfg(lr=0.1, schedule="step", step_boundaries=(0.5, 0.75), step_factor=0.1), 100)
    assert [float(s(t)) for t in (49, 50, 74, 75)] == pytest.approx([0.1, 0.01, 0.01, 0.001])


def test_clipping_bounds_the_update_norm():
    """SGD with global-norm clipping c: every update has norm <= lr * c, however large the gradient."""
    tx = optim.optimizer(cfg(name="sgd", lr=0.5, clip_norm=1.0), 10)
    params = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
    state = tx.init(params)
    for scale in (1e-3, 1.0, 1e6):
        grads = jax.tree.map(lambda p: scale * p, params)
        updates, _ = tx.update(grads, state, params)
        norm = float(jnp.sqrt(sum(jnp.sum(u**2) for u in jax.tree.leaves(updates))))
        grad_norm = scale * np.sqrt(7)
        assert norm == pytest.approx(0.5 * min(grad_norm, 1.0), rel=1e-5)


def test_coupled_and_decoupled_weight_decay():
    params = {"kernel": jnp.full(2, 2.0), "bias": jnp.full(2, 2.0)}
    zero = jax.tree.map(jnp.zeros_like, params)
    sgd = optim.optimizer(cfg(name="sgd", lr=0.1, weight_decay=0.5, decay_kernels_only=True), 10)
    up, _ = sgd.update(zero, sgd.init(params), params)
    np.testing.assert_allclose(up["kernel"], -0.1 * 0.5 * 2.0)  # L2 added to the gradient
    np.testing.assert_allclose(up["bias"], 0.0)  # kernels only
    adamw = optim.optimizer(cfg(name="adamw", lr=0.1, weight_decay=0.5), 10)
    up, _ = adamw.update(zero, adamw.init(params), params)
    np.testing.assert_allclose(up["kernel"], -0.1 * 0.5 * 2.0, rtol=1e-6)  # decoupled: lr * wd * w


def test_nesterov_differs_from_momentum():
    params = {"w": jnp.ones(1)}
    g = {"w": jnp.ones(1)}
    outs = {}
    for name in ("momentum", "nesterov"):
        tx = optim.optimizer(cfg(name=name, lr=1.0, momentum=0.9), 10)
        s = tx.init(params)
        _, s = tx.update(g, s, params)
        outs[name], _ = tx.update(g, s, params)
    assert float(outs["momentum"]["w"][0]) == pytest.approx(-1.9)  # v = 0.9 * 1 + 1
    assert float(outs["nesterov"]["w"][0]) == pytest.approx(-(0.9 * 1.9 + 1))


def test_unknown_names_list_choices():
    with pytest.raises(ValueError, match="nesterov"):
        optim.optimizer(cfg(name="rmsprop"), 10)
