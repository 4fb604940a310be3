"""LeNet-5 (LeCun et al. 1998) in its modern form.

Two 5x5 convolutions with 6 and 16 channels, each followed by a nonlinearity and 2x2
pooling, then dense layers 120-84-classes. At 32x32x1 input and 10 classes this has
61,706 parameters: the first convolution is 'valid' on a 32x32 image as in the paper
(28x28 MNIST is padded to 32x32 by the config's preprocessing, or use
``padding='SAME'`` on the first layer).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from jaxclf.models.layers import check_images, classify, as_dtype, lookup, pool

_ACTIVATIONS: dict[str, Callable] = {"relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid}
_POOLS = {"max": "max", "avg": "avg"}  # kinds of layers.pool


class LeNet5(nn.Module):
    """LeNet-5: conv(6,5x5)-pool-conv(16,5x5)-pool-dense(120)-dense(84)-dense(classes).

    Attributes:
      num_classes: outputs of the dense head; 0 builds no head (the model returns the 84 features).
      activation: 'relu', 'tanh' or 'sigmoid'.
      pooling: 'max' or 'avg'.
      dtype: compute dtype, e.g. 'bfloat16'; the logits are float32 whatever it is.
      param_dtype: dtype of the parameters.
    """

    num_classes: int = 10
    activation: str = "relu"
    pooling: str = "max"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool, output: str = "logits"):
        """Classifies a batch of images.

        Args:
          x: images (N, H, W, C), 32x32 as in the paper, cast to ``dtype``.
          train: required for every jaxclf model; LeNet-5 has no dropout or normalisation,
            so both modes compute the same function.
          output: 'logits' (N, num_classes) float32; 'features': the 84 activations the
            dense layer 'head' reads; 'stages': a dict of the two conv stages' pooled maps.

        No collection besides 'params' and no rng. Returns what ``output`` names.
        """
        del train
        check_images(self, x)
        act = lookup(_ACTIVATIONS, "activation", self.activation)
        kind = lookup(_POOLS, "pooling", self.pooling)
        dtype = as_dtype(self.dtype)
        dense = functools.partial(nn.Dense, dtype=dtype, param_dtype=self.param_dtype)
        x = x.astype(dtype)
        stages = {}
        for i, features in enumerate((6, 16)):
            x = nn.Conv(features, (5, 5), padding="VALID", dtype=dtype, param_dtype=self.param_dtype)(x)
            stages[f"stage{i + 1}"] = x = pool(act(x), kind, 2, 2)
        x = x.reshape(x.shape[0], -1)
        for features in (120, 84):
            x = act(dense(features)(x))
        return classify(self, x, output, stages=stages)


MODELS = {"lenet5": LeNet5}
