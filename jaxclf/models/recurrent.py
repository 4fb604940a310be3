"""Recurrent sequence models: many-to-one, many-to-many, one-to-many and seq2seq.

Inputs are ``(batch, time, features)``. Variable length is given by ``lengths`` (batch,)
or a prefix ``mask`` (batch, time); both are optional (fixed-length data such as MNIST-1D
passes ``x`` only). Padding never changes a result: the recurrence keeps each sequence's
carry frozen after its last valid step, the backward direction starts at each sequence's
last valid step, and pooling and attention ignore padded steps.

All models build on ``Recurrence`` (one direction of one layer), which hoists the input
projection of the cells in ``cells.py`` out of the scan: one ``(T*B, F) x (F, G*H)`` matmul for
all steps, then a scan of only ``W_h h`` (``hoist=True``, the default, as cuDNN does: one big
matmul instead of T small ones). ``hoist=False`` scans the plain cell step by step, which
XLA:CPU runs faster (a 128-unit LSTM's train step, 40 steps, batch 128: 27 vs 42 ms on 2
cores); ``jaxclf.cpu.tune`` sets it for programs that run on the CPU. Flax's own cells are
always scanned step by step.
Parameters are grouped per layer (``encoder/layer_0/fwd/cell/...``, ``head``) so that
``jaxclf.train.steps.per_layer_norms(grads)`` gives the gradient norm of each layer.
"""

from __future__ import annotations

import dataclasses

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxclf.models.cells import Carry, can_hoist, make_cell, zero_carry
from jaxclf.models.layers import check_output, classify, as_dtype, is_traced, lookup, maybe_remat

# ----------------------------------------------------------------------------- helpers


def resolve_lengths(lengths=None, mask=None):
    """Per-sequence lengths from ``lengths`` or a prefix ``mask``; ``None`` means full."""
    if lengths is not None:
        return jnp.asarray(lengths, jnp.int32)
    if mask is not None:
        return jnp.sum(mask, axis=1, dtype=jnp.int32)
    return None


def check_sequences(module: nn.Module, x) -> None:
    """Refuses anything but float features (B, T, F), naming the model: an integer (B, T)
    array of token ids would otherwise be read as B sequences of T one-feature steps."""
    name = type(module).__name__
    if np.ndim(x) != 3 or not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        hint = " (token ids: embed them first, e.g. model 'text_rnn')" if jnp.issubdtype(
            jnp.result_type(x), jnp.integer) else ""
        raise TypeError(f"{name} expects float features of shape (B, T, F); got a {jnp.result_type(x)} "
                        f"array of shape {tuple(np.shape(x))}{hint}")


def checked_lengths(module: nn.Module, lengths, batch: int, steps: int):
    """``lengths`` (B,) int32 within [0, steps]. Concrete values outside are refused with an
    error naming the model; traced ones (under ``jit``) cannot be read and are clipped."""
    if lengths is None:
        return None
    if np.shape(lengths) != (batch,):
        raise ValueError(f"{type(module).__name__}: lengths must have shape ({batch},); got {tuple(np.shape(lengths))}")
    if not is_traced(lengths):
        values = np.asarray(lengths)
        if values.size and (values.min() < 0 or values.max() > steps):
            raise ValueError(f"{type(module).__name__}: lengths must lie in [0, {steps}] (the padded length); "
                             f"got values in [{values.min()}, {values.max()}]")
    return jnp.clip(lengths, 0, steps)


def sequence_mask(lengths, max_len: int):
    """``(batch, max_len)`` bool mask of valid steps (all True when ``lengths`` is None)."""
    steps = jnp.arange(max_len)[None, :]
    if lengths is None:
        return jnp.ones((1, max_len), bool)
    return steps < lengths[:, None]


def reverse_valid(x, lengths):
    """Reverses each sequence within its own length; padding stays where it is.

    ``[a b c pad] -> [c b a pad]``: a backward scan over the result starts at the last
    *valid* step, which a plain ``flip`` would not do. It is its own inverse.
    """
    if lengths is None:
        return jnp.flip(x, axis=1)
    steps = jnp.arange(x.shape[1])[None, :]
    last = lengths[:, None] - 1
    idx = jnp.where(steps <= last, last - steps, steps)
    return x[jnp.arange(x.shape[0])[:, None], idx]


