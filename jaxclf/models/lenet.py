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

_ACTIVATIONS: dict[str, Callable] = {"relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid}
_POOLS: dict[str, Callable] = {"max": nn.max_pool, "avg": nn.avg_pool}


def lookup(table: dict[str, Any], kind: str, name: str) -> Any:
    """``table[name]`` with an error naming the valid choices."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]


class LeNet5(nn.Module):
    """LeNet-5: conv(6,5x5)-pool-conv(16,5x5)-pool-dense(120)-dense(84)-dense(classes)."""

    num_classes: int = 10
    activation: str = "relu"
    pooling: str = "max"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        del train  # No dropout or normalisation: the same function in both modes.
        act = lookup(_ACTIVATIONS, "activation", self.activation)
        pool = lookup(_POOLS, "pooling", self.pooling)
        x = x.astype(self.dtype)
        for features in (6, 16):
            x = nn.Conv(features, (5, 5), padding="VALID", dtype=self.dtype)(x)
            x = pool(act(x), (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for features in (120, 84):
            x = act(nn.Dense(features, dtype=self.dtype)(x))
        return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


MODELS = {"lenet5": LeNet5}
