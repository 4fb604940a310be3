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

from jaxclf.models.layers import classify, as_dtype, lookup
from jaxclf.models.lenet import _ACTIVATIONS


class Linear(nn.Module):
    """y = w^T x + b on the flattened input (the dense layer 'head').

    Attributes:
      num_classes: outputs (1: binary logistic regression); 0 builds no layer (the model
        returns the flattened input).
      strategy: 'softmax' (logits compete) or 'ovr' (one-vs-rest: K independent binary classifiers).
      use_bias: add the bias b.
      dtype: compute dtype, e.g. 'bfloat16'; the logits are float32 whatever it is.
      param_dtype: dtype of the parameters.
    """

    num_classes: int
    strategy: str = "softmax"  # 'softmax' | 'ovr'
    use_bias: bool = True
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def one_vs_rest(self) -> bool:
        return lookup({"softmax": False, "ovr": True}, "strategy", self.strategy)

    @nn.compact
    def __call__(self, x, *, train: bool, output: str = "logits"):
        """Linear logits of a batch.

        Args:
          x: a batch (N, ...) of any shape, flattened to (N, D) and cast to ``dtype``.
          train: required for every jaxclf model; both modes compute the same function here.
          output: 'logits' (N, num_classes) float32; 'features': the flattened input;
            'stages': an empty dict (no hidden layer).

        Returns what ``output`` names.
        """
        del train
        _ = self.one_vs_rest  # validate the strategy name at first call
        dtype = as_dtype(self.dtype)
        x = x.reshape(x.shape[0], -1).astype(dtype)
        if output == "logits" and self.num_classes:
            return nn.Dense(self.num_classes, use_bias=self.use_bias, dtype=dtype, param_dtype=self.param_dtype,
                            name="head")(x).astype(jnp.float32)
        return classify(self, x, output, stages={})


class MLP(nn.Module):
    """Fully connected layers with a nonlinearity and optional dropout between them.

    ``residual=True`` adds each layer's input to its output where the widths agree
    (h + act(W h), as the MNIST-1D paper's MLP does in its second layer).

    Attributes:
      num_classes: outputs of the dense head; 0 builds no head (the model returns the last
        hidden layer's output).
      hidden: widths of the hidden layers.
      activation: 'relu', 'tanh' or 'sigmoid'.
      dropout_rate: dropout after each hidden layer (rng 'dropout' in training).
      residual: add each hidden layer's input to its output where the widths agree.
      dtype: compute dtype, e.g. 'bfloat16'; the logits are float32 whatever it is.
      param_dtype: dtype of the parameters.
    """

    num_classes: int
    hidden: Sequence[int] = (100, 100)
    activation: str = "relu"
    dropout_rate: float = 0.0
    residual: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool, output: str = "logits"):
        """Classifies a batch.

        Args:
          x: a batch (N, ...) of any shape, flattened to (N, D) and cast to ``dtype``.
          train: True applies dropout (rng 'dropout'). Required: a forgotten flag must not
            silently train in evaluation mode.
          output: 'logits' (N, num_classes) float32; 'features': the last hidden layer's
            output (after dropout), which the dense layer 'head' reads; 'stages': a dict of
            every hidden layer's output ('stage1', ...).

        Returns what ``output`` names.
        """
        act = lookup(_ACTIVATIONS, "activation", self.activation)
        dtype = as_dtype(self.dtype)
        x = x.reshape(x.shape[0], -1).astype(dtype)
        stages = {}
        for i, width in enumerate(self.hidden):
            h = act(nn.Dense(width, dtype=dtype, param_dtype=self.param_dtype)(x))
            x = x + h if self.residual and x.shape[-1] == width else h
            stages[f"stage{i + 1}"] = x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return classify(self, x, output, stages=stages)


MODELS = {
    "linear": Linear,
    "linear_ovr": functools.partial(Linear, strategy="ovr"),
    "mlp": MLP,
}
