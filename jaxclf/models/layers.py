"""Building blocks shared by the classic CNN families (AlexNet, GoogLeNet, VGG, ResNet).

Padding is explicit and symmetric (k // 2 per side, as PyTorch pads), not 'SAME':
for a stride-2 layer on an even input 'SAME' pads only bottom/right, which shifts
every feature map by half a pixel against the published models.

Two layers have CPU fast paths that compute the same function (checked in
tests/test_perf_numerics.py): ``Conv`` (oneDNN's convolutions on CPU; where XLA computes
them, a matmul over patches where XLA:CPU's convolution is slow, and a backward pass written
in the one convolution layout XLA:CPU runs fast everywhere) and ``tiled_max_pool``
(non-overlapping max pooling without ``reduce_window``'s scatter-based gradient).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxclf import onednn

# PyTorch's BatchNorm2d defaults: running = 0.9 * running + 0.1 * batch, eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    """``table[name]`` with an error naming the valid choices."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]


def compute_dtype(dtype) -> jnp.dtype:
    """A model's ``dtype`` setting ('float32', 'bfloat16' or a dtype) as a jnp dtype.

    Configs carry the name as a string; flax layers and ``astype`` want the dtype.
    """
    return jnp.dtype(dtype)


# ----------------------------------------------------------------------------- convolution

# Where oneDNN does not run a convolution (see ``jaxclf.onednn``: GPU/TPU, bfloat16, several
# devices, or JAXCLF_CONV=xla), it runs as one matrix product over image patches when its
# input has at most this many channels (grey or RGB images: the first layer). XLA:CPU's
# convolutions vectorise over input channels and run far below the matmul rate with 1-3 of
# them. With 6 channels (LeNet's second layer) the patches' gradient, 25 padded slices
# summed, cost more than it saved.
PATCH_CONV_MAX_CHANNELS = 3


def _smaller_than_kernel(lhs_shape, window) -> bool:
    """A 3x3 conv on a 2x2 or 1x1 map (VGG and ResNet-18 on 32x32 images): XLA swaps the
    operands' roles and the 512-channel convs at 2x2 took 1.4 s each (most of VGG-11's step),
    and oneDNN is 1.3x slower than patches there too; so these always take the patches."""
    return any(n < k for n, k in zip(lhs_shape[1:-1], window))


def _use_patches(lhs_shape, window) -> bool:
    """Whether a channels-last convolution that XLA computes is faster as a matmul over patches."""
    return lhs_shape[-1] <= PATCH_CONV_MAX_CHANNELS or _smaller_than_kernel(lhs_shape, window)


def _patches(x, window: Sequence[int], strides: Sequence[int], pads: Sequence[tuple[int, int]]):
    """(N, *out, prod(window) * C) patches of an (N, *spatial, C) input; the features are
    ordered (last axis's tap, ..., first axis's tap, channel), see ``_patch_kernel``.

    Built from strided slices (not ``conv_general_dilated_patches``, itself a convolution),
    one spatial axis at a time: each stage concatenates whole feature vectors of the one
    before, which XLA copies faster than the single elements of a one-stage build (LeNet-5's
    5x5 patches: 1.7 -> 1.35 ms). Their gradient is a sum of padded slices, which XLA fuses.
    """
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    for axis, (k, s) in enumerate(zip(window, strides), start=1):
        out = (x.shape[axis] - k) // s + 1
        x = jnp.concatenate([lax.slice_in_dim(x, t, t + (out - 1) * s + 1, s, axis) for t in range(k)], axis=-1)
    return x


def _patch_kernel(w):
    """An (*window, C, O) kernel as the (prod(window) * C, O) matrix ``_patches`` multiplies."""
    n = w.ndim - 2
    return jnp.transpose(w, (*reversed(range(n)), n, n + 1)).reshape(-1, w.shape[-1])


def _channels_last(ndim: int) -> lax.ConvDimensionNumbers:
    """NHWC / HWIO / NHWC (any number of spatial axes): the layout ``nn.Conv`` uses."""
    spatial = tuple(range(1, ndim - 1))
    lhs = (0, ndim - 1, *spatial)
    return lax.ConvDimensionNumbers(lhs, (ndim - 1, ndim - 2, *(d - 1 for d in spatial)), lhs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def channels_last_conv(x, w, strides: tuple[int, ...], pads: tuple[tuple[int, int], ...], precision=None):
    """``lax.conv_general_dilated`` (channels last, no dilation, one group) whose gradients
    are themselves channels-last convolutions.

    JAX's own gradients are convolutions in other layouts (for the kernel's: batch and
    channels swapped, the output gradient as the kernel). XLA:CPU rewrites those into its
    fast layout in the top-level program but not inside a loop body (``lax.scan``), where
    they run as naive loops: a 3x3, 16-channel kernel gradient took 1.1 s instead of 6 ms
    (jax#12868; benchmarks/). Written here with explicit transposes, the same sums run at
    the fast rate in both places.
    """
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_channels_last(x.ndim),
                                    precision=precision)