def last_valid(x, lengths):
    """``x[b, lengths[b] - 1]`` (the last step when ``lengths`` is None)."""
    if lengths is None:
        return x[:, -1]
    return x[jnp.arange(x.shape[0]), lengths - 1]


def masked_softmax(scores, mask):
    """Softmax over the last axis restricted to ``mask`` (which must be broadcastable)."""
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
    return jax.nn.softmax(scores, axis=-1)


def masked_token_loss(logits, targets, lengths=None):
    """Mean cross-entropy over the valid steps of per-step logits ``(B, T, C)``."""
    losses = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], -1)[..., 0]
    weights = jnp.broadcast_to(sequence_mask(lengths, logits.shape[1]), losses.shape)
    return jnp.sum(losses * weights) / jnp.maximum(jnp.sum(weights), 1)


def _sow_attention(module: nn.Module, weights) -> None:
    """Records attention weights in ``intermediates`` (read with ``mutable='intermediates'``).

    Not at init: ``init`` returns every collection, and a training loop that carries
    non-parameter collections as state would otherwise append to them at every step.
    """
    if not module.is_initializing():
        module.sow("intermediates", "attention", weights)


def keep_dtypes(new: Carry, old: Carry) -> Carry:
    """``new`` in ``old``'s dtypes: with a bfloat16 compute dtype the carry stays float32
    (and a scan's carry must keep its type)."""
    return jax.tree.map(lambda n, o: n.astype(o.dtype), new, old)


def _scan_step(hoisted: bool):
    """The scan body: one cell step whose carry stays frozen where ``valid`` is False."""

    def body(cell, carry, inputs):
        x, valid = inputs
        new, y = cell.recur(carry, x) if hoisted else cell(carry, x)
        new = keep_dtypes(new, carry)
        if valid is not None:
            new = jax.tree.map(lambda n, o: jnp.where(valid[:, None], n, o), new, carry)
        return new, y

    return body


# ----------------------------------------------------------------------------- layers


class Recurrence(nn.Module):
    """One direction of one recurrent layer: ``(B, T, F) -> (outputs (B, T, H), carry)``.

    ``carry`` is the state after each sequence's last valid step (for ``reverse``, after
    its first step); outputs are in input order, and undefined at padded steps.
    """

    kind: str = "lstm"
    hidden: int = 128
    reverse: bool = False
    hoist: bool = True
    unroll: int = 1
    dtype: Any = jnp.float32  # compute dtype of the cell
    cell_options: Mapping | None = None  # the cell's settings, e.g. {'forget_bias': 3.0}
    param_dtype: Any = jnp.float32

    def setup(self):
        self.cell = make_cell(self.kind, self.hidden, self.dtype, self.cell_options, self.param_dtype)

    def __call__(self, x, lengths=None, initial_carry: Carry | None = None):
        hoisted = self.hoist and can_hoist(self.cell)
        if self.reverse:
            x = reverse_valid(x, lengths)
        carry = initial_carry
        if carry is None:
            carry = zero_carry(self.cell, x.shape[0], x.shape[-1])
        x = jnp.swapaxes(x, 0, 1)  # Time-major before projecting: the scan reads rows.
        xs = self.cell.project_inputs(x) if hoisted else x
        valid = None if lengths is None else sequence_mask(lengths, x.shape[0]).T
        scan = nn.scan(
            _scan_step(hoisted),
            variable_broadcast="params",
            split_rngs={"params": False},
            unroll=self.unroll,
        )
        carry, ys = scan(self.cell, carry, (xs, valid))
        ys = jnp.swapaxes(ys, 0, 1)
        if self.reverse:
            ys = reverse_valid(ys, lengths)
        return ys, carry

    def step(self, carry: Carry, x):
        """One step of the cell from a raw input (for autoregressive sampling)."""
        new, y = self.cell(carry, x)
        return keep_dtypes(new, carry), y


