"""Linear classifiers y = w^T x (+ b) and a multi-layer perceptron.

Multi-class linear classification has two strategies:

* ``softmax``: one weight vector per class, trained jointly with softmax
  cross-entropy; the logits compete.
* ``ovr`` (one-vs-rest): K independent binary classifiers, class k against the rest,
  each trained with its own sigmoid cross-entropy; the prediction is the most
  confident classifier. The model marks itself with ``one_vs_rest = True`` so the
  training loss treats each logit as an independent binary problem.

With ``num_classes=1`` the linear model is binary logistic regression (sigmoid output).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxclf.models.layers import compute_dtype, lookup
from jaxclf.models.lenet import _ACTIVATIONS


class Linear(nn.Module):
    """y = w^T x + b on the flattened input."""

    num_classes: int
    strategy: str = "softmax"  # 'softmax' | 'ovr'
    use_bias: bool = True
    dtype: Any = jnp.float32

    @property
    def one_vs_rest(self) -> bool:
        return lookup({"softmax": False, "ovr": True}, "strategy", self.strategy)

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        del train
        _ = self.one_vs_rest  # validate the strategy name at first call
        dtype = compute_dtype(self.dtype)
        x = x.reshape(x.shape[0], -1).astype(dtype)
        return nn.Dense(self.num_classes, use_bias=self.use_bias, dtype=dtype)(x).astype(
            jnp.float32
        )


class MLP(nn.Module):
    """Fully connected layers with a nonlinearity and optional dropout between them.

    ``residual=True`` adds each layer's input to its output where the widths agree
    (h + act(W h), as the MNIST-1D paper's MLP does in its second layer).
    """

    num_classes: int
    hidden: Sequence[int] = (100, 100)
    activation: str = "relu"
    dropout_rate: float = 0.0
    residual: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        act = lookup(_ACTIVATIONS, "activation", self.activation)
        dtype = compute_dtype(self.dtype)
        x = x.reshape(x.shape[0], -1).astype(dtype)
        for width in self.hidden:
            h = act(nn.Dense(width, dtype=dtype)(x))
            x = x + h if self.residual and x.shape[-1] == width else h
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=dtype)(x).astype(jnp.float32)


MODELS = {
    "linear": Linear,
    "linear_ovr": functools.partial(Linear, strategy="ovr"),
    "mlp": MLP,
}
