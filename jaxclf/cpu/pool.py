"""Max pooling over non-overlapping windows (stride = window, LeNet's and VGG's 2x2 pools) for
XLA:CPU, from the windows' strided slices.

XLA:CPU expands ``reduce_window``'s gradient (select-and-scatter) into a scatter that cost
more than the rest of LeNet-5's step. Windows that tile the input need no scatter: each
output's gradient goes to the first tap equal to the maximum (row-major, as select-and-scatter
with ``ge`` picks it), and the taps are interleaved back by a reshape. The forward pass is
rewritten the same way so that XLA computes the maximum once for both.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxclf.cpu.rewrite import REWRITES


def _tiles(window, strides, padding, shape) -> tuple[tuple[int, int], tuple] | None:
    """(spatial window, spatial pads) of an NHWC pooling whose windows tile the input, or None."""
    if len(shape) != 4 or tuple(window) != tuple(strides) or window[0] != 1 or window[3] != 1:
        return None
    if tuple(padding[0]) != (0, 0) or tuple(padding[3]) != (0, 0):
        return None
    return (int(window[1]), int(window[2])), (tuple(padding[1]), tuple(padding[2]))


def _taps(x, window, pads):
    """The -inf padded input's strided slice for every tap of the windows."""
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    out = [size // k for size, k in zip(x.shape[1:3], window)]
    for i, j in np.ndindex(*window):
        yield lax.slice(x, (0, i, j, 0), (x.shape[0], i + (out[0] - 1) * window[0] + 1,
                                          j + (out[1] - 1) * window[1] + 1, x.shape[3]), (1, *window, 1))


def tiled_max_pool(x, window, pads):
    return functools.reduce(jnp.maximum, _taps(x, window, pads))


def tiled_max_pool_gradient(g, x, window, pads):
    """The gradient of ``tiled_max_pool`` at ``x`` for the output gradient ``g``."""
    y = tiled_max_pool(x, window, pads)
    taken = jnp.zeros(y.shape, bool)
    parts = []
    for tap in _taps(x, window, pads):
        first = (tap == y) & ~taken
        taken = taken | first
        parts.append(jnp.where(first, g, jnp.zeros((), g.dtype)))
    n, oh, ow, c = y.shape
    dx = jnp.stack(parts, axis=3).reshape(n, oh, ow, *window, c)
    dx = jnp.transpose(dx, (0, 1, 3, 2, 4, 5)).reshape(n, oh * window[0], ow * window[1], c)
    # Rows/columns past the last whole window get no gradient; then drop the padding.
    padded = [size + lo + hi for size, (lo, hi) in zip(x.shape[1:3], pads)]
    dx = jnp.pad(dx, ((0, 0), (0, padded[0] - dx.shape[1]), (0, padded[1] - dx.shape[2]), (0, 0)))
    (top, _), (left, _) = pads
    return dx[:, top:top + x.shape[1], left:left + x.shape[2]]


def select_forward(params: dict, avals_in, avals_out, context):
    if any(d != 1 for d in (*params["base_dilation"], *params["window_dilation"])):
        return None
    tiles = _tiles(params["window_dimensions"], params["window_strides"], params["padding"], avals_in[0].shape)
    return None if tiles is None else (lambda x: tiled_max_pool(x, *tiles))


def select_gradient(params: dict, avals_in, avals_out, context):
    if params["select_prim"] is not lax.ge_p:
        return None
    tiles = _tiles(params["window_dimensions"], params["window_strides"], params["padding"], avals_in[1].shape)
    return None if tiles is None else (lambda g, x: tiled_max_pool_gradient(g, x, *tiles))


REWRITES["reduce_window_max"] = select_forward
REWRITES["select_and_scatter_add"] = select_gradient
