"""Sketch-RNN (Ha and Eck 2017): a sequence-to-sequence VAE over stroke-5 pen offsets.

Encoder: a bidirectional LSTM reads the sketch ``S_1..S_Nmax`` (lengths from its end rows);
its two final states, concatenated, give ``mu`` and ``logvar`` of a ``z_size`` Gaussian,
``sigma = exp(logvar / 2)``, and ``z = mu + sigma * eps``. Decoder: an LSTM started from
``tanh(W z + b)`` (both c and h) reads ``[S_{t-1}, z]`` at step t (``S_0 = (0,0,1,0,0)``)
and predicts ``S_t`` as a mixture of ``M`` bivariate Gaussians for ``(dx, dy)`` and a
3-way softmax for the pen: ``6M + 3`` numbers per step. ``conditional=False`` drops the
encoder and z (the decoder starts from zeros): the unconditional model of the paper.

Randomness: ``eps`` uses the ``'dropout'`` rng stream (the one the jaxclf train loop
already passes), and only when ``train=True``; with ``train=False`` ``z = mu``, so
evaluation and reconstruction are deterministic. ``recurrent_dropout`` (Semeniuta et al.
2016, as in the paper) drops the LSTM cell candidate, also from ``'dropout'``. Sampling
uses the ``'sample'`` stream.

The loss is pure functions of the model's output dict (``loss_fn``); generation is
``sample`` / ``encode`` / ``interpolate`` at the bottom.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxclf.ops.strokes import END_ROW, START_ROW, stroke5_length
from jaxclf.models.cells import LSTMCell
from jaxclf.models.layers import as_dtype
from jaxclf.models.recurrent import last_valid, reverse_valid

LOG_2PI = float(np.log(2 * np.pi))

# ----------------------------------------------------------------------------- layers


class DropoutLSTMCell(LSTMCell):
    """``cells.LSTMCell`` (same parameters) with recurrent dropout on the candidate:
    ``c = G_i * drop(c~) + G_f * c_prev``. Dropping only the new content, never the
    memory path, regularises without erasing long-term state (Semeniuta et al. 2016)."""

    rate: float = 0.0

    def __call__(self, carry, x, deterministic: bool = True):
        c, h = carry
        i, f, g, o = jnp.split(self.hidden(h) + self.project_inputs(x), 4, axis=-1)
        g = jnp.tanh(g)
        if self.rate > 0 and not deterministic:
            keep = jax.random.bernoulli(self.make_rng("dropout"), 1 - self.rate, g.shape)
            g = jnp.where(keep, g / (1 - self.rate), 0.0)
        c = nn.sigmoid(i) * g + nn.sigmoid(f) * c
        h = nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h


def _run(cell: nn.Module, carry, xs, train: bool):
    """Runs ``cell`` over ``xs`` (B, T, F) from ``carry``: (final carry, outputs (B, T, H)).
    Fresh dropout masks at every step (``split_rngs``)."""
    scan = nn.scan(
        lambda cell, carry, x: cell(carry, x, deterministic=not train),
        variable_broadcast="params",
        split_rngs={"params": False, "dropout": True},
        in_axes=1,
        out_axes=1,
    )
    return scan(cell, carry, xs)


def _zero_carry(batch: int, features: int):
    h = jnp.zeros((batch, features), jnp.float32)
    return h, h


def split_params(raw: jax.Array, num_mixtures: int) -> dict[str, jax.Array]:
    """The output layer's ``6M + 3`` numbers -> named mixture and pen parameters.

    Returns ``pi_logits`` (..., M), ``mu`` (..., M, 2), ``log_sigma`` (..., M, 2),
    ``rho`` (..., M) in (-1, 1) and ``pen_logits`` (..., 3). Logits and log-sigmas stay
    unnormalised so that losses and sampling can use log-space arithmetic.
    """
    m = num_mixtures
    pi, mu_x, mu_y, ls_x, ls_y, rho = jnp.split(raw[..., : 6 * m], 6, axis=-1)
    return {
        "pi_logits": pi,
        "mu": jnp.stack([mu_x, mu_y], -1),
        "log_sigma": jnp.stack([ls_x, ls_y], -1),
        "rho": jnp.tanh(rho),
        "pen_logits": raw[..., 6 * m :],
    }


class SketchRNN(nn.Module):
    """The paper's defaults: encoder 256 (bidirectional LSTM), decoder 512 (LSTM), z 128,
    20 mixtures. ``__call__(strokes (B, Nmax, 5), *, train)`` returns the dict of
    ``split_params`` for every step plus ``z_mu``, ``z_logvar`` and ``z`` (B, z_size)
    (zeros when unconditional). It has no classes (no ``num_classes``).

    Parameters: ``enc_fwd``/``enc_bwd`` (LSTM cells), ``z_mu``/``z_logvar`` (Dense from
    the 2*enc summary), ``z_to_state`` (Dense z -> 2*dec), ``dec`` (LSTM cell reading
    5 + z inputs), ``out`` (Dense dec -> 6M + 3).

    Attributes:
      enc_hidden: units of each direction of the encoder LSTM.
      dec_hidden: units of the decoder LSTM.
      z_size: size of the latent vector z.
      num_mixtures: Gaussians in the mixture over each step's pen offsets.
      conditional: encode the sketch into z (False: the unconditional decoder-only model).
      recurrent_dropout: dropout on the LSTM cell candidate (rng 'dropout' in training).
      dtype: compute dtype of the matmuls; carries and outputs stay float32.
      param_dtype: dtype of the parameters.
    """

    enc_hidden: int = 256
    dec_hidden: int = 512
    z_size: int = 128
    num_mixtures: int = 20
    conditional: bool = True
    recurrent_dropout: float = 0.0
    dtype: Any = "float32"
    param_dtype: Any = "float32"

    def setup(self):
        dtype = as_dtype(self.dtype)
        cell = functools.partial(DropoutLSTMCell, rate=self.recurrent_dropout, dtype=dtype,
                                 param_dtype=jnp.dtype(self.param_dtype))
        dense = functools.partial(nn.Dense, dtype=dtype, param_dtype=jnp.dtype(self.param_dtype))
        if self.conditional:
            self.enc_fwd, self.enc_bwd = cell(self.enc_hidden), cell(self.enc_hidden)
            self.z_mu, self.z_logvar = dense(self.z_size), dense(self.z_size)
            self.z_to_state = dense(2 * self.dec_hidden)
        self.dec = cell(self.dec_hidden)
        self.out = dense(6 * self.num_mixtures + 3)

    def encode(self, strokes, lengths=None, *, train: bool = False):
        """``(mu, logvar)`` of q(z | sketch), each (B, z_size); ``lengths`` default to the
        points before each sketch's first end row."""
        lengths = stroke5_length(strokes) if lengths is None else lengths
        zeros = _zero_carry(strokes.shape[0], self.enc_hidden)
        _, h_fwd = _run(self.enc_fwd, zeros, strokes, train)
        _, h_bwd = _run(self.enc_bwd, zeros, reverse_valid(strokes, lengths), train)
        summary = jnp.concatenate([last_valid(h_fwd, lengths), last_valid(h_bwd, lengths)], -1)
        return self.z_mu(summary).astype(jnp.float32), self.z_logvar(summary).astype(jnp.float32)

    def initial_carry(self, z, batch: int):
        """Decoder start state ``tanh(W z + b)`` split into (c, h); zeros without z."""
        if z is None:
            return _zero_carry(batch, self.dec_hidden)
        return tuple(jnp.split(jnp.tanh(self.z_to_state(z)).astype(jnp.float32), 2, -1))

    def decode(self, carry, inputs, z, *, train: bool = False):
        """The decoder over ``inputs`` (B, T, 5) given ``z`` (B, z_size) or ``None``, from
        ``carry``; returns (final carry, raw outputs (B, T, 6M + 3))."""
        if z is not None:
            inputs = jnp.concatenate([inputs, jnp.broadcast_to(z[:, None], inputs.shape[:2] + z.shape[-1:])], -1)
        carry, h = _run(self.dec, carry, inputs, train)
        return carry, self.out(h).astype(jnp.float32)

    def latent(self, strokes, lengths=None, *, train: bool):
        """``(z, mu, logvar)``; ``z = mu + exp(logvar / 2) * eps`` in training, ``mu`` otherwise."""
        mu, logvar = self.encode(strokes, lengths, train=train)
        if not train:
            return mu, mu, logvar
        eps = jax.random.normal(self.make_rng("dropout"), mu.shape)
        return mu + jnp.exp(logvar / 2) * eps, mu, logvar

    def __call__(self, strokes, *, lengths=None, train: bool) -> dict[str, Any]:
        """Encodes and reconstructs a batch of sketches (teacher forcing).

        Args:
          strokes: stroke-5 sketches (B, Nmax, 5) float, padded with end rows.
          lengths: (B,) points of each sketch; default: the rows before its first end row.
          train: True samples z = mu + sigma * eps and applies recurrent dropout, both from
            the 'dropout' rng; False uses z = mu (deterministic). Required: a forgotten flag
            must not silently train in evaluation mode.

        Returns a dict: ``split_params`` of every step's output (``pi_logits``, ``mu``,
        ``log_sigma``, ``rho``, ``pen_logits``) and ``z_mu``, ``z_logvar``, ``z`` (B, z_size).
        ``sample`` and ``generate`` draw from the 'sample' rng stream.
        """
        if jnp.ndim(strokes) != 3 or jnp.shape(strokes)[-1] != 5:
            raise ValueError(f"SketchRNN expects stroke-5 sketches of shape (B, Nmax, 5); got {jnp.shape(strokes)}")
        strokes = strokes.astype(jnp.float32)
        batch = strokes.shape[0]
        if self.conditional:
            z, mu, logvar = self.latent(strokes, lengths, train=train)
        else:
            z, mu, logvar = None, *(jnp.zeros((batch, self.z_size)),) * 2
        start = jnp.broadcast_to(jnp.asarray(START_ROW), (batch, 1, 5))
        inputs = jnp.concatenate([start, strokes[:, :-1]], axis=1)
        _, raw = self.decode(self.initial_carry(z, batch), inputs, z, train=train)
        out = split_params(raw, self.num_mixtures)
        out.update(z_mu=mu, z_logvar=logvar, z=mu if z is None else z)
        return out

    def generate(self, z, batch: int, max_len: int, temperature: float):
        """Samples ``max_len`` rows autoregressively (see ``sample``)."""

        def body(module, state, _):
            carry, prev, done = state
            carry, raw = module.decode(carry, prev[:, None], z)
            row = sample_row(module.make_rng("sample"), split_params(raw[:, 0], self.num_mixtures), temperature)
            done = done | (row[:, 4] > 0.5)  # an end state's offsets are meaningless
            row = jnp.where(done[:, None], jnp.asarray(END_ROW), row)
            return (carry, row, done), row

        scan = nn.scan(
            body, variable_broadcast="params", split_rngs={"params": False, "sample": True},
            length=max_len, out_axes=1,
        )
        start = jnp.broadcast_to(jnp.asarray(START_ROW), (batch, 5))
        state = (self.initial_carry(z, batch), start, jnp.zeros((batch,), bool))
        _, rows = scan(self, state, None)
        return rows


