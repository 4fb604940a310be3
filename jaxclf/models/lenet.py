"""LeNet-5 (LeCun et al. 1998) in its modern form.

Two 5x5 convolutions with 6 and 16 channels, each followed by a nonlinearity and 2x2
pooling, then dense layers 120-84-classes. At 32x32x1 input and 10 classes this has
61,706 parameters: the first convolution is 'valid' on a 32x32 image as in the paper
(28x28 MNIST is padded to 32x32 by the config's preprocessing, or use
``padding='SAME'`` on the first layer).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from jaxclf.models.layers import compute_dtype, lookup, pool

_ACTIVATIONS: dict[str, Callable] = {"relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid}
_POOLS = {"max": "max", "avg": "avg"}  # kinds of layers.pool


class LeNet5(nn.Module):
    """LeNet-5: conv(6,5x5)-pool-conv(16,5x5)-pool-dense(120)-dense(84)-dense(classes)."""

    num_classes: int = 10
    activation: str = "relu"
    pooling: str = "max"
    dtype: Any = jnp.float32  # compute dtype; parameters stay float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        del train  # No dropout or normalisation: the same function in both modes.
        act = lookup(_ACTIVATIONS, "activation", self.activation)
        kind = lookup(_POOLS, "pooling", self.pooling)
        dtype = compute_dtype(self.dtype)
        x = x.astype(dtype)
        for features in (6, 16):
            x = nn.Conv(features, (5, 5), padding="VALID", dtype=dtype)(x)
            x = pool(act(x), kind, 2, 2)
        x = x.reshape(x.shape[0], -1)
        for features in (120, 84):
            x = act(nn.Dense(features, dtype=dtype)(x))
        return nn.Dense(self.num_classes, dtype=dtype)(x).astype(jnp.float32)


MODELS = {"lenet5": LeNet5}
