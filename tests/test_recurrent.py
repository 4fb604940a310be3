"""Recurrent cells and sequence models: equations, hoisting, padding, sampling, training."""

from __future__ import annotations

import flax.linen as nn
import jax
from jaxclf.train.steps import per_layer_norms
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxclf import models
from jaxclf.models import cells, recurrent

B, T, F, H = 3, 6, 2, 5
LENGTHS = np.array([6, 3, 1])


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _split_params(p):
    """``W_x, b, W_h`` of a split cell as numpy arrays."""
    return (np.asarray(p["input"]["kernel"]), np.asarray(p["input"]["bias"]),
            np.asarray(p["hidden"]["kernel"]))


def _numpy_step(name, p, carry, x):
    """One step of each cell written as the lecture writes it, with ``W = [W_h; W_x]``."""
    wx, b, wh = _split_params(p)
    if name == "rnn":
        return np.tanh(carry @ wh + x @ wx + b)
    if name == "lstm":
        c, h = carry
        w = np.concatenate([wh, wx])  # W [h, x] == W_h h + W_x x
        i, f, g, o = np.split(np.concatenate([h, x], -1) @ w + b, 4, -1)
        c = _sigmoid(i) * np.tanh(g) + _sigmoid(f) * c
        return c, _sigmoid(o) * np.tanh(c)
    h = carry
    xr, xu, xc = np.split(wx, 3, -1)
    br, bu, bc = np.split(b, 3)
    if name == "gru":
        whr, whu = np.split(wh, 2, -1)
        whc = np.asarray(p["hidden_candidate"]["kernel"])
        hx = np.concatenate([h, x], -1)
        r = _sigmoid(hx @ np.concatenate([whr, xr]) + br)
        u = _sigmoid(hx @ np.concatenate([whu, xu]) + bu)
        cand = np.tanh(np.concatenate([r * h, x], -1) @ np.concatenate([whc, xc]) + bc)
    else:  # gru_reset_after
        whr, whu, whc = np.split(wh, 3, -1)
        bhr, bhu, bhc = np.split(np.asarray(p["hidden"]["bias"]), 3)
        r = _sigmoid(h @ whr + bhr + x @ xr + br)
        u = _sigmoid(h @ whu + bhu + x @ xu + bu)
        cand = np.tanh(x @ xc + bc + r * (h @ whc + bhc))
    return u * cand + (1 - u) * h


def _random_carry(name, key):
    k1, k2 = jax.random.split(key)
    h = jax.random.normal(k1, (B, H))
    return (jax.random.normal(k2, (B, H)), h) if name == "lstm" else h


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "gru_reset_after"])
def test_cell_step_matches_lecture_equations(name):
    cell = cells.make_cell(name, H)
    x = jax.random.normal(jax.random.key(0), (B, F))
    carry = _random_carry(name, jax.random.key(1))
    params = cell.init(jax.random.key(2), carry, x)["params"]
    params = jax.tree.map(lambda w: w + 0.1 * jax.random.normal(jax.random.key(3), w.shape), params)
    new, y = cell.apply({"params": params}, carry, x)
    expected = _numpy_step(name, params, jax.tree.map(np.asarray, carry), np.asarray(x))
    close = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.tree.leaves(new), jax.tree.leaves(expected), **close)
    np.testing.assert_allclose(y, jax.tree.leaves(expected)[-1], **close)


