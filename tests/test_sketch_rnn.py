"""Sketch-RNN: mixture likelihood, KL schedule, parameter count, overfitting, sampling."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxclf import models
from jaxclf.data import strokes as S
from jaxclf.models import sketch_rnn as M

TINY = dict(enc_hidden=16, dec_hidden=32, z_size=8, num_mixtures=3)


def _params(model, x):
    return jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)["params"]


def test_mixture_log_likelihood_matches_bivariate_normal_pdf():
    rng = np.random.default_rng(0)
    shape, m = (2, 3), 4
    raw = rng.normal(size=shape + (6 * m + 3,)).astype(np.float32)
    xy = rng.normal(size=shape + (2,)).astype(np.float32)
    p = {k: np.asarray(v, np.float64) for k, v in M.split_params(jnp.asarray(raw), m).items()}
    pi = np.exp(p["pi_logits"]) / np.exp(p["pi_logits"]).sum(-1, keepdims=True)
    sx, sy = np.exp(p["log_sigma"][..., 0]), np.exp(p["log_sigma"][..., 1])
    mx, my, rho = p["mu"][..., 0], p["mu"][..., 1], p["rho"]
    dx, dy = xy[..., 0:1] - mx, xy[..., 1:2] - my
    z = (dx / sx) ** 2 + (dy / sy) ** 2 - 2 * rho * dx * dy / (sx * sy)
    pdf = np.exp(-z / (2 * (1 - rho**2))) / (2 * np.pi * sx * sy * np.sqrt(1 - rho**2))
    expected = np.log((pi * pdf).sum(-1))
    got = M.mixture_log_likelihood(M.split_params(jnp.asarray(raw), m), jnp.asarray(xy))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_kl_weight_schedule_values():
    w = functools.partial(M.kl_weight_schedule, kl_weight=0.5, kl_weight_start=0.01, kl_decay=0.99995)
    assert np.isclose(w(0), 0.005)  # kl_weight * kl_weight_start
    assert np.isclose(w(10_000), 0.5 * (1 - 0.99 * 0.99995**10_000), rtol=1e-5)  # ~0.2
    assert np.isclose(w(10**7), 0.5, atol=1e-6)
    assert np.all(np.diff(np.asarray(w(jnp.arange(0, 100_000, 1000)))) > 0)


def test_kl_floor_and_unconditional_loss():
    x = jnp.asarray(S.shapes_data(2, 1).splits["train"].strokes[:4])
    out = {**M.split_params(jnp.zeros(x.shape[:2] + (6 * 2 + 3,)), 2), "z_mu": jnp.zeros((4, 3)), "z_logvar": jnp.zeros((4, 3))}
    total, s = M.loss_fn(out, x, step=0, kl_tolerance=0.2)
    assert float(s["kl"]) == 0.0
    np.testing.assert_allclose(total, s["recon"] + 0.005 * 0.2, rtol=1e-6)
    total, _ = M.loss_fn(out, x, step=0, conditional=False)
    np.testing.assert_allclose(total, s["recon"], rtol=1e-6)


def test_parameter_count_at_paper_defaults():
    model = models.create("sketch_rnn")
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), jnp.zeros((1, 10, 5)))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))
    # LSTM cell (cells.LSTMCell layout): input Dense F->4H with bias + hidden Dense H->4H
    # without bias = 4H*(F+H) + 4H.
    #   encoder fwd + bwd, F=5, H=256:   2 * (4*256*(5+256) + 4*256)   = 2 * 268,288 = 536,576
    #   z_mu, z_logvar from [h_fwd, h_bwd] (512): 2 * (512*128 + 128) =   131,328
    #   z_to_state, z -> (c, h) of 512:  128*1024 + 1024               =   132,096
    #   decoder, F=5+128, H=512:         4*512*(133+512) + 4*512       = 1,323,008
    #   out, 512 -> 6M+3 = 123 (M=20):   512*123 + 123                 =    63,099
    assert count == 536_576 + 131_328 + 132_096 + 1_323_008 + 63_099 == 2_186_107
    uncond = models.create("sketch_rnn_unconditional")
    shapes = jax.eval_shape(functools.partial(uncond.init, train=False), jax.random.key(0), jnp.zeros((1, 10, 5)))
    # decoder reads only S_{t-1}: 4*512*(5+512) + 4*512 = 1,060,864; plus out 63,099
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"])) == 1_060_864 + 63_099


def test_encoder_ignores_padding_and_dropout_only_in_training():
    model = M.SketchRNN(**TINY, recurrent_dropout=0.3)
    s3 = S.make_shapes(1, seed=3)[0][:3]
    short = jnp.asarray(np.stack([S.to_stroke5(s, 32) for s in S.normalize(s3, 10.0)]))
    long = jnp.concatenate([short, jnp.tile(jnp.asarray(S.END_ROW), (3, 8, 1))], axis=1)
    params = _params(model, short)
    np.testing.assert_allclose(M.encode(model, params, short), M.encode(model, params, long), atol=1e-5)
    apply = jax.jit(lambda k, train: model.apply({"params": params}, short, train=train, rngs={"dropout": k})["mu"], static_argnums=1)
    assert not np.allclose(apply(jax.random.key(1), True), apply(jax.random.key(2), True))
    np.testing.assert_array_equal(apply(jax.random.key(1), False), apply(jax.random.key(2), False))


@pytest.fixture(scope="module")
def overfit():
    """A tiny model trained on 10 sketches: (model, params, data, first and last losses)."""
    x = jnp.asarray(S.shapes_data(2, 1).splits["train"].strokes)
    model = M.SketchRNN(**TINY)
    params = _params(model, x)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2))

    def step(carry, i):
        params, opt = carry
        key = jax.random.fold_in(jax.random.key(1), i)

        def objective(p):
            out = model.apply({"params": p}, x, train=True, rngs={"dropout": key})
            return M.loss_fn(out, x, step=i, kl_weight_start=1.0, kl_tolerance=0.2)[0]

        loss, grads = jax.value_and_grad(objective)(params)
        updates, opt = tx.update(grads, opt, params)
        return (optax.apply_updates(params, updates), opt), loss

    (params, _), losses = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), jnp.arange(300)))(params)
    return model, params, x, np.asarray(losses)


def test_tiny_model_overfits_a_handful_of_sketches(overfit):
    *_, losses = overfit
    assert np.isfinite(losses).all()
    assert losses[-20:].mean() < losses[0] - 2.0, (losses[0], losses[-20:].mean())


def _check_valid(rows, lengths, max_len):
    rows, lengths = np.asarray(rows), np.asarray(lengths)
    assert rows.shape[1] == max_len
    np.testing.assert_array_equal(rows[..., 2:].sum(-1), 1)  # one-hot pen state
    assert set(np.unique(rows[..., 2:])) <= {0.0, 1.0}
    for r, n in zip(rows, lengths):
        assert (r[:n, 4] == 0).all()
        np.testing.assert_array_equal(r[n:], np.tile(S.END_ROW, (max_len - n, 1)))  # end terminates


def test_samples_are_valid_stroke5_that_end(overfit):
    model, params, x, _ = overfit
    rows, lengths = M.sample(model, params, jax.random.key(0), batch=16, max_len=40, temperature=0.3)
    _check_valid(rows, lengths, 40)
    assert (np.asarray(lengths) < 40).mean() >= 0.5  # trained sketches mostly stop by themselves
    rows, lengths = M.reconstruct(model, params, jax.random.key(1), x, max_len=40, temperature=0.01)
    _check_valid(rows, lengths, 40)


@pytest.mark.parametrize("pen_bias, expected", [((0.0, 0.0, 30.0), 0), ((30.0, 0.0, -30.0), 12)])
def test_end_state_stops_sampling(pen_bias, expected):
    model = M.SketchRNN(**TINY)
    params = _params(model, jnp.zeros((1, 5, 5)))
    params["out"]["kernel"] = params["out"]["kernel"].at[:, -3:].set(0.0)
    params["out"]["bias"] = params["out"]["bias"].at[-3:].set(jnp.asarray(pen_bias))
    rows, lengths = M.sample(model, params, jax.random.key(2), batch=4, max_len=12, temperature=1.0)
    _check_valid(rows, lengths, 12)
    np.testing.assert_array_equal(lengths, expected)


def test_untrained_and_unconditional_sampling_is_valid():
    model = M.SketchRNN(**TINY, conditional=False)
    params = _params(model, jnp.zeros((1, 5, 5)))
    rows, lengths = M.sample(model, params, jax.random.key(2), batch=4, max_len=12, temperature=1.0)
    _check_valid(rows, lengths, 12)


def test_interpolate_endpoints():
    z0, z1 = jnp.array([1.0, 0.0, 2.0]), jnp.array([0.0, 3.0, -1.0])
    for spherical in (True, False):
        zs = M.interpolate(z0, z1, 5, spherical=spherical)
        np.testing.assert_allclose(zs[0], z0, atol=1e-5)
        np.testing.assert_allclose(zs[-1], z1, atol=1e-5)
    np.testing.assert_allclose(M.interpolate(z0, z1, 3, spherical=False)[1], (z0 + z1) / 2)
