"""Convolutions for XLA:CPU: which implementation each convolution of a program gets when it is
lowered for the CPU (``jaxclf.cpu.rewrite``).

A program's convolutions come in three forms for each ``nn.Conv`` (channels last): the
forward pass, and the two convolutions JAX's autodiff writes for its gradients (the input
gradient: the output gradient spread by the strides and correlated with the flipped kernel;
the kernel gradient: the input correlated with the output gradient, batch and channels
swapped). ``match`` recognises each form and the forward convolution it belongs to (checked
against the parameters JAX itself writes for that convolution's gradients). Then:

* oneDNN (``jaxclf.cpu.onednn``) computes all three for float32 2-D convolutions on one
  device: 1.3-5.5x XLA:CPU's kernels on ResNet-20 and VGG layers (benchmarks/RESULTS.md);
* elsewhere (1-D convolutions, bfloat16, several devices, ``JAXCLF_CONV=xla``), inputs with
  at most ``PATCH_CONV_MAX_CHANNELS`` channels or smaller than the kernel are one matrix
  product over image patches (XLA's convolutions vectorise over input channels and run far
  below the matmul rate with 1-3 of them; a 3x3 conv on a 2x2 map made XLA swap operand roles
  and take 1.4 s), and the gradients are convolutions in the channels-last layout, which
  XLA:CPU runs fast inside loop bodies too (its own layouts ran as naive loops inside a
  ``lax.scan``: a 3x3, 16-channel kernel gradient took 1.1 s instead of 6 ms, jax#12868), the
  kernel gradient summed over chunks of ``KERNEL_GRADIENT_CHUNK`` examples when large.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxclf.cpu import onednn
from jaxclf.cpu.rewrite import REWRITES

PATCH_CONV_MAX_CHANNELS = 3
# XLA:CPU's kernel gradient reads the input and the output gradient once per kernel tap; on 16
# examples at a time both stay in cache, and the sum over chunks was 1.2-1.7x faster
# (ResNet-20's and VGG's 3x3 layers at batch 128). Below 2 MiB they fit anyway and the loop
# only costs (LeNet-5: 4% slower).
KERNEL_GRADIENT_CHUNK = 16
KERNEL_GRADIENT_MIN_BYTES = 2 * 2**20
PARTS = ("forward", "input_gradient", "kernel_gradient")


class Spec(NamedTuple):
    """A channels-last convolution: (N, *spatial, C) input, (*window, C, O) kernel."""

    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    strides: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]

    @property
    def y_shape(self) -> tuple[int, ...]:
        out = [(n + lo + hi - k) // s + 1
               for n, k, s, (lo, hi) in zip(self.x_shape[1:-1], self.w_shape[:-2], self.strides, self.pads)]
        return (self.x_shape[0], *out, self.w_shape[-1])


def channels_last(ndim: int) -> lax.ConvDimensionNumbers:
    """NHWC / HWIO / NHWC (any number of spatial axes): the layout ``nn.Conv`` uses."""
    spatial = tuple(range(1, ndim - 1))
    lhs = (0, ndim - 1, *spatial)
    return lax.ConvDimensionNumbers(lhs, (ndim - 1, ndim - 2, *(d - 1 for d in spatial)), lhs)


def _swap(spec: Sequence[int]) -> tuple[int, ...]:
    return (spec[1], spec[0], *spec[2:])


def _conv(x, w, strides, pads, precision=None):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=channels_last(x.ndim), precision=precision)


@functools.lru_cache(maxsize=None)
def _reference(spec: Spec) -> dict[str, tuple]:
    """The geometry JAX writes for each form of ``spec``: its forward pass and the transposes
    of that linear map with respect to the input and to the kernel."""
    x = jax.ShapeDtypeStruct(spec.x_shape, jnp.float32)
    w = jax.ShapeDtypeStruct(spec.w_shape, jnp.float32)
    g = jax.ShapeDtypeStruct(spec.y_shape, jnp.float32)
    f = functools.partial(_conv, strides=spec.strides, pads=spec.pads)
    programs = {
        "forward": jax.make_jaxpr(f)(x, w),
        "input_gradient": jax.make_jaxpr(lambda w, g: jax.linear_transpose(lambda x: f(x, w), x)(g))(w, g),
        "kernel_gradient": jax.make_jaxpr(lambda x, g: jax.linear_transpose(lambda w: f(x, w), w)(g))(x, g),
    }
    return {part: _geometry(next(_conv_eqns(p.jaxpr)).params) for part, p in programs.items()}


def _conv_eqns(jaxpr):
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "conv_general_dilated":
            yield eqn
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            yield from _conv_eqns(sub)


def _geometry(params: dict) -> tuple:
    keys = ("window_strides", "padding", "lhs_dilation", "rhs_dilation", "dimension_numbers",
            "feature_group_count", "batch_group_count")
    return tuple(tuple(map(tuple, params[k])) if k == "padding" else params[k] for k in keys)


def _exact_pads(x, k, s, y, lo) -> tuple[int, int]:
    """The padding (lo, hi) of a forward convolution from x to y, hi as small as it can be
    without going negative (padding past the last window is never read)."""
    return lo, max((y - 1) * s + k - x - lo, 0)


def match(params: dict, lhs_shape, rhs_shape, out_shape) -> tuple[str, Spec] | None:
    """(form, the forward convolution) of a convolution eqn, or None for any other convolution
    (dilated, grouped, other layouts)."""
    if params["feature_group_count"] != 1 or params["batch_group_count"] != 1:
        return None
    ndim, dims = len(lhs_shape), params["dimension_numbers"]
    cl = channels_last(ndim)
    ones = (1,) * (ndim - 2)
    pad_lo = [lo for lo, _ in params["padding"]]
    if dims == cl and params["lhs_dilation"] == ones and params["rhs_dilation"] == ones:
        part, x, w, s = "forward", lhs_shape, rhs_shape, tuple(params["window_strides"])
        pads = tuple(map(tuple, params["padding"]))
    elif dims == (cl.lhs_spec, _swap(cl.rhs_spec), cl.out_spec) and params["window_strides"] == ones:
        part, x, w, s = "input_gradient", out_shape, rhs_shape, tuple(params["lhs_dilation"])
        pads = tuple(_exact_pads(n, k, st, y, k - 1 - lo)
                     for n, k, st, y, lo in zip(x[1:-1], w[:-2], s, lhs_shape[1:-1], pad_lo))
    elif dims == (_swap(cl.lhs_spec), _swap(cl.out_spec), _swap(cl.rhs_spec)) and params["window_strides"] == ones:
        part, x, w, s = "kernel_gradient", lhs_shape, out_shape, tuple(params["rhs_dilation"])
        pads = tuple(_exact_pads(n, k, st, y, lo) for n, k, st, y, lo in zip(x[1:-1], w[:-2], s, rhs_shape[1:-1], pad_lo))
    else:
        return None
    spec = Spec(tuple(x), tuple(w), s, pads)
    if any(lo < 0 for lo, _ in pads) or _reference(spec).get(part) != _geometry(params):
        return None
    return part, spec


# ----------------------------------------------------------------------------- XLA:CPU formulations


def _smaller_than_kernel(spec: Spec) -> bool:
    return any(n < k for n, k in zip(spec.x_shape[1:-1], spec.w_shape[:-2]))


def _use_patches(spec: Spec) -> bool:
    return spec.x_shape[-1] <= PATCH_CONV_MAX_CHANNELS or _smaller_than_kernel(spec)


def _patches(x, window: Sequence[int], strides: Sequence[int], pads):
    """(N, *out, prod(window) * C) patches of an (N, *spatial, C) input, features ordered (last
    axis's tap, ..., first axis's tap, channel). Built one spatial axis at a time from strided
    slices, each stage concatenating whole feature vectors (faster copies than single
    elements); the gradient is a sum of padded slices, which XLA fuses."""
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    for axis, (k, s) in enumerate(zip(window, strides), start=1):
        out = (x.shape[axis] - k) // s + 1
        x = jnp.concatenate([lax.slice_in_dim(x, t, t + (out - 1) * s + 1, s, axis) for t in range(k)], axis=-1)
    return x


def patch_conv(x, w, spec: Spec, precision=None):
    """The forward convolution as one matmul over ``_patches``."""
    n = w.ndim - 2
    kernel = jnp.transpose(w, (*reversed(range(n)), n, n + 1)).reshape(-1, w.shape[-1])
    cols = _patches(x, spec.w_shape[:-2], spec.strides, spec.pads)
    return lax.dot_general(cols, kernel, (((cols.ndim - 1,), (0,)), ((), ())), precision=precision)


def _kernel_gradient_chunks(x_shape, y_shape, itemsize: int) -> int:
    batch = x_shape[0]
    size = (np.prod(x_shape) + np.prod(y_shape)) * itemsize
    if size < KERNEL_GRADIENT_MIN_BYTES or batch % KERNEL_GRADIENT_CHUNK:
        return 1
    return batch // KERNEL_GRADIENT_CHUNK


def channels_last_kernel_gradient(x, g, params: dict, out_dtype):
    """The kernel gradient as a channels-last convolution of the input (channels as its batch,
    examples as its features) with the output gradient (examples in, channels out) dilated by
    the strides, summed in at least float32 over chunks of examples when large."""
    accumulate = jnp.promote_types(x.dtype, jnp.float32)
    ones = (1,) * (x.ndim - 2)
    dims = channels_last(x.ndim)

    def part(x, g):
        x_t = jnp.moveaxis(x, (0, x.ndim - 1), (x.ndim - 1, 0))  # (C, *spatial, N)
        g_t = jnp.moveaxis(g, 0, -2)  # (*out, N, O)
        dw = lax.conv_general_dilated(x_t, g_t, ones, params["padding"], rhs_dilation=params["rhs_dilation"],
                                      dimension_numbers=dims, precision=params["precision"],
                                      preferred_element_type=accumulate)
        return jnp.moveaxis(dw, 0, -2)  # (*window, C, O)

    chunks = _kernel_gradient_chunks(x.shape, g.shape, x.dtype.itemsize)
    if chunks == 1:
        return part(x, g).astype(out_dtype)
    split = lambda a: a.reshape(chunks, a.shape[0] // chunks, *a.shape[1:])  # noqa: E731
    w_shape = (*(s for s in part(x[:1], g[:1]).shape),)
    dw = lax.scan(lambda total, xg: (total + part(*xg), None), jnp.zeros(w_shape, accumulate), (split(x), split(g)))[0]
    return dw.astype(out_dtype)


def channels_last_input_gradient(g, flipped_w, params: dict, out_dtype):
    """The input gradient with the flipped kernel's channels swapped explicitly, so XLA sees a
    channels-last convolution (the same sums as JAX's, in the layout XLA:CPU runs fast)."""
    ones = (1,) * (g.ndim - 2)
    dx = lax.conv_general_dilated(g, jnp.swapaxes(flipped_w, -1, -2), ones, params["padding"],
                                  lhs_dilation=params["lhs_dilation"], dimension_numbers=channels_last(g.ndim),
                                  precision=params["precision"])
    return dx.astype(out_dtype)


def _onednn_applies(spec: Spec, dtypes, context) -> bool:
    return (len(spec.x_shape) == 4 and all(d == jnp.float32 for d in dtypes) and context.num_devices == 1 and not _smaller_than_kernel(spec) and onednn.available())


def select(params: dict, avals_in, avals_out, context):
    """The implementation of a convolution eqn lowered for the CPU (None: XLA's as it is)."""
    lhs, rhs = avals_in
    out = avals_out[0]
    matched = match(params, lhs.shape, rhs.shape, out.shape)
    if matched is None:
        return None
    part, spec = matched
    simple = params["precision"] is None and params["preferred_element_type"] in (None, out.dtype)
    if simple and _onednn_applies(spec, (lhs.dtype, rhs.dtype, out.dtype), context):
        spec2d = onednn.Spec(*spec)
        if part == "input_gradient":  # JAX flipped the kernel; oneDNN wants it as it is
            return lambda g, w: onednn.call(part, spec2d, g, lax.rev(w, (0, 1)))
        return functools.partial(onednn.call, part, spec2d)
    precision = params["precision"]
    if _use_patches(spec):
        x_aval = jax.ShapeDtypeStruct(spec.x_shape, lhs.dtype if part != "input_gradient" else out.dtype)
        if part == "forward":
            return lambda x, w: patch_conv(x, w, spec, precision).astype(out.dtype)
        if part == "input_gradient":
            window = tuple(range(rhs.ndim - 2))

            def input_gradient(g, flipped_w):
                w = lax.rev(flipped_w, window)
                return jax.linear_transpose(lambda x: patch_conv(x, w, spec, precision), x_aval)(g)[0].astype(out.dtype)

            return input_gradient
        w_aval = jax.ShapeDtypeStruct(spec.w_shape, out.dtype)
        return lambda x, g: jax.linear_transpose(lambda w: patch_conv(x, w, spec, precision), w_aval)(g)[0].astype(
            out.dtype)
    if part == "input_gradient":
        return lambda g, w: channels_last_input_gradient(g, w, params, out.dtype)
    if part == "kernel_gradient":
        return lambda x, g: channels_last_kernel_gradient(x, g, params, out.dtype)
    return None


REWRITES["conv_general_dilated"] = select