def _channels_last_conv_fwd(x, w, strides, pads, precision):
    return channels_last_conv(x, w, strides, pads, precision), (x, w)


def _channels_last_conv_bwd(strides, pads, precision, res, g):
    x, w = res
    n = x.ndim - 2
    dims, ones = _channels_last(x.ndim), (1,) * n
    sizes, window, out = x.shape[1:-1], w.shape[:-2], g.shape[1:-1]
    # Input gradient: the output gradient spread back by the strides (lhs_dilation) and
    # correlated with the flipped kernel, input and output channels swapped.
    w_t = jnp.swapaxes(jnp.flip(w, tuple(range(n))), -1, -2)
    dx_pads = [(k - 1 - lo, size + lo - s * (o - 1) - 1)
               for size, k, s, o, (lo, _) in zip(sizes, window, strides, out, pads)]
    dx = lax.conv_general_dilated(g, w_t, ones, dx_pads, lhs_dilation=strides, dimension_numbers=dims,
                                  precision=precision)
    dw_pads = [(lo, k + s * (o - 1) - size - lo) for size, k, s, o, (lo, _) in zip(sizes, window, strides, out, pads)]
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)  # at least float32 (bfloat16 compute)

    def kernel_gradient(x, g):
        """Sum over examples and positions, as a convolution of the input with channels as
        its batch and examples as its features, by the output gradient (examples in,
        channels out) dilated by the strides; the padding keeps exactly the window."""
        x_t = jnp.moveaxis(x, (0, x.ndim - 1), (x.ndim - 1, 0))  # (C, *spatial, N)
        g_t = jnp.moveaxis(g, 0, -2)  # (*out, N, O)
        dw = lax.conv_general_dilated(x_t, g_t, ones, dw_pads, rhs_dilation=strides, dimension_numbers=dims,
                                      precision=precision, preferred_element_type=acc_dtype)
        return jnp.moveaxis(dw, 0, -2)  # (*window, C, O)

    chunks = _kernel_gradient_chunks(x, g)
    if chunks == 1:
        dw = kernel_gradient(x, g)
    else:  # a running (at least) float32 sum over chunks of examples (see KERNEL_GRADIENT_CHUNK)
        split = lambda a: a.reshape(chunks, a.shape[0] // chunks, *a.shape[1:])  # noqa: E731
        dw = lax.scan(lambda acc, xg: (acc + kernel_gradient(*xg), None),
                      jnp.zeros(w.shape, acc_dtype), (split(x), split(g)))[0]
    return dx.astype(x.dtype), dw.astype(w.dtype)


# XLA:CPU's kernel gradient reads the input and the output gradient once per kernel tap; on
# 16 examples at a time both stay in cache, and the sum over chunks is 1.2-1.7x faster
# (ResNet-20's and VGG's 3x3 layers at batch 128: ResNet-20's step 1.3x). Below 2 MiB of
# input + output gradient they fit anyway and the loop only costs (LeNet-5: 4% slower). On
# GPU/TPU the chunks would run one after another, so only the CPU backend splits. (Measured
# on one device; with the batch sharded over several CPU devices XLA may move data to
# slice it, which has not been timed.)
KERNEL_GRADIENT_CHUNK = 16
KERNEL_GRADIENT_MIN_BYTES = 2 * 2**20


def _kernel_gradient_chunks(x, g) -> int:
    """How many chunks of ``KERNEL_GRADIENT_CHUNK`` examples the kernel gradient sums (1: none)."""
    batch = x.shape[0]
    small = x.size * x.dtype.itemsize + g.size * g.dtype.itemsize < KERNEL_GRADIENT_MIN_BYTES
    if jax.default_backend() != "cpu" or small or batch % KERNEL_GRADIENT_CHUNK:
        return 1
    return batch // KERNEL_GRADIENT_CHUNK


channels_last_conv.defvjp(_channels_last_conv_fwd, _channels_last_conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, **kwargs):
    """``lax.conv_general_dilated`` for ``nn.Conv`` (channels last): oneDNN's convolution on
    CPU (``jaxclf.onednn``), else a matmul over patches where that is faster
    (``_use_patches``), else ``channels_last_conv``; dilated or grouped convolutions go to
    ``lax`` as they are."""
    spatial = rhs.shape[:-2]
    dilated = any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
    other_layout = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != _channels_last(lhs.ndim)
    if dilated or other_layout or feature_group_count != 1 or set(kwargs) - {"precision"}:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                        dimension_numbers, feature_group_count, **kwargs)
    if isinstance(padding, str):
        padding = lax.padtype_to_pads(lhs.shape[1:-1], spatial, window_strides, padding)
    padding = tuple((int(lo), int(hi)) for lo, hi in padding)
    if not _smaller_than_kernel(lhs.shape, spatial) and onednn.use_for(lhs, rhs, padding):
        return onednn.conv(lhs, rhs, tuple(window_strides), padding)
    if not _use_patches(lhs.shape, spatial):
        return channels_last_conv(lhs, rhs, tuple(window_strides), padding, kwargs.get("precision"))
    cols = _patches(lhs, spatial, window_strides, padding)
    return lax.dot_general(cols, _patch_kernel(rhs), (((cols.ndim - 1,), (0,)), ((), ())),
                           precision=kwargs.get("precision"))


Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