class BiLayer(nn.Module):
    """A layer, forward (``fwd``) and optionally backward (``bwd``), outputs concatenated.

    Returns ``(outputs (B, T, D*H), summary (B, D*H), carries)``, where ``summary`` is the
    state after reading each whole valid sequence: forward at its last valid step and
    backward at step 0, and ``carries`` is the tuple of the directions' final carries.
    """

    kind: str = "lstm"
    hidden: int = 128
    bidirectional: bool = False
    hoist: bool = True
    unroll: int = 1
    dtype: Any = jnp.float32
    cell_options: Mapping | None = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, lengths=None, initial_carry: Carry | None = None):
        layer = functools.partial(
            Recurrence, self.kind, self.hidden, hoist=self.hoist, unroll=self.unroll, dtype=self.dtype,
            cell_options=self.cell_options, param_dtype=self.param_dtype,
        )
        ys, carry = layer(name="fwd")(x, lengths, initial_carry)
        outputs, summary, carries = [ys], [last_valid(ys, lengths)], [carry]
        if self.bidirectional:
            ys, carry = layer(reverse=True, name="bwd")(x, lengths)
            outputs.append(ys)
            summary.append(ys[:, 0])
            carries.append(carry)
        return jnp.concatenate(outputs, -1), jnp.concatenate(summary, -1), tuple(carries)


class RecurrentModel(nn.Module):
    """The attributes every recurrent model shares (documented in each model's docstring by
    :func:`with_recurrent_attributes`); a model changes a default by declaring it again."""

    cell: str = "lstm"
    hidden: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout_rate: float = 0.0
    hoist: bool = True
    unroll: int = 1
    remat: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    cell_options: Mapping | None = None

    @nn.nowrap
    def make_encoder(self, dtype, **kwargs) -> "Encoder":
        """The stacked (bi)directional layers these attributes describe, computing in ``dtype``."""
        return Encoder(**{**shared_attributes(self), "dtype": dtype}, **kwargs)


def shared_attributes(model: RecurrentModel) -> dict:
    """``model``'s values of the attributes every recurrent model shares."""
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(RecurrentModel) if f.name not in ("parent", "name")}


class Encoder(RecurrentModel):
    """Stacked ``BiLayer``s ``layer_0 .. layer_{n-1}``, dropout between them.

    Returns ``(outputs, summary, carries)`` of the last layer (see ``BiLayer``) and the
    dict of every layer's outputs ``{'layer_0': (B, T, D*H), ...}``. ``remat``
    rematerialises each layer: its scan is recomputed in the backward pass instead of
    storing every step's gates.
    """

    @nn.compact
    def __call__(self, x, lengths=None, *, train: bool):
        bilayer = maybe_remat(BiLayer, self.remat, static_argnums=())
        stages = {}
        for i in range(self.num_layers):
            if i:
                x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
            layer = bilayer(
                self.cell, self.hidden, self.bidirectional, self.hoist, self.unroll, self.dtype,
                self.cell_options, self.param_dtype, name=f"layer_{i}",
            )
            x, summary, carries = layer(x, lengths)
            stages[f"layer_{i}"] = x
        return x, summary, carries, stages


def _pool_last(h, summary, lengths):
    return summary


def _pool_mean(h, summary, lengths):
    valid = sequence_mask(lengths, h.shape[1])[..., None]
    return jnp.sum(h * valid, 1) / jnp.maximum(jnp.sum(valid, 1), 1)


def _pool_max(h, summary, lengths):
    valid = sequence_mask(lengths, h.shape[1])[..., None]
    return jnp.max(jnp.where(valid, h, -jnp.inf), axis=1)


class AttentionPool(nn.Module):
    """Attention pooling: a learned query scores ``tanh(W h_t)`` keys; masked softmax.

    The weights are sown as ``intermediates/attention`` for inspection.
    """

    features: int = 64
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h, summary, lengths):
        keys = jnp.tanh(nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="key")(h))
        query = self.param("query", nn.initializers.normal(1.0), (self.features,), self.param_dtype)
        scores = keys @ query / jnp.sqrt(self.features)
        weights = masked_softmax(scores, sequence_mask(lengths, h.shape[1]))
        _sow_attention(self, weights)
        return jnp.einsum("bt,btd->bd", weights, h)


def _pool_flatten(h, summary, lengths):
    """Every step's state, concatenated (MNIST-1D's GRU); padded steps are zeroed."""
    valid = sequence_mask(lengths, h.shape[1])[..., None]
    return jnp.where(valid, h, 0.0).reshape(h.shape[0], -1)


_POOLS = {"last": _pool_last, "mean": _pool_mean, "max": _pool_max, "flatten": _pool_flatten, "attention": None}

# ----------------------------------------------------------------------------- models


