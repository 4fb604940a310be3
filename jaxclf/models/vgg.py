"""VGG (Simonyan & Zisserman 2015): stacks of 3x3 convolutions and 2x2 max pools.

Configurations A, B, D, E of the paper (11, 13, 16, 19 weight layers) differ only in
how many 3x3 convs each of the five stages has; ``_bn`` variants add batch norm after
every conv (torchvision keeps the conv bias there). The head is torchvision's: adaptive
average pool to 7x7, then 4096-4096-classes with dropout. Parameter counts at 1000
classes match torchvision exactly, e.g. vgg16 138,357,544 and vgg16_bn 138,365,992.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxclf.models.layers import ConvNormAct, adaptive_avg_pool, classifier_mlp, compute_dtype, pool

# Convs per stage for the paper's configurations A (vgg11), B (13), D (16), E (19).
STAGE_DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


class VGG(nn.Module):
    """A VGG network: stage i has ``stage_depths[i]`` 3x3 convs of ``widths[i]`` channels."""

    num_classes: int = 1000
    stage_depths: Sequence[int] = STAGE_DEPTHS[16]
    widths: Sequence[int] = (64, 128, 256, 512, 512)
    hidden: Sequence[int] = (4096, 4096)
    pool_size: int = 7
    norm: str = "none"
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        dtype = compute_dtype(self.dtype)
        x = x.astype(dtype)
        for depth, width in zip(self.stage_depths, self.widths, strict=True):
            for _ in range(depth):
                x = ConvNormAct(width, 3, norm=self.norm, use_bias=True, dtype=dtype,
                                param_dtype=self.param_dtype)(x, train=train)
            x = pool(x, "max", 2, 2)
        x = adaptive_avg_pool(x, (self.pool_size, self.pool_size))
        return classifier_mlp(x, self.hidden, self.num_classes, dropout_rate=self.dropout_rate,
                              train=train, dropout_first=False, dtype=dtype,
                              param_dtype=self.param_dtype)


MODELS = {
    f"vgg{depth}{suffix}": functools.partial(VGG, stage_depths=stages, norm=norm)
    for depth, stages in STAGE_DEPTHS.items()
    for suffix, norm in (("", "none"), ("_bn", "batch"))
}