# ----------------------------------------------------------------------------- pooling


def _pool_taps(x, window: tuple[int, int], pads):
    """The -inf padded input's strided slice for every tap of non-overlapping windows."""
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
    out = [size // k for size, k in zip(x.shape[1:3], window)]
    for i, j in np.ndindex(*window):
        yield lax.slice(x, (0, i, j, 0), (x.shape[0], i + (out[0] - 1) * window[0] + 1,
                                          j + (out[1] - 1) * window[1] + 1, x.shape[3]),
                        (1, *window, 1))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def tiled_max_pool(x, window: tuple[int, int], pads: tuple[tuple[int, int], tuple[int, int]]):
    """Max pooling over non-overlapping windows (stride = window) of an NHWC batch.

    The same values and gradient as ``nn.max_pool`` (the gradient goes to the first
    maximum of each window in row-major order), from the windows' strided slices:
    XLA:CPU expands ``reduce_window``'s gradient (select-and-scatter) into a scatter
    that cost more than the rest of LeNet's step.
    """
    return functools.reduce(jnp.maximum, _pool_taps(x, window, pads))


def _tiled_max_pool_fwd(x, window, pads):
    y = tiled_max_pool(x, window, pads)
    return y, (x, y)


def _tiled_max_pool_bwd(window, pads, res, g):
    """Each output's gradient goes to the first tap equal to the maximum; the taps are
    interleaved back by a reshape (windows tile the input, so no sums are needed)."""
    x, y = res
    taken = jnp.zeros(y.shape, bool)
    parts = []
    for tap in _pool_taps(x, window, pads):
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
    return (dx[:, top:top + x.shape[1], left:left + x.shape[2]],)


tiled_max_pool.defvjp(_tiled_max_pool_fwd, _tiled_max_pool_bwd)


class GroupNorm(nn.Module):
    """GroupNorm with up to ``num_groups`` groups: gcd(num_groups, channels), so the same
    setting works for 16-channel CIFAR stages and 2048-channel ImageNet ones."""

    num_groups: int = 32
    epsilon: float = 1e-5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    scale_init: Callable = nn.initializers.ones

    @nn.compact
    def __call__(self, x):
        groups = int(np.gcd(self.num_groups, x.shape[-1]))
        return nn.GroupNorm(
            num_groups=groups, epsilon=self.epsilon, dtype=self.dtype,
            param_dtype=self.param_dtype, scale_init=self.scale_init, name="norm",
        )(x)



def make_norm(kind: str, *, train: bool, dtype, param_dtype, epsilon: float = BN_EPSILON,
              scale_init: Callable = nn.initializers.ones, name: Optional[str] = None) -> Callable:
    """A normalisation layer by name; 'none' is the identity.

    Batch norm normalises with batch statistics in training and with the running
    averages (collection 'batch_stats') in evaluation.
    """
    kw = dict(dtype=dtype, param_dtype=param_dtype, epsilon=epsilon, scale_init=scale_init, name=name)
    factories = {
        "batch": lambda: nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, **kw),
        "group": lambda: GroupNorm(**kw),
        "layer": lambda: nn.LayerNorm(**kw),  # over channels, per pixel
        "none": lambda: (lambda x: x),
    }
    return lookup(factories, "norm", kind)()