_RECURRENT_ATTRIBUTES = """
      cell: the recurrent cell, one of ``cells.CELL_NAMES`` ('lstm', 'gru', 'rnn', ...).
      hidden: units of each cell.
      num_layers: stacked recurrent layers.
      bidirectional: add a backward direction to every layer (outputs concatenated).
      dropout_rate: dropout between layers and before the head (rng 'dropout' in training).
      hoist: compute the input projection of all steps in one matmul before the scan (False:
        the plain cell step by step, faster on XLA:CPU; ``jaxclf.cpu.tune`` sets it).
      unroll: steps per scan iteration.
      remat: rematerialise each recurrent layer (recompute its scan in the backward pass).
      dtype: compute dtype of the cells and the head, e.g. 'bfloat16'; carries and logits stay float32.
      param_dtype: dtype of the parameters.
      cell_options: the cells' settings, e.g. {'forget_bias': 3.0} (``cells.cell_options(cell)``)."""

_SEQUENCE_ARGS = """
          lengths: (B,) int valid steps of each sequence, in [0, T] (concrete values
            outside are refused; under ``jit`` they are clipped). A zero-length row reads
            nothing: its pooled features are zeros, whatever its padding holds.
          mask: (B, T) prefix mask, instead of ``lengths``; neither: every step is valid.
          train: True applies dropout (rng 'dropout'). Required: a forgotten flag must not
            silently train in evaluation mode."""


def with_recurrent_attributes(cls: type) -> type:
    """Appends the attributes every recurrent model shares to ``cls``'s docstring."""
    cls.__doc__ = cls.__doc__.rstrip() + _RECURRENT_ATTRIBUTES + "\n"
    return cls


@with_recurrent_attributes
class RNNClassifier(RecurrentModel):
    """Many-to-one: encode the sequence, pool over valid steps, classify.

    Attributes:
      num_classes: outputs of the dense head; 0 builds no head (the model returns the pooled features).
      pooling: 'last' (state after the whole valid sequence, both directions), 'mean' or
        'max' over valid steps, 'flatten' (all steps concatenated: fixed length only, as in
        the MNIST-1D paper's GRU), or 'attention' (``AttentionPool``, weights sown as
        ``intermediates/attention``).
    """

    num_classes: int = 10
    pooling: str = "last"

    @nn.compact
    def __call__(self, x, *, lengths=None, mask=None, train: bool, output: str = "logits"):
        pool = lookup(_POOLS, "pooling", self.pooling) or AttentionPool(
            self.hidden, as_dtype(self.dtype), self.param_dtype, name="pool")
        check_sequences(self, x)
        check_output(self, output)
        lengths = checked_lengths(self, resolve_lengths(lengths, mask), x.shape[0], x.shape[1])
        dtype = as_dtype(self.dtype)
        h, summary, _, stages = self.make_encoder(dtype, name="encoder")(x.astype(jnp.float32), lengths, train=train)
        z = pool(h, summary, lengths)
        if lengths is not None:  # a zero-length row: zero features (the zero initial state)
            z = jnp.where((lengths > 0)[:, None], z, 0.0)
        if output == "logits" and self.num_classes:
            z = nn.Dropout(self.dropout_rate, deterministic=not train)(z)
        return classify(self, z, output, stages=stages)

    __call__.__doc__ = """Classifies a batch of sequences.

        Args:
          x: float features (B, T, F); an integer array is refused (token ids go through
            'text_rnn', which embeds them).""" + _SEQUENCE_ARGS + """
          output: 'logits' (B, num_classes) float32; 'features': the pooled features the
            dense layer 'head' reads (before its dropout); 'stages': a dict of every
            layer's outputs ('layer_0': (B, T, D*H), ...).

        Returns what ``output`` names (the features when ``num_classes`` is 0).
        """


