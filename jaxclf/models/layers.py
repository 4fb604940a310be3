"""Building blocks shared by the classic CNN families (AlexNet, GoogLeNet, VGG, ResNet).

Padding is explicit and symmetric (k // 2 per side, as PyTorch pads), not 'SAME':
for a stride-2 layer on an even input 'SAME' pads only bottom/right, which shifts
every feature map by half a pixel against the published models.

Everything here is plain Flax (``nn.Conv``, ``nn.max_pool``, ``nn.BatchNorm``): how XLA
runs it on a CPU is ``jaxclf.cpu``'s business, not the models'.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# PyTorch's BatchNorm2d defaults: running = 0.9 * running + 0.1 * batch, eps 1e-5.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    """``table[name]`` with an error naming the valid choices."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]


def as_dtype(dtype) -> jnp.dtype:
    """A model's ``dtype`` setting ('float32', 'bfloat16' or a dtype) as a jnp dtype.

    Configs carry the name as a string; flax layers and ``astype`` want the dtype.
    """
    return jnp.dtype(dtype)


class DeepCNN(nn.Module):
    """The attributes the deep CNNs (AlexNet, VGG, GoogLeNet, ResNet) share; each family
    subclasses it and documents them with its own.

    Attributes:
      remat: rematerialise each block (recompute its activations in the backward pass).
      dtype: compute dtype, e.g. 'bfloat16'; the logits are float32 whatever it is.
      param_dtype: dtype of the parameters.
    """

    remat: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32


OUTPUTS = ("logits", "features", "stages")


def check_output(module: nn.Module, output: str) -> str:
    """``output`` validated: 'logits', 'features' (the head's input) or 'stages' (a dict)."""
    if output not in OUTPUTS:
        raise ValueError(f"{type(module).__name__}: unknown output {output!r}; valid: {', '.join(OUTPUTS)}")
    return output


def check_images(module: nn.Module, x) -> None:
    """Refuses anything but an (N, H, W, C) batch, naming the model and the shape given."""
    if np.ndim(x) != 4:
        raise ValueError(f"{type(module).__name__} expects images of shape (N, H, W, C); "
                         f"got an array of shape {tuple(np.shape(x))}")


def classify(module: nn.Module, z, output: str, *, name: str = "head", stages=None,
             kernel_init: Callable = nn.initializers.lecun_normal()):
    """The end of every classifier: ``stages`` (a dict) for output 'stages', the pooled
    features ``z`` for 'features' or ``num_classes=0``, else float32 logits of a dense head
    ``name`` on ``z`` (so logits == head(features) exactly)."""
    if check_output(module, output) == "stages":
        return stages
    if output == "features" or module.num_classes == 0:
        return z
    return nn.Dense(module.num_classes, dtype=as_dtype(module.dtype), param_dtype=module.param_dtype,
                    kernel_init=kernel_init, name=name)(z).astype(jnp.float32)


def maybe_remat(block: type, remat: bool, static_argnums: tuple[int, ...] = (2,)) -> type:
    """``block`` rematerialised (``nn.remat``: its activations are recomputed in the backward
    pass instead of stored) when ``remat`` is set. ``static_argnums`` count ``self`` as 0, so
    the default makes ``train`` in ``__call__(self, x, train)`` static."""
    return nn.remat(block, static_argnums=static_argnums) if remat else block


def is_traced(x) -> bool:
    """Whether ``x`` is a tracer (its values unknown until run): checks on values skip it."""
    return isinstance(x, jax.core.Tracer)


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
    def __call__(self, x, train: bool):
        pad = self.kernel // 2 if self.padding is None else self.padding
        use_bias = self.norm == "none" if self.use_bias is None else self.use_bias
        dtype = as_dtype(self.dtype)
        x = nn.Conv(
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


def classifier_mlp(x, widths: Sequence[int], *, dropout_rate: float, train: bool, dropout_first: bool,
                   dtype, param_dtype, dense_init: Callable = nn.initializers.lecun_normal()):
    """Flatten -> hidden dense+relu layers with dropout: the input of the final dense head.

    AlexNet and VGG share this; they differ in where dropout sits. AlexNet
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
    return x


def head_pool_size(x, pool_size: Optional[int], default: int) -> int:
    """The side of the map the classifier reads: ``pool_size``, or when it is None the
    ``default`` (torchvision's) unless the last feature map is smaller: then the map's own
    side, so a 32x32 input's 1x1 map is not replicated into a ``default``-squared head."""
    if pool_size is not None:
        return pool_size
    return min(default, x.shape[1], x.shape[2])


def pooled_mlp_head(module, x, stages, output: str, *, default_side: int, dropout_first: bool, train: bool, dtype):
    """AlexNet's and VGG's classifier on feature map ``x``: adaptive average pool to
    ``module.pool_size`` (None: torchvision's ``default_side`` unless the map is smaller),
    ``module.hidden`` dense layers with dropout, then ``classify``."""
    side = head_pool_size(x, module.pool_size, default_side)
    z = classifier_mlp(adaptive_avg_pool(x, (side, side)), module.hidden, dropout_rate=module.dropout_rate, train=train,
                       dropout_first=dropout_first, dtype=dtype, param_dtype=module.param_dtype)
    return classify(module, z, output, stages=stages)

