"""Max and average pooling from their definition: a reduction over each window.

Both reuse ``shifted_windows`` from ``conv``: pooling is a convolution whose
"multiply by the kernel and sum" is replaced by max or mean over the window taps.
Unlike convolution, the stride defaults to the window size (non-overlapping windows,
the 2x2/stride-2 pooling of the lecture).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from jaxclf.ops.conv import Padding, _as_batch, resolve_padding, shifted_windows


def _pool(x, window, stride, padding, reduce, pad_value):
    """Applies ``reduce`` over the list of window slices; returns (out, pads, batched x)."""
    x = jnp.asarray(x)
    xb, unbatch = _as_batch(x)
    stride = window if stride is None else stride
    window_hw = (window, window) if isinstance(window, int) else tuple(window)
    pads = resolve_padding(padding, xb.shape[1:3], window_hw, stride)
    slices = [s for _, s in shifted_windows(xb, window_hw, stride, 1, pads, pad_value)]
    return unbatch(reduce(slices)), (window_hw, stride, pads, xb, unbatch)


def max_pool(x, window, stride=None, padding: Padding = "valid"):
    """Maximum over each window of an (H, W) image or (N, H, W, C) batch.

    Padding positions hold -inf, so they never win the max.
    """
    fill = -jnp.inf if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating) else jnp.iinfo(jnp.asarray(x).dtype).min
    out, _ = _pool(x, window, stride, padding, lambda s: functools.reduce(jnp.maximum, s), fill)
    return out


def avg_pool(x, window, stride=None, padding: Padding = "valid", count_include_pad: bool = True):
    """Mean over each window of an (H, W) image or (N, H, W, C) batch.

    With ``count_include_pad`` padding counts as zeros in the mean (flax and PyTorch's
    default); without it, each window is divided by the number of real pixels it covers.
    """
    x = jnp.asarray(x)
    x = x.astype(jnp.result_type(x, jnp.float32))
    total, (window_hw, stride, pads, xb, unbatch) = _pool(x, window, stride, padding, sum, 0.0)
    if count_include_pad:
        return total / (window_hw[0] * window_hw[1])
    ones = jnp.ones((1,) + xb.shape[1:3] + (1,), x.dtype)
    counts = sum(s for _, s in shifted_windows(ones, window_hw, stride, 1, pads, 0.0))
    return total / unbatch(counts) if x.ndim == 2 else total / counts