class ConvNormAct(nn.Module):
    """conv -> norm -> activation, the unit every classic CNN repeats.

    The conv has a bias only without a norm layer (a norm's shift makes it redundant),
    unless ``use_bias`` says otherwise (VGG-BN keeps it, as torchvision does).
    """

    features: int
    kernel: int = 3
    stride: int = 1
    padding: Optional[int] = None  # default k // 2 on every side
    norm: str = "batch"
    act: Optional[Callable] = nn.relu
    use_bias: Optional[bool] = None
    norm_epsilon: float = BN_EPSILON
    norm_scale_init: Callable = nn.initializers.ones
    kernel_init: Callable = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        pad = self.kernel // 2 if self.padding is None else self.padding
        use_bias = self.norm == "none" if self.use_bias is None else self.use_bias
        dtype = compute_dtype(self.dtype)
        x = Conv(
            self.features, (self.kernel, self.kernel), strides=self.stride,
            padding=((pad, pad), (pad, pad)), use_bias=use_bias, kernel_init=self.kernel_init,
            dtype=dtype, param_dtype=self.param_dtype, name="conv",
        )(x)
        x = make_norm(self.norm, train=train, dtype=dtype, param_dtype=self.param_dtype,
                      epsilon=self.norm_epsilon, scale_init=self.norm_scale_init, name="norm")(x)
        return x if self.act is None else self.act(x)


def pool(x, kind: str, window: int, stride: int, padding: int = 0, ceil_mode: bool = False):
    """Max or average pooling with PyTorch's symmetric padding and optional ceil mode.

    Ceil mode (GoogLeNet) adds bottom/right padding so a partial last window still
    produces an output, unless that window would start inside the padding only.
    """
    pads = []
    for size in x.shape[1:3]:
        span = size + 2 * padding - window
        out = (-(-span // stride) if ceil_mode else span // stride) + 1
        if ceil_mode and (out - 1) * stride >= size + padding:
            out -= 1
        pads.append((padding, (out - 1) * stride + window - size - padding))
    if kind == "max" and stride == window:
        return tiled_max_pool(x, (window, window), tuple(pads))
    if kind == "max":
        return nn.max_pool(x, (window, window), (stride, stride), tuple(pads))
    return nn.avg_pool(x, (window, window), (stride, stride), tuple(pads), count_include_pad=True)


def _adaptive_matrix(size: int, out: int) -> np.ndarray:
    """(out, size) averaging weights: row i averages [floor(i*size/out), ceil((i+1)*size/out))."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool(x, output_size: Sequence[int]):
    """PyTorch's AdaptiveAvgPool2d on an NHWC batch: any input size -> ``output_size``.

    The windows are rectangles, so the pooling separates into one averaging matrix per
    axis. A smaller input is replicated (7x7 from 1x1 copies the pixel), which is how
    AlexNet/VGG keep their classifier's size at any resolution.
    """
    rows = jnp.asarray(_adaptive_matrix(x.shape[1], output_size[0]), x.dtype)
    cols = jnp.asarray(_adaptive_matrix(x.shape[2], output_size[1]), x.dtype)
    return jnp.einsum("oh,nhwc,pw->nopc", rows, x, cols)


def global_avg_pool(x):
    """Mean over the spatial axes: (N, H, W, C) -> (N, C)."""
    return jnp.mean(x, axis=(1, 2))


def classifier_mlp(x, widths: Sequence[int], num_classes: int, *, dropout_rate: float, train: bool,
                   dropout_first: bool, dtype, param_dtype,
                   dense_init: Callable = nn.initializers.lecun_normal()):
    """Flatten -> hidden dense+relu layers with dropout -> dense(classes), float32 logits.

    AlexNet and VGG share this head; they differ in where dropout sits. AlexNet
    (``dropout_first``) drops the inputs of each hidden layer (the conv features and
    fc1's output); VGG drops the outputs of each hidden layer (fc1's and fc2's).
    """
    drop = nn.Dropout(dropout_rate, deterministic=not train)
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(widths):
        x = drop(x) if dropout_first else x
        x = nn.relu(nn.Dense(width, dtype=dtype, param_dtype=param_dtype, kernel_init=dense_init,
                             name=f"fc{i + 1}")(x))
        x = x if dropout_first else drop(x)
    return nn.Dense(num_classes, dtype=dtype, param_dtype=param_dtype, kernel_init=dense_init,
                    name="head")(x).astype(jnp.float32)
