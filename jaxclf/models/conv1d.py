"""A 1-D convolutional classifier for sequences (B, T, C), e.g. MNIST-1D.

Defaults are the MNIST-1D paper's ConvBase (Greydanus 2020): three convolutions with 25
channels, kernels 5-3-3, stride 2, padding 1, ReLU, then one dense layer over the
flattened features (40 steps -> 19 -> 10 -> 5; 5 x 25 = 125 features).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxclf.models.layers import classify, as_dtype


class Conv1DNet(nn.Module):
    """ReLU 1-D convolutions, then a dense head on the flattened features.

    Attributes:
      num_classes: outputs of the dense head; 0 builds no head (the model returns the
        flattened conv features).
      channels: output channels of every convolution.
      kernels: kernel size of each convolution (one conv per entry).
      stride: stride of every convolution.
      padding: zeros added on each side before every convolution.
      dtype: compute dtype, e.g. 'bfloat16'; the logits are float32 whatever it is.
      param_dtype: dtype of the parameters.
    """

    num_classes: int
    channels: int = 25
    kernels: Sequence[int] = (5, 3, 3)
    stride: int = 2
    padding: int = 1
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool, output: str = "logits"):
        """Classifies a batch of sequences.

        Args:
          x: float sequences (B, T, C), or (B, T) for one channel; cast to ``dtype``.
          train: required for every jaxclf model; both modes compute the same function here.
          output: 'logits' (B, num_classes) float32; 'features': the flattened conv
            features the dense layer 'head' reads; 'stages': a dict of each conv's output.

        Returns what ``output`` names.
        """
        del train
        if np.ndim(x) not in (2, 3):
            raise ValueError(f"Conv1DNet expects sequences of shape (B, T, C) or (B, T); got {tuple(np.shape(x))}")
        dtype = as_dtype(self.dtype)
        x = x.astype(dtype)
        if x.ndim == 2:  # (B, T): one channel
            x = x[..., None]
        stages = {}
        for i, k in enumerate(self.kernels):
            x = nn.relu(nn.Conv(self.channels, (k,), strides=(self.stride,), padding=[(self.padding, self.padding)],
                                dtype=dtype, param_dtype=self.param_dtype)(x))
            stages[f"stage{i + 1}"] = x
        return classify(self, x.reshape(x.shape[0], -1), output, stages=stages)


MODELS = {"conv1d": Conv1DNet}
