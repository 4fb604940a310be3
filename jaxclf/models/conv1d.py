"""A 1-D convolutional classifier for sequences (B, T, C), e.g. MNIST-1D.

Defaults are the MNIST-1D paper's ConvBase (Greydanus 2020): three convolutions with 25
channels, kernels 5-3-3, stride 2, padding 1, ReLU, then one dense layer over the
flattened features (40 steps -> 19 -> 10 -> 5; 5 x 25 = 125 features).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxclf.models.layers import compute_dtype


class Conv1DNet(nn.Module):
    num_classes: int
    channels: int = 25
    kernels: Sequence[int] = (5, 3, 3)
    stride: int = 2
    padding: int = 1
    dtype: Any = jnp.float32  # compute dtype; parameters stay float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        del train
        dtype = compute_dtype(self.dtype)
        x = x.astype(dtype)
        if x.ndim == 2:  # (B, T): one channel
            x = x[..., None]
        for k in self.kernels:
            x = nn.relu(nn.Conv(self.channels, (k,), strides=(self.stride,), padding=[(self.padding, self.padding)], dtype=dtype)(x))
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(self.num_classes, dtype=dtype)(x).astype(jnp.float32)


MODELS = {"conv1d": Conv1DNet}