@with_recurrent_attributes
class RNNTagger(RecurrentModel):
    """Many-to-many (one label per step): logits ``(B, T, classes)``, zero at padding.

    Attributes:
      num_classes: labels per step; 0 builds no head (the model returns the per-step features).
    """

    num_classes: int = 10
    bidirectional: bool = True

    @nn.compact
    def __call__(self, x, *, lengths=None, mask=None, train: bool, output: str = "logits"):
        check_sequences(self, x)
        check_output(self, output)
        lengths = checked_lengths(self, resolve_lengths(lengths, mask), x.shape[0], x.shape[1])
        dtype = as_dtype(self.dtype)
        h, _, _, stages = self.make_encoder(dtype, name="encoder")(x.astype(jnp.float32), lengths, train=train)
        h = h * sequence_mask(lengths, x.shape[1])[..., None]
        if output == "logits" and self.num_classes:
            h = nn.Dropout(self.dropout_rate, deterministic=not train)(h)
            h = classify(self, h, output)
            return h * sequence_mask(lengths, x.shape[1])[..., None]
        return classify(self, h, output, stages=stages)

    __call__.__doc__ = """Labels every step of a batch of sequences.

        Args:
          x: float features (B, T, F).""" + _SEQUENCE_ARGS + """
          output: 'logits' (B, T, num_classes) float32, zero at padded steps; 'features':
            the last layer's outputs (B, T, D*H), zero at padded steps; 'stages': a dict of
            every layer's outputs.

        Returns what ``output`` names (the features when ``num_classes`` is 0).
        """


def shift_right(targets, start_token: int):
    """Teacher-forcing inputs: ``[start, y_0, ..., y_{T-2}]`` for targets ``(B, T)``."""
    start = jnp.full((targets.shape[0], 1), start_token, targets.dtype)
    return jnp.concatenate([start, targets[:, :-1]], axis=1)


def autoregress(module, step, carry, start, *, max_len: int, temperature: float, end_token: int):
    """Decodes one token at a time: ``step(module, carry, prev) -> (carry, logits)``.

    Returns ``(tokens (B, max_len), lengths (B,))``. A sequence stops after its first
    ``end_token`` (counted in its length; later positions hold ``end_token``) or at
    ``max_len``. ``temperature`` divides the logits before sampling from the ``'sample'``
    rng stream; 0 means greedy. ``max_len`` and ``temperature`` are static.
    """

    def body(module, state, _):
        carry, prev, done, length = state
        carry, logits = step(module, carry, prev)
        if temperature == 0:
            token = jnp.argmax(logits, -1)
        else:
            token = jax.random.categorical(module.make_rng("sample"), logits / temperature)
        token = jnp.where(done, end_token, token).astype(jnp.int32)
        return (carry, token, done | (token == end_token), length + ~done), token

    batch = start.shape[0]
    state = (carry, start, jnp.zeros((batch,), bool), jnp.zeros((batch,), jnp.int32))
    scan = nn.scan(
        body, variable_broadcast="params", split_rngs={"params": False, "sample": True},
        length=max_len, out_axes=1,
    )
    (_, _, _, lengths), tokens = scan(module, state, None)
    return tokens, lengths


def _apply_sampler(module, params, rng, method, *args):
    """``module.apply`` of a sampling method; ``params``: variables or their 'params'."""
    variables = params if "params" in params else {"params": params}
    return module.apply(variables, *args, rngs={"sample": rng}, method=method)