def test_gru_reset_after_is_flax_gru_with_update_gate_negated():
    """Flax's z gates the old state: z = 1 - G_u, so its update weights are ours negated."""
    x = jax.random.normal(jax.random.key(0), (B, F))
    h = jax.random.normal(jax.random.key(1), (B, H))
    ours = cells.make_cell("gru_reset_after", H)
    p = jax.tree.map(np.asarray, ours.init(jax.random.key(2), h, x)["params"])
    p["hidden"]["bias"] = np.random.default_rng(0).normal(size=3 * H).astype(np.float32)
    xr, xu, xc = np.split(p["input"]["kernel"], 3, -1)
    br, bu, bc = np.split(p["input"]["bias"], 3)
    hr, hu, hc = np.split(p["hidden"]["kernel"], 3, -1)
    cr, cu, cc = np.split(p["hidden"]["bias"], 3)
    theirs = {
        "ir": {"kernel": xr, "bias": br + cr}, "iz": {"kernel": -xu, "bias": -(bu + cu)},
        "in": {"kernel": xc, "bias": bc}, "hr": {"kernel": hr}, "hz": {"kernel": -hu},
        "hn": {"kernel": hc, "bias": cc},
    }
    np.testing.assert_allclose(
        ours.apply({"params": p}, h, x)[1], nn.GRUCell(H).apply({"params": theirs}, h, x)[1],
        rtol=1e-5, atol=1e-5,
    )


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "gru_reset_after"])
def test_hoisted_scan_matches_per_step_cell(name):
    """The hoisted layer equals nn.RNN over the plain cell (outputs and final carry)."""
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    lengths = jnp.asarray(LENGTHS)
    layer = recurrent.Recurrence(name, H, hoist=True)
    variables = layer.init(jax.random.key(1), x, lengths)
    ys, carry = layer.apply(variables, x, lengths)
    ys_naive, carry_naive = recurrent.Recurrence(name, H, hoist=False).apply(variables, x, lengths)
    carry_rnn, ys_rnn = nn.RNN(cells.make_cell(name, H), return_carry=True).apply(
        variables, x, seq_lengths=lengths
    )
    valid = recurrent.sequence_mask(lengths, T)[..., None]
    for other in (ys_naive, ys_rnn):
        np.testing.assert_allclose(ys * valid, other * valid, rtol=1e-5, atol=1e-6)
    for other in (carry_naive, carry_rnn):
        np.testing.assert_allclose(
            jax.tree.leaves(carry), jax.tree.leaves(other), rtol=1e-5, atol=1e-6
        )


def _pad_with_garbage(x, lengths, extra=3, seed=0):
    """``x`` with every step at or beyond each length replaced by noise, plus ``extra`` steps."""
    shape = (x.shape[0], x.shape[1] + extra, x.shape[2])
    noise = 100.0 * np.random.default_rng(seed).normal(size=shape)
    padded = np.concatenate([np.asarray(x), np.zeros((x.shape[0], extra, x.shape[2]))], 1)
    valid = np.arange(padded.shape[1])[None, :, None] < np.asarray(lengths)[:, None, None]
    return jnp.asarray(np.where(valid, padded, noise), jnp.float32)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(cell="lstm", pooling="last", bidirectional=True, num_layers=2, hoist=True),
        dict(cell="gru", pooling="mean", bidirectional=True, hoist=False),
        dict(cell="rnn", pooling="max"),
        dict(cell="flax_lstm", pooling="attention", bidirectional=True),
    ],
)
def test_classifier_ignores_padding_and_matches_unpadded_sequences(kwargs):
    """Garbage beyond the lengths changes nothing; each row equals its sequence run alone."""
    model = recurrent.RNNClassifier(num_classes=4, hidden=H, **kwargs)
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    lengths = jnp.asarray(LENGTHS)
    variables = model.init(jax.random.key(1), x, lengths=lengths, train=False)
    logits = model.apply(variables, x, lengths=lengths, train=False)
    garbage = model.apply(variables, _pad_with_garbage(x, lengths), lengths=lengths, train=False)
    np.testing.assert_allclose(logits, garbage, rtol=1e-5, atol=1e-5)
    for b in (1, 2):  # Padded rows; the backward direction must start at step n - 1.
        alone = model.apply(variables, x[b : b + 1, : LENGTHS[b]], train=False)
        np.testing.assert_allclose(logits[b : b + 1], alone, rtol=1e-5, atol=1e-5)
    mask = recurrent.sequence_mask(lengths, T)
    np.testing.assert_allclose(model.apply(variables, x, mask=mask, train=False), logits, rtol=1e-6, atol=1e-6)


def test_backward_direction_starts_at_last_valid_step():
    layer = recurrent.BiLayer("gru", H, bidirectional=True)
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    lengths = jnp.asarray(LENGTHS)
    variables = layer.init(jax.random.key(1), x, lengths)
    ys, _, _ = layer.apply(variables, _pad_with_garbage(x, lengths), lengths)
    bwd = nn.RNN(cells.make_cell("gru", H), reverse=True, keep_order=True)
    for b, n in enumerate(LENGTHS):
        ref = bwd.apply({"params": variables["params"]["bwd"]}, x[b : b + 1, :n])
        np.testing.assert_allclose(ys[b, :n, H:], ref[0], rtol=1e-5, atol=1e-5)


