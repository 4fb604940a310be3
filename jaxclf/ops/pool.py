"""Max and average pooling from their definition: a reduction over each window.

Both reuse ``shifted_windows`` from ``conv``: pooling is a convolution whose
"multiply by the kernel and sum" is replaced by max or mean over the window taps.
Unlike convolution, the stride defaults to the window size (non-overlapping windows,
the 2x2/stride-2 pooling of the lecture).
"""

from __future__ import annotations

import functools

import jax.numpy as jnp

from jaxclf.ops.conv import Padding, _as_batch, _pair, resolve_padding, shifted_windows


def _window_slices(x, window, stride, padding, pad_value):
    """(the kh*kw window slices of x as a batch, a function restoring x's layout)."""
    xb, unbatch = _as_batch(x)
    window = _pair(window)
    stride = window if stride is None else _pair(stride)
    pads = resolve_padding(padding, xb.shape[1:3], window, stride)
    return [s for _, s in shifted_windows(xb, window, stride, 1, pads, pad_value)], unbatch


def max_pool(x, window, stride=None, padding: Padding = "valid"):
    """Maximum over each window of an (H, W) image or (N, H, W, C) batch.

    Padding positions hold -inf (the dtype's minimum for integers), so they never win.
    """
    x = jnp.asarray(x)
    fill = -jnp.inf if jnp.issubdtype(x.dtype, jnp.floating) else jnp.iinfo(x.dtype).min
    slices, unbatch = _window_slices(x, window, stride, padding, fill)
    return unbatch(functools.reduce(jnp.maximum, slices))


def avg_pool(x, window, stride=None, padding: Padding = "valid", count_include_pad: bool = True):
    """Mean over each window of an (H, W) image or (N, H, W, C) batch.

    With ``count_include_pad`` padding counts as zeros in the mean (flax and PyTorch's
    default); without it, each window is divided by the number of real pixels it covers.
    """
    x = jnp.asarray(x)
    x = x.astype(jnp.result_type(x.dtype, jnp.float32))
    slices, unbatch = _window_slices(x, window, stride, padding, 0.0)
    if count_include_pad:
        counts = len(slices)
    else:  # pool an all-ones image of x's size: each window sums to its count of real pixels
        ones = jnp.ones(x.shape[:2] if x.ndim == 2 else (1, *x.shape[1:3], 1), x.dtype)
        counts = unbatch(sum(_window_slices(ones, window, stride, padding, 0.0)[0]))
    return unbatch(sum(slices)) / counts
