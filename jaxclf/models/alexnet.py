"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) in torchvision's single-tower form.

Five convolutions (11x11/4, 5x5, then three 3x3) with max pooling after the 1st, 2nd
and 5th, then three dense layers with dropout. The original's two-GPU grouping and
local response normalisation are dropped, and the widths are 64-192-384-256-256 (the
"one weird trick" variant, Krizhevsky 2014) -- the model published parameter counts and
pretrained weights refer to: 61,100,840 parameters at 1000 classes.

Before the classifier an adaptive average pool brings any feature map to 6x6, so the
classifier has the same size at every input resolution. The smallest input is 63x63.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxclf.models.layers import ConvNormAct, adaptive_avg_pool, classifier_mlp, compute_dtype, pool


class AlexNet(nn.Module):
    """AlexNet; ``widths``, ``hidden`` and ``pool_size`` shrink it for tests and small data."""

    num_classes: int = 1000
    widths: Sequence[int] = (64, 192, 384, 256, 256)
    hidden: Sequence[int] = (4096, 4096)
    pool_size: int = 6
    dropout_rate: float = 0.5
    norm: str = "none"  # 'batch' gives a modern BN variant; the original has none
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        dtype = compute_dtype(self.dtype)
        x = x.astype(dtype)
        # (kernel, stride, padding, max-pool after)
        layout = ((11, 4, 2, True), (5, 1, 2, True), (3, 1, 1, False), (3, 1, 1, False), (3, 1, 1, True))
        for width, (k, s, p, pooled) in zip(self.widths, layout, strict=True):
            x = ConvNormAct(width, k, s, p, norm=self.norm, dtype=dtype,
                            param_dtype=self.param_dtype)(x, train=train)
            x = pool(x, "max", 3, 2) if pooled else x
        x = adaptive_avg_pool(x, (self.pool_size, self.pool_size))
        return classifier_mlp(x, self.hidden, self.num_classes, dropout_rate=self.dropout_rate,
                              train=train, dropout_first=True, dtype=dtype,
                              param_dtype=self.param_dtype)


MODELS = {"alexnet": AlexNet}