def test_tagger_masks_padding():
    model = recurrent.RNNTagger(num_classes=4, hidden=H)
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    lengths = jnp.asarray(LENGTHS)
    variables = model.init(jax.random.key(1), x, lengths=lengths, train=False)
    logits = model.apply(variables, x, lengths=lengths, train=False)
    garbage = model.apply(variables, _pad_with_garbage(x, lengths), lengths=lengths, train=False)
    assert garbage.shape == (B, T + 3, 4)
    np.testing.assert_allclose(logits, garbage[:, :T], rtol=1e-5, atol=1e-5)
    assert not np.any(garbage * ~recurrent.sequence_mask(lengths, T + 3)[..., None])


def _set_end_bias(variables, value, end=0):
    """A copy of ``variables`` whose head makes the end token certain (+) or impossible (-)."""
    variables = jax.tree.map(jnp.asarray, variables)  # New dicts: safe to edit.
    head = variables["params"]["head"]
    head["bias"] = head["bias"].at[end].set(value)
    return variables


def test_generator_sampling_shapes_and_termination():
    model = recurrent.RNNGenerator(num_classes=3, vocab_size=7, hidden=H, embed_dim=4)
    cond = jnp.array([0, 1, 2])
    targets = jnp.zeros((B, 5), jnp.int32)
    variables = model.init(jax.random.key(0), cond, targets=targets, train=False)
    assert model.apply(variables, cond, targets=targets, train=False).shape == (B, 5, 7)
    sample = jax.jit(model.sample, static_argnums=(3, 4))
    tokens, lengths = sample(variables, jax.random.key(1), cond, 9, 1.0)
    assert tokens.shape == (B, 9) and lengths.shape == (B,)
    for row, n in zip(np.asarray(tokens), np.asarray(lengths)):
        assert 1 <= n <= 9
        assert np.all(row[: n - 1] != 0) and np.all(row[n:] == 0)  # stops at the first end
        assert n == 9 or row[n - 1] == 0
    _, lengths = sample(_set_end_bias(variables, 1e4), jax.random.key(1), cond, 9, 1.0)
    np.testing.assert_array_equal(lengths, 1)
    tokens, lengths = sample(_set_end_bias(variables, -1e4), jax.random.key(1), cond, 9, 1.0)
    np.testing.assert_array_equal(lengths, 9)
    assert np.all(tokens != 0)
    latent = jax.random.normal(jax.random.key(2), (B, 6))
    variables = model.init(jax.random.key(0), latent, targets=targets, train=False)
    greedy = [sample(variables, jax.random.key(k), latent, 4, 0.0)[0] for k in (1, 2)]
    np.testing.assert_array_equal(*greedy)


def test_seq2seq_shapes_padding_and_greedy_decoding():
    model = recurrent.Seq2Seq(num_classes=6, hidden=H, embed_dim=4, bidirectional=True)
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    lengths = jnp.asarray(LENGTHS)
    targets = jnp.array([[1, 2, 3, 0], [2, 0, 0, 0], [5, 5, 5, 5]])
    variables = model.init(jax.random.key(1), x, targets=targets, lengths=lengths, train=False)
    logits, state = model.apply(
        variables, x, targets=targets, lengths=lengths, mutable="intermediates", train=False)
    assert logits.shape == (B, 4, 6)
    (weights,) = state["intermediates"]["attention"]
    assert weights.shape == (B, 4, T)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert not np.any(weights * ~recurrent.sequence_mask(lengths, T)[:, None])
    garbage = model.apply(
        variables, _pad_with_garbage(x, lengths), targets=targets, lengths=lengths, train=False)
    np.testing.assert_allclose(logits, garbage, rtol=1e-5, atol=1e-5)
    sample = jax.jit(model.sample, static_argnums=(3, 4))
    tokens, out_lengths = sample(variables, jax.random.key(2), x, 5, 0.0, lengths)
    assert tokens.shape == (B, 5) and out_lengths.shape == (B,)
    assert np.all((1 <= out_lengths) & (out_lengths <= 5))
    # Greedy decoding equals teacher forcing on its own output, step by step.
    forced = model.apply(variables, x, targets=tokens, lengths=lengths, train=False)
    for b, n in enumerate(np.asarray(out_lengths)):
        np.testing.assert_array_equal(np.argmax(forced[b, :n], -1), tokens[b, :n])