class RNNGenerator(nn.Module):
    """One-to-many: a token sequence from a class id ``(B,)`` int or a latent ``(B, D)``.

    At each step the cell reads the previous token's embedding and the condition, and a
    head gives next-token logits over ``vocab_size`` tokens; emitting ``end_token`` ends
    the sequence. ``__call__(cond, targets=...)`` trains by teacher forcing (the inputs are
    the targets shifted right after a start token, id ``vocab_size``); ``sample``
    generates.

    Attributes:
      num_classes: conditioning classes (unused for latent conditions).
      vocab_size: output tokens.
      end_token: the token that ends a sequence.
      cell: the recurrent cell, one of ``cells.CELL_NAMES``.
      hidden: units of the cell.
      embed_dim: size of the token and condition embeddings.
      hoist: hoist the input projection out of the scan (see ``Recurrence``).
      unroll: steps per scan iteration.
      dtype: compute dtype of the cell and the head; carries and logits stay float32.
      param_dtype: dtype of the parameters.
      cell_options: the cell's settings (``cells.cell_options``).
    """

    num_classes: int = 10
    vocab_size: int = 16
    end_token: int = 0
    cell: str = "gru"
    hidden: int = 128
    embed_dim: int = 32
    hoist: bool = True
    unroll: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    cell_options: Mapping | None = None

    def setup(self):
        pd = self.param_dtype
        self.class_embed = nn.Embed(self.num_classes, self.embed_dim, param_dtype=pd)
        self.latent = nn.Dense(self.embed_dim, param_dtype=pd)
        self.token_embed = nn.Embed(self.vocab_size + 1, self.embed_dim, param_dtype=pd)  # last id: start
        self.layer_0 = Recurrence(self.cell, self.hidden, hoist=self.hoist, unroll=self.unroll,
                                  dtype=self.dtype, cell_options=self.cell_options, param_dtype=pd)
        self.head = nn.Dense(self.vocab_size, dtype=as_dtype(self.dtype), param_dtype=pd)

    def _condition(self, cond):
        if jnp.issubdtype(cond.dtype, jnp.integer):
            return self.class_embed(cond).astype(jnp.float32)
        return self.latent(cond.astype(jnp.float32)).astype(jnp.float32)

    def _inputs(self, tokens, c):
        """Cell inputs ``[embed(token), condition]`` for tokens ``(B, T)``."""
        e = self.token_embed(tokens).astype(jnp.float32)
        return jnp.concatenate([e, jnp.broadcast_to(c[:, None], e.shape[:2] + c.shape[-1:])], -1)

    def __call__(self, x, *, targets, train: bool):
        """Teacher forcing: next-token logits ``(B, T, vocab_size)`` float32.

        Args:
          x: the condition: class ids (B,) int or latents (B, D) float.
          targets: (B, T) int tokens; the cell reads them shifted right after the start token.
          train: required for every jaxclf model; both modes compute the same function here.

        No rng; ``sample`` draws from the 'sample' stream.
        """
        del train
        prev = shift_right(targets, self.vocab_size)
        h, _ = self.layer_0(self._inputs(prev, self._condition(x)))
        return self.head(h).astype(jnp.float32)

    def _sample(self, cond, max_len: int, temperature: float):
        c = self._condition(cond)

        def step(module, carry, prev):
            carry, h = module.layer_0.step(carry, module._inputs(prev[:, None], c)[:, 0])
            return carry, module.head(h).astype(jnp.float32)

        carry = zero_carry(self.layer_0.cell, c.shape[0], self.embed_dim + c.shape[-1])
        start = jnp.full((c.shape[0],), self.vocab_size, jnp.int32)
        return autoregress(
            self, step, carry, start,
            max_len=max_len, temperature=temperature, end_token=self.end_token,
        )

    @nn.nowrap
    def sample(self, params, rng, cond, max_len: int, temperature: float = 1.0):
        """Samples ``(tokens (B, max_len), lengths (B,))`` given ``cond`` (see ``autoregress``).

        ``params``: the variables from ``init`` or their ``'params'`` entry. Under ``jit``,
        ``max_len`` and ``temperature`` must be static.
        """
        return _apply_sampler(
            self, params, rng, self._sample, jnp.asarray(cond), max_len, temperature
        )


ATTENTIONS = ("luong", "none")


