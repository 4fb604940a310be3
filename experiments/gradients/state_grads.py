"""dLoss/dh_t: how much the loss read after the last step feels the state t steps earlier.

The library's ``Recurrence`` scans a cell with no hook into its states, so the gradient with
respect to each state is taken the standard way: re-run the same cell (same parameters) in a
scan that adds a perturbation ``delta_t`` (zero) to the carry after step t, and
differentiate the loss with respect to the perturbations, ``dL/d delta_t = dL/d carry_t``.
That re-run is only valid while it matches the model: ``tests/test_gradient_task.py``
compares ``model_logits`` with the model's own logits for every cell.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxclf.models.cells import make_cell, zero_carry


def state_gradients(step: Callable, readout: Callable, carry0: Any, xs: jax.Array) -> Any:
    """``dL/d carry_t`` for every step t, a pytree like ``carry0`` with a leading time axis.

    ``step(carry, x_t) -> carry`` is one recurrence step, ``readout(carry_T-1) -> scalar``
    the loss of the final state, ``xs`` the inputs, time-major ``(T, ...)``. Entry t is the
    gradient with respect to the carry *after* reading ``x_t``.
    """

    def loss(deltas):
        def body(carry, inputs):
            x, delta = inputs
            return jax.tree.map(jnp.add, step(carry, x), delta), None

        final, _ = jax.lax.scan(body, carry0, (xs, deltas))
        return readout(final)

    zeros = jax.tree.map(lambda c: jnp.zeros((xs.shape[0], *c.shape), c.dtype), carry0)
    return jax.grad(loss)(zeros)


def per_step_norms(grads: Any) -> jax.Array:
    """``(T, batch)`` L2 norms of a ``state_gradients`` result over all carry parts."""
    squares = [jnp.sum(jnp.square(g), axis=tuple(range(2, g.ndim))) for g in jax.tree.leaves(grads)]
    return jnp.sqrt(sum(squares))


def _output(carry):
    """The hidden state h of a carry: LSTM carries ``(c, h)``, the others ``h``."""
    return carry[1] if isinstance(carry, tuple) else carry


def model_functions(cell: str, hidden: int, num_classes: int, params: dict, labels) -> tuple[Callable, Callable]:
    """``(step, readout)`` of a one-layer, forward, last-state ``RNNClassifier``'s parameters.

    The readout is the *summed* cross-entropy over the batch, so each sequence's state
    gradient is that of its own loss (a mean would divide every one by the batch size).
    """
    module = make_cell(cell, hidden)
    cell_params = {"params": params["encoder"]["layer_0"]["fwd"]["cell"]}
    head, head_params = nn.Dense(num_classes), {"params": params["head"]}

    def step(carry, x):
        return module.apply(cell_params, carry, x)[0]

    def readout(carry):
        logits = head.apply(head_params, _output(carry))
        return jnp.sum(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    return step, readout


def model_logits(cell: str, hidden: int, num_classes: int, params: dict, x: jax.Array) -> jax.Array:
    """The classifier's logits recomputed by this module's scan (batch-major ``x``)."""
    step, _ = model_functions(cell, hidden, num_classes, params, jnp.zeros(x.shape[0], jnp.int32))
    carry0 = zero_carry(make_cell(cell, hidden), x.shape[0], x.shape[-1])
    final, _ = jax.lax.scan(lambda c, xt: (step(c, xt), None), carry0, jnp.swapaxes(x, 0, 1))
    return nn.Dense(num_classes).apply({"params": params["head"]}, _output(final))


def relative_profile(cell: str, hidden: int, num_classes: int, params: dict, x, labels) -> jax.Array:
    """Median over sequences of ``||dL/dh_t|| / ||dL/dh_{T-1}||``, shape ``(T,)``.

    Dividing by the last step's norm removes the loss's overall scale (which goes to zero
    as a run fits its data) and leaves what the recurrence does to the signal going back.
    """
    step, readout = model_functions(cell, hidden, num_classes, params, labels)
    carry0 = zero_carry(make_cell(cell, hidden), x.shape[0], x.shape[-1])
    norms = per_step_norms(state_gradients(step, readout, carry0, jnp.swapaxes(x, 0, 1)))
    return jnp.median(norms / jnp.maximum(norms[-1:], 1e-30), axis=1)