def _batch_and_loss(model):
    """A tiny batch and a loss for each kind of model in the family."""
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    lengths = jnp.asarray(LENGTHS)
    tokens = jax.random.randint(jax.random.key(1), (B, 4), 0, 4)
    if isinstance(model, recurrent.RNNGenerator):
        inputs = (jnp.array([0, 1, 2]),)
        kwargs = dict(targets=tokens)
        return inputs, kwargs, lambda logits: recurrent.masked_token_loss(logits, tokens)
    if isinstance(model, recurrent.Seq2Seq):
        kwargs = dict(targets=tokens, lengths=lengths)
        return (x,), kwargs, lambda logits: recurrent.masked_token_loss(logits, tokens)
    if isinstance(model, recurrent.RNNTagger):
        labels = jax.random.randint(jax.random.key(2), (B, T), 0, 4)
        return (x,), dict(lengths=lengths), lambda logits: recurrent.masked_token_loss(
            logits, labels, lengths
        )
    labels = jnp.array([0, 1, 3])
    xent = optax.softmax_cross_entropy_with_integer_labels
    return (x,), dict(lengths=lengths), lambda logits: xent(logits, labels).mean()


@pytest.mark.parametrize("name", sorted(recurrent.MODELS))
def test_every_registered_model_trains_one_step_under_jit(name):
    extra = {"dropout_rate": 0.1} if name == "bigru" else {}
    model = models.create(name, num_classes=4, hidden=4, **extra)
    inputs, kwargs, loss_of = _batch_and_loss(model)
    variables = model.init(jax.random.key(0), *inputs, **kwargs, train=False)
    assert set(variables) == {"params"}  # Nothing a training loop would carry as state.
    params = variables["params"]
    tx = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state, rng):
        def loss_fn(p):
            rngs = {"dropout": rng}
            logits = model.apply({"params": p}, *inputs, **kwargs, train=True, rngs=rngs)
            return loss_of(logits)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, grads

    new_params, _, loss, grads = step(params, tx.init(params), jax.random.key(1))
    assert np.isfinite(loss)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), params, new_params)
    assert all(jax.tree.leaves(changed)), changed
    norms = per_layer_norms(grads)
    assert "head" in norms and all(np.isfinite(v) for v in norms.values())
    if name in ("lstm", "bilstm"):
        assert "encoder/layer_0" in norms


def test_flax_cells_are_selectable_and_unknown_names_list_the_choices():
    x = jax.random.normal(jax.random.key(0), (2, 3, F))
    for name in [n for n in cells.CELL_NAMES if n.startswith("flax_")]:
        model = recurrent.RNNClassifier(num_classes=2, cell=name, hidden=3)
        assert model.apply(model.init(jax.random.key(0), x, train=False), x, train=False).shape == (2, 2)
    with pytest.raises(ValueError, match="flax_gru.*lstm"):
        cells.make_cell("lsmt", 3)
    with pytest.raises(ValueError, match="attention"):
        recurrent.RNNClassifier(pooling="sum").init(jax.random.key(0), x, train=False)