@with_recurrent_attributes
class Seq2Seq(RecurrentModel):
    """Encoder-decoder with Luong ('general') attention over the encoder's valid steps, or
    none (``attention='none'``: the decoder's state alone feeds the output layer, so all it
    knows of the source is the encoder's final carry, the fixed-size bottleneck of Sutskever
    et al. 2014; everything else is the same model).

    The encoder reads float features ``x`` (B, S, F); the decoder, started from the
    encoder's final forward carry, reads the target tokens shifted right after a start
    token (id ``num_classes``; teacher forcing). Without input feeding the decoder does not
    depend on the attention, so in training it runs as one scan over all target steps and
    attention is one batched product: ``score(s_t, h_j) = s_t^T W_a h_j``,
    ``out_t = tanh(W_c [ctx_t, s_t])``. Returns logits ``(B, T, num_classes)``
    (``num_classes`` is the target vocabulary); the attention weights are sown as
    ``intermediates/attention``. ``sample`` decodes until ``end_token`` or ``max_len``.

    Attributes:
      num_classes: the target vocabulary (the start token is id ``num_classes``).
      end_token: the token that ends a decoded sequence.
      embed_dim: size of the target token embeddings.
      attention: 'luong' (``out_t = tanh(W_c [ctx_t, s_t])``) or 'none' (``tanh(W_c s_t)``:
        no attention parameters, nothing sown).
    """

    num_classes: int = 10
    end_token: int = 0
    attention: str = "luong"
    embed_dim: int = 32

    def setup(self):
        if self.attention not in ATTENTIONS:
            raise ValueError(f"Seq2Seq: unknown attention {self.attention!r}; valid: {', '.join(ATTENTIONS)}")
        pd = self.param_dtype
        self.encoder = self.make_encoder(self.dtype)
        self.embed = nn.Embed(self.num_classes + 1, self.embed_dim, param_dtype=pd)
        self.decoder = Recurrence(self.cell, self.hidden, hoist=self.hoist, unroll=self.unroll,
                                  dtype=self.dtype, cell_options=self.cell_options, param_dtype=pd)
        if self.attention == "luong":
            self.score = nn.Dense(self.hidden * (1 + self.bidirectional), use_bias=False, param_dtype=pd)  # W_a
        self.combine = nn.Dense(self.hidden, param_dtype=pd)
        self.dropout = nn.Dropout(self.dropout_rate)
        self.head = nn.Dense(self.num_classes, dtype=as_dtype(self.dtype), param_dtype=pd)

    def _encode(self, x, lengths, mask, train):
        check_sequences(self, x)
        lengths = checked_lengths(self, resolve_lengths(lengths, mask), x.shape[0], x.shape[1])
        enc, _, carries, _ = self.encoder(x.astype(jnp.float32), lengths, train=train)
        return enc, lengths, carries[0]

    def _attend(self, s, enc, lengths, train):
        """Logits from decoder states ``s`` (B, T, H) attending over ``enc`` (B, S, D) (or
        from ``s`` alone without attention)."""
        if self.attention == "none":
            out = jnp.tanh(self.combine(s))
        else:
            scores = jnp.einsum("btd,bsd->bts", self.score(s), enc)
            weights = masked_softmax(scores, sequence_mask(lengths, enc.shape[1])[:, None, :])
            _sow_attention(self, weights)
            context = jnp.einsum("bts,bsd->btd", weights, enc)
            out = jnp.tanh(self.combine(jnp.concatenate([context, s], -1)))
        out = self.dropout(out, deterministic=not train)
        return self.head(out).astype(jnp.float32)

    def __call__(self, x, *, targets, lengths=None, mask=None, train: bool):
        enc, lengths, carry = self._encode(x, lengths, mask, train)
        s, _ = self.decoder(self.embed(shift_right(targets, self.num_classes)).astype(jnp.float32),
                            initial_carry=carry)
        return self._attend(s, enc, lengths, train)

    __call__.__doc__ = """Teacher forcing: logits (B, T, num_classes) float32 for ``targets``.

        Args:
          x: source features (B, S, F) float.
          targets: (B, T) int target tokens; the decoder reads them shifted right.""" + _SEQUENCE_ARGS + """

        Attention weights (B, T, S) are sown as ``intermediates/attention``; ``sample`` draws from
        the 'sample' rng stream.
        """

    def _sample(self, x, lengths, max_len: int, temperature: float):
        enc, lengths, carry = self._encode(x, lengths, None, False)

        def step(module, carry, prev):
            carry, s = module.decoder.step(carry, module.embed(prev).astype(jnp.float32))
            return carry, module._attend(s[:, None], enc, lengths, False)[:, 0]

        start = jnp.full((x.shape[0],), self.num_classes, jnp.int32)
        return autoregress(
            self, step, carry, start,
            max_len=max_len, temperature=temperature, end_token=self.end_token,
        )

    @nn.nowrap
    def sample(self, params, rng, x, max_len: int, temperature: float = 0.0, lengths=None):
        """Decodes ``(tokens (B, max_len), lengths (B,))`` for sources ``x`` (greedy by
        default; see ``autoregress``). Under ``jit``, ``max_len`` and ``temperature`` are
        static."""
        return _apply_sampler(self, params, rng, self._sample, x, lengths, max_len, temperature)


MODELS = {
    "rnn_classifier": RNNClassifier,
    "rnn": functools.partial(RNNClassifier, cell="rnn"),
    "lstm": functools.partial(RNNClassifier, cell="lstm"),
    "gru": functools.partial(RNNClassifier, cell="gru"),
    "bilstm": functools.partial(RNNClassifier, cell="lstm", bidirectional=True),
    "bigru": functools.partial(RNNClassifier, cell="gru", bidirectional=True),
    "lstm_attention": functools.partial(RNNClassifier, cell="lstm", pooling="attention"),
    "rnn_tagger": RNNTagger,
    "rnn_generator": RNNGenerator,
    "seq2seq": Seq2Seq,
}