MODELS = {
    "sketch_rnn": SketchRNN,
    "sketch_rnn_unconditional": functools.partial(SketchRNN, conditional=False),
}

# ----------------------------------------------------------------------------- loss


def mixture_log_likelihood(params: dict, xy: jax.Array) -> jax.Array:
    """``log sum_j pi_j N(xy | mu_j, sigma_j, rho_j)`` for offsets ``xy`` (..., 2).

    The bivariate normal in log space: with ``d = (xy - mu) / sigma``,
    ``Z = d_x^2 + d_y^2 - 2 rho d_x d_y`` and
    ``log N = -Z / (2 (1 - rho^2)) - log(2 pi sigma_x sigma_y sqrt(1 - rho^2))``;
    the mixture is a logsumexp, so tiny densities do not underflow to log(0).
    """
    d = (xy[..., None, :] - params["mu"]) * jnp.exp(-params["log_sigma"])
    rho = params["rho"]
    one_m_rho2 = jnp.maximum(1 - jnp.square(rho), 1e-6)
    z = jnp.square(d[..., 0]) + jnp.square(d[..., 1]) - 2 * rho * d[..., 0] * d[..., 1]
    log_n = -z / (2 * one_m_rho2) - LOG_2PI - jnp.sum(params["log_sigma"], -1) - 0.5 * jnp.log(one_m_rho2)
    log_pi = jax.nn.log_softmax(params["pi_logits"], -1)
    return jax.nn.logsumexp(log_pi + log_n, axis=-1)