def test_cell_options_reach_every_cell_of_the_model_and_unknown_ones_list_the_valid():
    """``cell_options`` sets the LSTM's initial forget-gate bias in every layer and direction;
    a vanilla cell with ``activation='relu'`` computes ``relu(W_h h + W_x x + b)``."""
    x = jax.random.normal(jax.random.key(0), (B, T, F))
    model = recurrent.RNNClassifier(num_classes=2, cell="lstm", hidden=H, num_layers=2, bidirectional=True,
                                    cell_options={"forget_bias": 3.0})
    encoder = model.init(jax.random.key(1), x, train=False)["params"]["encoder"]
    for layer in ("layer_0", "layer_1"):
        for direction in ("fwd", "bwd"):
            bias = np.asarray(encoder[layer][direction]["cell"]["input"]["bias"]).reshape(4, H)
            np.testing.assert_array_equal(bias, np.repeat([[0.0], [3.0], [0.0], [0.0]], H, 1))

    cell = cells.make_cell("rnn", H, options={"activation": "relu"})
    h, xt = jax.random.normal(jax.random.key(2), (B, H)), jax.random.normal(jax.random.key(3), (B, F))
    params = jax.tree.map(lambda w: w + 0.5, cell.init(jax.random.key(4), h, xt)["params"])
    wx, b, wh = _split_params(params)
    np.testing.assert_allclose(cell.apply({"params": params}, h, xt)[0],
                               np.maximum(np.asarray(h) @ wh + np.asarray(xt) @ wx + b, 0), rtol=1e-5, atol=1e-5)

    assert cells.cell_options("lstm") == ("recurrent_scale", "forget_bias")
    assert cells.cell_options("gru") == ("recurrent_scale", "update_bias")
    assert cells.cell_options("rnn") == ("recurrent_scale", "activation") and cells.cell_options("flax_gru") == ()
    with pytest.raises(ValueError, match=r"cell 'lstm' has no option 'forgetbias'; its options: recurrent_scale, forget_bias"):
        cells.make_cell("lstm", H, options={"forgetbias": 3.0})
    with pytest.raises(ValueError, match="cell 'gru' has no option 'forget_bias'; its options: recurrent_scale, update_bias"):
        recurrent.RNNClassifier(cell="gru", cell_options={"forget_bias": 3.0}).init(jax.random.key(0), x, train=False)
    with pytest.raises(ValueError, match="cell 'flax_gru' has no option 'update_bias'; its options: none"):
        cells.make_cell("flax_gru", H, options={"update_bias": -3.0})


@pytest.mark.parametrize("name", ["gru", "gru_reset_after"])
def test_gru_update_bias_keeps_the_old_state(name):
    """``update_bias`` sets the update gate's block of the input bias only; with it at -b the
    step mixes ``G_u = sigma(... - b)`` of the candidate into h, as the lecture's formula says."""
    cell = cells.make_cell(name, H, options={"update_bias": -3.0})
    h, xt = jax.random.normal(jax.random.key(2), (B, H)), jax.random.normal(jax.random.key(3), (B, F))
    params = cell.init(jax.random.key(4), h, xt)["params"]
    bias = np.asarray(params["input"]["bias"]).reshape(3, H)
    np.testing.assert_array_equal(bias, np.repeat([[0.0], [-3.0], [0.0]], H, 1))
    default = cells.make_cell(name, H).init(jax.random.key(4), h, xt)["params"]
    np.testing.assert_array_equal(default["input"]["bias"], 0.0)
    # only the bias differs from the default's parameters, and it moves the new state toward h
    same = jax.tree.map(lambda a, b: bool((a == b).all()), params, default)
    assert not same["input"]["bias"] and all(jax.tree.leaves({k: v for k, v in same.items() if k != "input"}))
    new, old = cell.apply({"params": params}, h, xt)[0], cell.apply({"params": default}, h, xt)[0]
    assert np.abs(np.asarray(new - h)).mean() < 0.25 * np.abs(np.asarray(old - h)).mean()


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru", "gru_reset_after"])
def test_recurrent_scale_sets_every_singular_value_of_w_h(name):
    """``recurrent_scale`` s: each recurrent kernel starts as s times an orthogonal matrix
    (numpy's SVD), so a linear recurrence scales a state by s per step; the input kernel is
    untouched."""
    xt = jnp.zeros((1, F))
    h = cells.zero_carry(cells.make_cell(name, H), 1, F)
    base = cells.make_cell(name, H).init(jax.random.key(0), h, xt)["params"]
    scaled = cells.make_cell(name, H, options={"recurrent_scale": 0.5}).init(jax.random.key(0), h, xt)["params"]
    recurrent_kernels = [k for k in scaled if k.startswith("hidden")]
    assert recurrent_kernels
    for k in recurrent_kernels:
        w = np.asarray(scaled[k]["kernel"])
        np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False), 0.5, rtol=1e-5)
        np.testing.assert_allclose(w, 0.5 * np.asarray(base[k]["kernel"]), rtol=1e-6)
    np.testing.assert_array_equal(scaled["input"]["kernel"], base["input"]["kernel"])
