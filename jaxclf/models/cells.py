"""Recurrent cells exactly as the lecture writes them, split so the input part can be hoisted.

Every cell here computes ``W [h_{t-1}, x_t] + b`` as ``W_x x_t + b`` plus ``W_h h_{t-1}``
(the same product with ``W = [W_h; W_x]`` split by rows). The split allows hoisting:
``project_inputs`` computes the input part for *all* time steps in one matmul outside
the scan, and ``recur`` does only the sequential part (whether that is faster depends on
the backend; see ``recurrent.Recurrence``). ``__call__`` chains the two for one step,
so each cell is also a plain ``nn.RNNCellBase`` that works with ``nn.RNN``.

Parameters (``G`` gates of ``H`` units, gate blocks concatenated along the output axis):

* ``input``  Dense ``(features, G*H)`` with bias: ``W_x`` and ``b`` of every gate.
* ``hidden`` Dense ``(H, G*H)`` without bias: ``W_h`` of every gate (GRU below differs).

Gate order follows PyTorch (LSTM ``i, f, c~, o``; GRU ``r, u, c~``) so that weights can be
copied across when comparing with it. Conventions that differ from other libraries:

* GRU, ``reset_after=False`` (Cho et al. 2014, the lecture): the reset gate scales ``h``
  *before* the product, ``c~ = Psi(W_xc x + b_c + W_hc (G_r * h))``; ``hidden`` then holds
  only the ``r, u`` blocks and ``hidden_candidate`` holds ``W_hc``.
* GRU, ``reset_after=True`` (PyTorch ``nn.GRU``, flax ``nn.GRUCell``, cuDNN): the gate scales
  the product, ``c~ = Psi(W_xc x + b_xc + G_r * (W_hc h + b_hc))``; ``hidden`` then has a
  bias too (PyTorch's ``b_hh``), which matters only in the candidate block.
* Both GRUs mix states as the lecture does, ``h = G_u * c~ + (1 - G_u) * h``. PyTorch and
  flax write ``h = (1 - z) * n + z * h``: their ``z`` gates the *old* state, so ``z = 1 - G_u``
  (negate the update-gate weights and bias to convert).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxclf.models.layers import as_dtype, lookup

Carry = Any
_ACTIVATIONS: dict[str, Callable] = {"tanh": jnp.tanh, "relu": nn.relu}


def _gate_bias_init(num_gates: int, offsets: dict[int, float]) -> Callable:
    """A bias initializer: zeros except constant ``offsets[g]`` on gate block ``g``."""

    def init(key, shape, dtype=jnp.float32):
        del key
        bias = jnp.zeros((num_gates, shape[0] // num_gates), dtype)
        for gate, value in offsets.items():
            bias = bias.at[gate].set(value)
        return bias.reshape(shape)

    return init


class _SplitCell(nn.RNNCellBase):
    """Shared machinery: input projection, one-step call and zero carry.

    Subclasses set ``num_gates``, build ``input``/``hidden`` in ``setup`` with ``_dense``
    and implement ``recur(carry, projected_x)``.
    """

    features: int
    dtype: Any = jnp.float32  # of the matmuls and gates; carries stay float32
    param_dtype: Any = jnp.float32
    # W_h starts orthogonal times this: every singular value equals it, so at initialisation
    # a linear recurrence scales a state by exactly recurrent_scale per step (< 1 vanishes,
    # > 1 explodes).
    recurrent_scale: float = 1.0
    num_gates: ClassVar[int] = 1

    @nn.nowrap
    def _dense(self, blocks: int, *, recurrent: bool, bias_offsets: dict | None = None):
        """A projection onto ``blocks`` gate blocks; no bias when ``bias_offsets`` is None."""
        init = nn.initializers.orthogonal(self.recurrent_scale) if recurrent else nn.initializers.lecun_normal()
        return nn.Dense(
            blocks * self.features,
            use_bias=bias_offsets is not None,
            dtype=as_dtype(self.dtype),
            param_dtype=self.param_dtype,
            kernel_init=init,
            bias_init=_gate_bias_init(blocks, bias_offsets or {}),
        )

    def setup(self):
        self.input = self._dense(self.num_gates, recurrent=False, bias_offsets={})
        self.hidden = self._dense(self.num_gates, recurrent=True)

    def project_inputs(self, x):
        """``W_x x + b`` for every gate; any leading (batch, time) axes."""
        return self.input(x)

    def __call__(self, carry: Carry, x) -> tuple[Carry, Any]:
        """One step from raw input ``x`` (the straightforward, unhoisted cell)."""
        return self.recur(carry, self.project_inputs(x))

    @nn.nowrap
    def initialize_carry(self, rng, input_shape: tuple[int, ...]) -> Carry:
        del rng
        return jnp.zeros(input_shape[:-1] + (self.features,), jnp.float32)

    @property
    def num_feature_axes(self) -> int:
        return 1


class VanillaCell(_SplitCell):
    """``h_t = Phi(W_h h_{t-1} + W_x x_t + b)``; output ``h_t``."""

    activation: str = "tanh"

    def recur(self, h, xp):
        h = lookup(_ACTIVATIONS, "activation", self.activation)(self.hidden(h) + xp)
        return h, h


class LSTMCell(_SplitCell):
    """The lecture's LSTM; carry ``(c, h)``, output ``h``.

    ``G_{i,f,o} = sigma(W [h, x] + b)``, ``c~ = Psi(W_c [h, x] + b_c)``,
    ``c = G_i * c~ + G_f * c_prev``, ``h = G_o * Psi(c)``. The forget-gate bias starts at
    ``forget_bias`` (1 by default, Jozefowicz et al. 2015) so that memory is kept early on.
    """

    num_gates: ClassVar[int] = 4
    forget_bias: float = 1.0

    def setup(self):
        self.input = self._dense(4, recurrent=False, bias_offsets={1: self.forget_bias})
        self.hidden = self._dense(4, recurrent=True)

    def recur(self, carry, xp):
        c, h = carry
        i, f, g, o = jnp.split(self.hidden(h) + xp, 4, axis=-1)
        c = nn.sigmoid(i) * jnp.tanh(g) + nn.sigmoid(f) * c
        h = nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    @nn.nowrap
    def initialize_carry(self, rng, input_shape):
        h = super().initialize_carry(rng, input_shape)
        return h, h


class GRUCell(_SplitCell):
    """The GRU; ``reset_after`` picks where the reset gate acts (see module docstring).

    ``G_{r,u} = sigma(W [h, x] + b)``, ``c~ = Psi(W_c [G_r * h, x] + b_c)`` (lecture) or
    ``Psi(W_xc x + b_xc + G_r * (W_hc h + b_hc))`` (``reset_after``),
    ``h = G_u * c~ + (1 - G_u) * h_prev``. The update-gate bias starts at ``update_bias``
    (0 by default, as in PyTorch and flax); a negative one keeps the old state early on, the
    GRU's counterpart of the LSTM's forget-gate bias (sigma(-3) = 0.05 replaced per step).
    """

    num_gates: ClassVar[int] = 3
    reset_after: bool = False
    update_bias: float = 0.0

    def setup(self):
        self.input = self._dense(3, recurrent=False, bias_offsets={1: self.update_bias})
        if self.reset_after:  # PyTorch's b_hh: only its candidate block is not redundant.
            self.hidden = self._dense(3, recurrent=True, bias_offsets={})
        else:
            self.hidden = self._dense(2, recurrent=True)
            self.hidden_candidate = self._dense(1, recurrent=True)

    def recur(self, h, xp):
        xr, xu, xc = jnp.split(xp, 3, axis=-1)
        if self.reset_after:
            hr, hu, hc = jnp.split(self.hidden(h), 3, axis=-1)
            r, u = nn.sigmoid(xr + hr), nn.sigmoid(xu + hu)
            candidate = jnp.tanh(xc + r * hc)
        else:
            hr, hu = jnp.split(self.hidden(h), 2, axis=-1)
            r, u = nn.sigmoid(xr + hr), nn.sigmoid(xu + hu)
            candidate = jnp.tanh(xc + self.hidden_candidate(r * h))
        h = u * candidate + (1.0 - u) * h
        return h, h


# name -> (cell class, fixed settings); the class's other plain-valued fields are options.
_CELLS: dict[str, tuple[type, dict]] = {
    "rnn": (VanillaCell, {}),
    "lstm": (LSTMCell, {}),
    "gru": (GRUCell, {"reset_after": False}),
    "gru_reset_after": (GRUCell, {"reset_after": True}),
    "flax_lstm": (nn.LSTMCell, {}),
    "flax_optimized_lstm": (nn.OptimizedLSTMCell, {}),
    "flax_gru": (nn.GRUCell, {}),
    "flax_simple": (nn.SimpleCell, {}),
}
CELL_NAMES = tuple(sorted(_CELLS))


def cell_options(name: str) -> tuple[str, ...]:
    """The settings a config can give the cell ``name`` (``model.cell_options``): its fields
    with a bool, number or string default, other than the size and dtype."""
    cls, fixed = lookup(_CELLS, "cell", name)
    fields = dataclasses.fields(cls)
    plain = (bool, int, float, str)
    skip = ("features", "dtype", "param_dtype", *fixed)
    return tuple(f.name for f in fields if f.name not in skip and isinstance(f.default, plain))


def make_cell(name: str, features: int, dtype: Any = jnp.float32, options: Mapping | None = None,
              param_dtype: Any = jnp.float32) -> nn.RNNCellBase:
    """The cell registered as ``name`` with ``features`` hidden units (unbound); ``dtype`` is
    its compute dtype, ``param_dtype`` that of its parameters, ``options`` its other settings
    (e.g. ``{'forget_bias': 3.0}``)."""
    cls, fixed = lookup(_CELLS, "cell", name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(cell_options(name)))
    if unknown:
        raise ValueError(f"cell {name!r} has no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(cell_options(name)) or 'none'}")
    return cls(features, dtype=as_dtype(dtype), param_dtype=jnp.dtype(param_dtype), **fixed, **options)


def can_hoist(cell: nn.Module) -> bool:
    """Whether ``cell`` splits into ``project_inputs`` + ``recur`` (flax's cells do not)."""
    return isinstance(cell, _SplitCell)


def zero_carry(cell: nn.RNNCellBase, batch: int, in_features: int) -> Carry:
    """The cell's initial carry for a batch (all the cells here start from zeros)."""
    return cell.initialize_carry(jax.random.key(0), (batch, in_features))
