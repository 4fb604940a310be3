"""ResNet (He et al. 2015): stages of residual blocks y = relu(F(x) + shortcut(x)).

One class covers both layouts of the paper:

* ImageNet (sec. 3.4, Table 1; torchvision's layout): 7x7/2 stem conv + 3x3/2 max
  pool, four stages of 64-128-256-512 channels, basic blocks (two 3x3 convs) for
  resnet18/34 and bottleneck blocks (1x1 -> 3x3 -> 1x1 with 4x expansion) for
  resnet50/101/152. Bottlenecks put the stride on the 3x3 conv (torchvision's "v1.5"),
  not on the first 1x1 as the paper did. Shortcuts that change shape are 1x1 conv + BN
  projections (option B).
* CIFAR (sec. 4.2): a 3x3 stem conv with 16 channels, three stages of 16-32-64 channels
  with n basic blocks each (6n + 2 layers: resnet20/32/44/56/110), and parameter-free
  shortcuts (option A): subsample by the stride, zero-pad the new channels.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxclf.models.layers import (DeepCNN, ConvNormAct, check_images, classify, as_dtype, global_avg_pool, lookup,
                                  maybe_remat, pool)


def zero_pad_shortcut(x, features: int, stride: int):
    """Option A: strided subsampling plus zero channels appended; no parameters."""
    x = x[:, ::stride, ::stride, :]
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, features - x.shape[-1])))


class _Residual(nn.Module):
    """Shared residual wiring: subclasses define ``branch`` (the convs) and ``expansion``."""

    width: int
    stride: int = 1
    shortcut: str = "projection"  # 'projection' (option B) | 'zero_pad' (option A)
    norm: str = "batch"
    zero_init_residual: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    expansion = 1

    def conv(self, features, kernel, stride=1, *, act=True, last=False, name=None):
        """A ConvNormAct with this block's settings; ``last`` may start its norm at zero,
        so the block starts as the identity (Goyal et al. 2017)."""
        scale_init = nn.initializers.zeros if (last and self.zero_init_residual) else nn.initializers.ones
        return ConvNormAct(features, kernel, stride, norm=self.norm, act=nn.relu if act else None,
                           norm_scale_init=scale_init, dtype=self.dtype,
                           param_dtype=self.param_dtype, name=name)

    @nn.compact
    def __call__(self, x, train: bool):
        zero_pad = lookup({"projection": False, "zero_pad": True}, "shortcut", self.shortcut)
        out_features = self.width * self.expansion
        y = self.branch(x, train)
        if self.stride != 1 or x.shape[-1] != out_features:
            if zero_pad:
                x = zero_pad_shortcut(x, out_features, self.stride)
            else:
                x = self.conv(out_features, 1, self.stride, act=False, name="downsample")(x, train)
        return nn.relu(y + x)


class BasicBlock(_Residual):
    """3x3 conv -> 3x3 conv (ResNet-18/34 and the CIFAR ResNets)."""

    def branch(self, x, train):
        y = self.conv(self.width, 3, self.stride)(x, train)
        return self.conv(self.width, 3, act=False, last=True)(y, train)


class Bottleneck(_Residual):
    """1x1 reduce -> 3x3 (strided) -> 1x1 expand by 4 (ResNet-50/101/152)."""

    expansion = 4

    def branch(self, x, train):
        y = self.conv(self.width, 1)(x, train)
        y = self.conv(self.width, 3, self.stride)(y, train)
        return self.conv(self.width * 4, 1, act=False, last=True)(y, train)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(DeepCNN):
    """A residual network; ``stage_sizes`` blocks per stage, stage i with ``widths[i]``.

    Every stage after the first halves the resolution in its first block.

    Attributes:
      num_classes: outputs of the dense head; 0 builds no head (the model returns the pooled features).
      stage_sizes: residual blocks in each stage.
      block: 'basic' (two 3x3 convs) or 'bottleneck' (1x1 -> 3x3 -> 1x1, 4x expansion).
      widths: channels of each stage (a bottleneck stage outputs 4x as many).
      stem: 'imagenet' (7x7/2 conv + 3x3/2 max pool) or 'cifar' (one 3x3 conv).
      shortcut: 'projection' (1x1 conv + norm, option B) or 'zero_pad' (option A, no parameters).
      norm: 'batch', 'group', 'layer' or 'none'.
      zero_init_residual: start each block's last norm scale at 0 (blocks start as the identity).
      remat: rematerialise each residual block (recompute its activations in the backward pass).
      dtype: compute dtype, e.g. 'bfloat16'; the logits are float32 whatever it is.
      param_dtype: dtype of the parameters.
    """

    num_classes: int = 1000
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: str = "basic"
    widths: Sequence[int] = (64, 128, 256, 512)
    stem: str = "imagenet"
    shortcut: str = "projection"
    norm: str = "batch"
    zero_init_residual: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool, output: str = "logits"):
        """Classifies a batch of images.

        Args:
          x: images (N, H, W, C), any float or integer dtype (cast to ``dtype``).
          train: True normalises with batch statistics and updates the running averages in
            the 'batch_stats' collection (apply with ``mutable=['batch_stats']``); False uses
            them. Required: a forgotten flag must not silently train in evaluation mode.
          output: 'logits' (N, num_classes) float32; 'features': the globally pooled features
            (N, widths[-1] * expansion) that the head 'head' reads, in ``dtype``; 'stages':
            a dict of the stem's and each stage's output maps ('stem', 'stage1', ...).

        No rng is used. Returns what ``output`` names (the features when ``num_classes`` is 0).
        """
        check_images(self, x)
        block = maybe_remat(lookup(BLOCKS, "block", self.block), self.remat)
        dtype = as_dtype(self.dtype)
        common = dict(norm=self.norm, dtype=dtype, param_dtype=self.param_dtype)
        x = x.astype(dtype)
        if lookup({"imagenet": True, "cifar": False}, "stem", self.stem):
            x = ConvNormAct(self.widths[0], 7, 2, **common, name="stem")(x, train)
            x = pool(x, "max", 3, 2, padding=1)
        else:
            x = ConvNormAct(self.widths[0], 3, **common, name="stem")(x, train)
        stages = {"stem": x}
        for i, (size, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for j in range(size):
                x = block(width, stride=2 if (i > 0 and j == 0) else 1, shortcut=self.shortcut,
                          zero_init_residual=self.zero_init_residual, **common,
                          name=f"stage{i + 1}_block{j + 1}")(x, train)
            stages[f"stage{i + 1}"] = x
        return classify(self, global_avg_pool(x), output, stages=stages)


_IMAGENET = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
             101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}
CifarResNet = functools.partial(ResNet, num_classes=10, block="basic", widths=(16, 32, 64),
                                stem="cifar", shortcut="zero_pad")

MODELS = {
    **{f"resnet{d}": functools.partial(ResNet, block=b, stage_sizes=s) for d, (b, s) in _IMAGENET.items()},
    # 6n + 2 layers: n basic blocks in each of three stages.
    **{f"resnet{6 * n + 2}": functools.partial(CifarResNet, stage_sizes=(n, n, n)) for n in (3, 5, 7, 9, 18)},
}
