"""2-D convolution written from its definition, as the lecture states it.

The lecture defines the (true) convolution of an image f with a kernel g as

    G[m, n] = (f * g)[m, n] = sum_j sum_k g[j, k] f[m - j, n - k],

which slides a *flipped* kernel over the image. Deep-learning "convolution" layers
(``nn.Conv``, ``lax.conv_general_dilated``, PyTorch's ``Conv2d``) compute the
cross-correlation sum_j sum_k g[j, k] f[m + j, n + k] instead: the kernel is not
flipped. The two differ only by a 180-degree rotation of the kernel, which a learned
kernel absorbs, so layers skip the flip. ``conv2d`` computes either (``flip``).

The implementation is a sum of shifted, strided slices: for each kernel tap (j, k)
take the slice of the padded input that tap sees at every output position and add
``slice @ kernel[j, k]``. That is kh*kw vectorised multiply-adds, no Python loop over
pixels and no call to ``lax.conv``.
"""

from __future__ import annotations

from typing import Sequence, Union

import jax.numpy as jnp

Padding = Union[str, int, Sequence[int], Sequence[Sequence[int]]]


def _pair(v) -> tuple[int, int]:
    """An int or a 2-sequence as a pair (rows, cols)."""
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


def resolve_padding(
    padding: Padding, in_hw: Sequence[int], window: Sequence[int], stride, dilation=1
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Explicit ((top, bottom), (left, right)) padding.

    'valid' pads nothing; 'same' pads so that output = ceil(input / stride), with the
    odd pixel at the bottom/right (the convention of XLA, TensorFlow and flax);
    an int pads all sides, a pair (ph, pw) pads symmetrically per axis, and a pair of
    pairs is taken as given.
    """
    stride, dilation = _pair(stride), _pair(dilation)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0), (0, 0))
        if mode != "same":
            raise ValueError(f"unknown padding {padding!r}; valid: 'valid', 'same', ints")
        pads = []
        for size, k, s, d in zip(in_hw, window, stride, dilation):
            span = (k - 1) * d + 1
            out = -(-size // s)
            total = max((out - 1) * s + span - size, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    a, b = padding
    if isinstance(a, int) and isinstance(b, int):
        return ((a, a), (b, b))
    return (_pair(a), _pair(b))


def shifted_windows(x, window, stride, dilation, pads, pad_value=0.0):
    """Yields ((i, j), slice) for every window tap of a (N, H, W, C) input.

    ``slice[n, r, c]`` is the input pixel that tap (i, j) of the window at output
    position (r, c) sees, after padding with ``pad_value``. Every windowed op (conv,
    max and average pooling) is a reduction over these kh*kw slices.
    """
    (kh, kw), (sh, sw), (dh, dw) = _pair(window), _pair(stride), _pair(dilation)
    x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=pad_value)
    h, w = x.shape[1:3]
    out_h = (h - (kh - 1) * dh - 1) // sh + 1
    out_w = (w - (kw - 1) * dw - 1) // sw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"window {(kh, kw)} (dilation {(dh, dw)}) larger than padded input {(h, w)}")
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * dh, j * dw
            yield (i, j), x[:, r0 : r0 + (out_h - 1) * sh + 1 : sh, c0 : c0 + (out_w - 1) * sw + 1 : sw, :]


def _as_batch(x):
    """(H, W) -> (1, H, W, 1) with a function that undoes it; (N, H, W, C) unchanged."""
    if x.ndim == 2:
        return x[None, :, :, None], lambda y: y[0, :, :, 0]
    if x.ndim == 4:
        return x, lambda y: y
    raise ValueError(f"expected an (H, W) image or an (N, H, W, C) batch, got shape {x.shape}")


def conv2d(x, kernel, *, stride=1, padding: Padding = "valid", dilation=1, flip: bool = False):
    """2-D convolution of an image (H, W) with a kernel (kh, kw), or of a batch
    (N, H, W, C_in) with a kernel (kh, kw, C_in, C_out).

    ``flip=False`` computes the cross-correlation that deep-learning conv layers compute
    (out[m, n] = sum_jk g[j, k] x[m*s + j*d, n*s + k*d]); ``flip=True`` rotates the
    kernel by 180 degrees first, giving the true convolution of the lecture,
    G[m, n] = sum_jk g[j, k] f[m - j, n - k]. For a symmetric kernel they agree.
    ``stride`` and ``dilation`` are ints or (rows, cols) pairs; ``padding`` is 'valid',
    'same', an int, a pair, or ((top, bottom), (left, right)).
    """
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    if x.ndim == 2:
        if kernel.ndim != 2:
            raise ValueError(f"a 2-D image needs a 2-D kernel, got kernel shape {kernel.shape}")
        kernel = kernel[:, :, None, None]
    elif kernel.ndim != 4 or kernel.shape[2] != x.shape[-1]:
        raise ValueError(f"kernel {kernel.shape} does not fit input {x.shape}: want (kh, kw, C_in, C_out)")
    xb, unbatch = _as_batch(x)
    if flip:
        kernel = kernel[::-1, ::-1]
    dtype = jnp.result_type(xb, kernel)
    pads = resolve_padding(padding, xb.shape[1:3], kernel.shape[:2], stride, dilation)
    out = None
    for (i, j), patch in shifted_windows(xb.astype(dtype), kernel.shape[:2], stride, dilation, pads):
        term = jnp.einsum("nhwc,cd->nhwd", patch, kernel[i, j].astype(dtype))
        out = term if out is None else out + term
    return unbatch(out)