def reconstruction_losses(outputs: dict, strokes: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-sketch ``(L_s, L_p)``, each (B,), both divided by Nmax as in the paper.

    ``L_s`` sums the offsets' negative log likelihood over the sketch's points only (rows
    before the first end row); ``L_p`` sums the pen cross-entropy over all Nmax rows, so
    the model learns to keep emitting the end state after the sketch ends.
    """
    nmax = strokes.shape[1]
    valid = strokes[..., 4] < 0.5
    nll = -mixture_log_likelihood(outputs, strokes[..., :2])
    l_s = jnp.sum(jnp.where(valid, nll, 0.0), -1) / nmax
    pen = -jnp.sum(strokes[..., 2:] * jax.nn.log_softmax(outputs["pen_logits"], -1), -1)
    return l_s, jnp.sum(pen, -1) / nmax


def kl_divergence(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """Per-sketch KL(N(mu, sigma^2) || N(0, I)) averaged over latent dimensions (the
    paper's ``-1/(2 Nz) sum(1 + logvar - mu^2 - exp(logvar))``), shape (B,)."""
    return -0.5 * jnp.mean(1 + logvar - jnp.square(mu) - jnp.exp(logvar), -1)


def kl_weight_schedule(step, *, kl_weight: float = 0.5, kl_weight_start: float = 0.01, kl_decay: float = 0.99995):
    """``w_KL(step) = kl_weight * (1 - (1 - kl_weight_start) * kl_decay^step)``: the KL
    weight grows from ``kl_weight * kl_weight_start`` towards ``kl_weight``, so early
    training learns to reconstruct before the prior squeezes the latent space."""
    decay = jnp.exp(jnp.asarray(step, jnp.float32) * float(np.log(kl_decay)))  # f32 power drifts
    return kl_weight * (1 - (1 - kl_weight_start) * decay)


def loss_fn(
    outputs: dict,
    strokes: jax.Array,
    *,
    step,
    kl_weight: float = 0.5,
    kl_weight_start: float = 0.01,
    kl_decay: float = 0.99995,
    kl_tolerance: float = 0.2,
    conditional: bool = True,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``L_R + w_KL(step) * max(L_KL, kl_tolerance)`` averaged over the batch (or over
    examples with ``mask`` 1). The floor stops the optimiser from squeezing KL below
    ``kl_tolerance``, where it would only cost reconstruction. Returns (total, scalars)
    with ``recon`` (= ``offsets`` + ``pen``), ``kl`` (unfloored) and ``kl_weight``."""
    mask = jnp.ones(strokes.shape[:1]) if mask is None else mask
    mean = lambda v: jnp.sum(v * mask) / jnp.maximum(jnp.sum(mask), 1.0)  # noqa: E731
    l_s, l_p = reconstruction_losses(outputs, strokes)
    recon = mean(l_s + l_p)
    kl = mean(kl_divergence(outputs["z_mu"], outputs["z_logvar"]))
    weight = kl_weight_schedule(step, kl_weight=kl_weight, kl_weight_start=kl_weight_start, kl_decay=kl_decay)
    total = recon + (weight * jnp.maximum(kl, kl_tolerance) if conditional else 0.0)
    scalars = {"loss": total, "recon": recon, "offsets": mean(l_s), "pen": mean(l_p), "kl": kl, "kl_weight": weight}
    return total, scalars


SCALARS = ("loss", "recon", "offsets", "pen", "kl", "kl_weight")


def training_loss(model: SketchRNN, **loss_kwargs):
    """The training loop's loss hook (task 'generative'): ``(outputs, batch, step) -> (loss,
    scalars)`` with ``loss_fn`` on ``batch['inputs']`` (the stroke-5 sketches), masked by
    ``batch['mask']``; ``loss_kwargs`` are ``loss_fn``'s KL settings (the config's ``loss``)."""
    unknown = set(loss_kwargs) - {"kl_weight", "kl_weight_start", "kl_decay", "kl_tolerance"}
    if unknown:
        raise TypeError(f"unknown loss setting(s) {sorted(unknown)}; valid: kl_weight, kl_weight_start, kl_decay, kl_tolerance")
    conditional = model.conditional

    def fn(outputs, batch, step):
        return loss_fn(outputs, batch["inputs"], step=step, mask=batch["mask"], conditional=conditional, **loss_kwargs)

    return fn


# ----------------------------------------------------------------------------- generation


def sample_row(key, params: dict, temperature: float) -> jax.Array:
    """One stroke-5 row per batch element from per-step ``params`` (B, ...).

    Temperature tau as in the paper: mixture and pen logits are divided by tau and the
    Gaussians' variances multiplied by tau (tau -> 0: the most likely component's mean and
    pen state; tau = 1: the model's distribution). ``temperature`` must be a Python float.
    """
    k_pi, k_xy, k_pen = jax.random.split(key, 3)
    tau = max(float(temperature), 1e-4)
    batch = params["pen_logits"].shape[0]
    j = jax.random.categorical(k_pi, params["pi_logits"] / tau, axis=-1)
    take = lambda a: jnp.take_along_axis(a, j.reshape((batch, 1) + (1,) * (a.ndim - 2)), 1)[:, 0]  # noqa: E731
    mu, sigma, rho = take(params["mu"]), jnp.exp(take(params["log_sigma"])) * np.sqrt(tau), take(params["rho"])
    e = jax.random.normal(k_xy, (batch, 2))
    dx = mu[:, 0] + sigma[:, 0] * e[:, 0]
    dy = mu[:, 1] + sigma[:, 1] * (rho * e[:, 0] + jnp.sqrt(1 - jnp.square(rho)) * e[:, 1])
    pen = jax.random.categorical(k_pen, params["pen_logits"] / tau, axis=-1)
    return jnp.concatenate([jnp.stack([dx, dy], -1), jax.nn.one_hot(pen, 3)], -1)


@functools.partial(jax.jit, static_argnames=("model", "max_len", "temperature", "batch"))
def sample(model: SketchRNN, params, key, z=None, *, batch: int | None = None, max_len: int, temperature: float = 1.0):
    """One-to-many generation: ``(strokes (B, max_len, 5), lengths (B,))``.

    ``z`` (B, z_size) conditions a conditional model (``None``: z ~ N(0, I) drawn from
    ``key``, ``batch`` sketches); an unconditional model ignores ``z``. A sketch stops at
    its first end state (p3), after which rows are end rows, or at ``max_len``;
    ``lengths`` counts its points before the end. ``params``: the model's 'params'.
    """
    key_z, key_s = jax.random.split(key)
    if z is None:
        if batch is None:
            raise ValueError("sample needs z or batch")
        z = jax.random.normal(key_z, (batch, model.z_size))
    rows = model.apply(
        {"params": params}, z if model.conditional else None, z.shape[0], max_len, temperature,
        rngs={"sample": key_s}, method=SketchRNN.generate,
    )
    return rows, stroke5_length(rows)


@functools.partial(jax.jit, static_argnames=("model",))
def encode(model: SketchRNN, params, strokes):
    """The latent means ``mu`` (B, z_size) of padded stroke-5 sketches (deterministic)."""
    return model.apply({"params": params}, strokes, method=SketchRNN.encode)[0]


def reconstruct(model, params, key, strokes, *, max_len: int, temperature: float = 0.1):
    """Decodes each sketch's latent mean: the conditional reconstruction of the paper."""
    return sample(model, params, key, encode(model, params, strokes), max_len=max_len, temperature=temperature)


def interpolate(z0, z1, num: int, *, spherical: bool = True):
    """``num`` latents from ``z0`` to ``z1`` (each (D,)): slerp by default, which keeps
    the norm typical of a Gaussian sample rather than shrinking through the middle as a
    straight line does; ``spherical=False`` interpolates linearly."""
    t = jnp.linspace(0.0, 1.0, num)[:, None]
    if not spherical:
        return (1 - t) * z0 + t * z1
    cos = jnp.dot(z0, z1) / (jnp.linalg.norm(z0) * jnp.linalg.norm(z1))
    omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
    so = jnp.sin(omega)
    safe = jnp.where(so > 1e-6, so, 1.0)
    slerp = (jnp.sin((1 - t) * omega) * z0 + jnp.sin(t * omega) * z1) / safe
    return jnp.where(so > 1e-6, slerp, (1 - t) * z0 + t * z1)


# ----------------------------------------------------------------------------- figures


def figures(out, model: SketchRNN, params, strokes: np.ndarray, labels: np.ndarray, class_names, *, seed: int = 0) -> None:
    """Draws into directory ``out``: the data (``data.png``), samples from the prior at
    temperatures 0.1 and 0.5, and for a conditional model reconstructions of sketches of
    every class and latent interpolations between classes (PNG grids, one SVG). ``strokes``
    are padded stroke-5 sketches (e.g. the test split), ``labels`` their classes."""
    from pathlib import Path

    from jaxclf.ops import render
    from jaxclf.ops.strokes import to_stroke3

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    key, max_len = jax.random.key(seed), strokes.shape[1]
    names = [str(n) for n in class_names] or [str(c) for c in range(int(labels.max()) + 1)]
    to3 = lambda rows: [to_stroke3(r) for r in np.asarray(rows)]  # noqa: E731
    render.save_grid(to3(strokes[:20]), out / "data.png", ncols=10,
                     titles=[names[c] for c in labels[:20]], suptitle="test sketches (the data)")
    for tau in (0.1, 0.5):
        rows, _ = sample(model, params, jax.random.fold_in(key, int(tau * 100)), batch=40, max_len=max_len, temperature=tau)
        render.save_grid(to3(rows), out / f"samples_t{tau}.png", ncols=10, suptitle=f"samples from the prior, temperature {tau}")
    if not model.conditional:
        return
    classes = [c for c in range(len(names)) if np.any(labels == c)]
    per_class = {c: np.flatnonzero(labels == c)[:4] for c in classes}
    idx = np.concatenate([per_class[c] for c in classes])
    rows, _ = reconstruct(model, params, key, jnp.asarray(strokes[idx]), max_len=max_len, temperature=0.1)
    originals, recons = to3(strokes[idx]), to3(rows)
    pairs, titles = [], []
    for start in range(0, len(idx), 4):
        group = slice(start, start + 4)
        pairs += originals[group] + recons[group]
        titles += [f"input {names[labels[i]]}" for i in idx[group]] + [f"recon {names[labels[i]]}" for i in idx[group]]
    render.save_grid(pairs, out / "reconstructions.png", ncols=8, titles=titles,
                     suptitle="test sketches (left 4) and their reconstructions from z = mu (right 4), temperature 0.1")
    ends = [(a, classes[(i + 1) % len(classes)]) for i, a in enumerate(classes[:5])]  # one class: 2 of it
    grid, row_labels = [], []
    for n, (a, b) in enumerate(ends):
        pair = strokes[[per_class[a][0], per_class[b][-1]]]
        z = encode(model, params, jnp.asarray(pair))
        rows, _ = sample(model, params, jax.random.fold_in(key, n), interpolate(z[0], z[1], 8), max_len=max_len, temperature=0.05)
        grid += [to_stroke3(pair[0])] + to3(rows) + [to_stroke3(pair[1])]
        row_labels.append(f"{names[a]} -> {names[b]}")
    render.save_grid(grid, out / "interpolations.png", ncols=10, row_labels=row_labels,
                     suptitle="inputs (first, last column) and decodings of slerp(z_first, z_last), temperature 0.05")
    (out / "sample.svg").write_text(render.to_svg(grid[1]))


LOSSES = {name: {"loss": training_loss, "scalars": SCALARS, "figures": figures} for name in MODELS}
