"""Text classifiers over token ids ``(batch, time)`` int, as ``jaxclf.data.text`` makes them.

Id 0 is padding. ``lengths`` (or a prefix ``mask``) gives each text's number of valid
tokens; without either, the lengths are the number of non-padding ids (at least 1), so
a padded batch means the same with or without them. Padding never changes a result.

* ``text_rnn``: embeddings, then the recurrent encoder and pooling of
  ``jaxclf.models.recurrent`` (any cell, stacked, bidirectional; pooling 'last', 'mean',
  'max' or 'attention' over the valid steps), dropout, a dense head.
* ``text_cnn``: Kim 2014 (randomly initialised embeddings, "CNN-rand"): parallel 1-D
  convolutions of widths 3, 4, 5 with 100 ReLU feature maps each, max over time, dropout
  0.5, a dense head. The convolutions are *wide* (``w - 1`` zeros on each side) over
  embeddings zeroed at padding, and the max runs over the outputs that touch a valid
  token, so a one-token text has windows too and the padded width never matters
  (``WideConv``: the same parameters as ``nn.Conv``, computed as one matmul, faster on CPU).

``dtype`` is the compute dtype of the embeddings, cells, convolutions and head (parameters,
recurrent carries and logits stay float32, as in ``jaxclf.models.recurrent``).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxclf.models import recurrent
from jaxclf.models.layers import check_output, classify, lookup

PAD_ID = 0  # jaxclf.data.text.PAD_ID (the models do not import the data package)

# 'flatten' concatenates every step's state: its size would depend on the padded width.
_POOLS = {k: v for k, v in recurrent._POOLS.items() if k != "flatten"}


def text_lengths(tokens, lengths=None, mask=None):
    """``lengths`` or the mask's sum; else the count of non-padding ids, at least 1."""
    resolved = recurrent.resolve_lengths(lengths, mask)
    if resolved is None:
        resolved = jnp.maximum(jnp.sum(tokens != PAD_ID, axis=1, dtype=jnp.int32), 1)
    return resolved


def check_tokens(module: nn.Module, tokens) -> None:
    """Refuses anything but integer token ids (B, T), naming the model."""
    if jnp.ndim(tokens) != 2 or not jnp.issubdtype(jnp.result_type(tokens), jnp.integer):
        raise TypeError(f"{type(module).__name__} expects integer token ids of shape (B, T); got a "
                        f"{jnp.result_type(tokens)} array of shape {tuple(jnp.shape(tokens))}")


def _embed(module: nn.Module, tokens, dim: int):
    return nn.Embed(module.vocab_size, dim, dtype=jnp.dtype(module.dtype), param_dtype=module.param_dtype,
                    name="embed")(tokens)


_TOKEN_ARGS = """
          tokens: (B, T) int token ids, 0 for padding.
          lengths: (B,) int valid tokens of each text, in [0, T]; default: the count of
            non-padding ids (at least 1).
          mask: (B, T) prefix mask, instead of ``lengths``.
          train: True applies dropout (rng 'dropout'). Required: a forgotten flag must not
            silently train in evaluation mode."""


@recurrent.with_recurrent_attributes
class TextRNN(recurrent.RecurrentModel):
    """Embed, then ``recurrent.RNNClassifier`` (encode, pool over valid steps, classify).

    ``dropout_rate`` applies to the embeddings, between stacked layers and before the head.

    Attributes:
      num_classes: outputs of the head 'classifier/head'; 0 builds no head (the model returns
        the pooled features).
      vocab_size: token ids in [0, vocab_size).
      embed_dim: size of the token embeddings.
      pooling: 'last', 'mean', 'max' or 'attention' over the valid steps.
    """

    num_classes: int = 2
    vocab_size: int = 20_000
    embed_dim: int = 128
    bidirectional: bool = True
    pooling: str = "max"
    dtype: Any = "float32"
    param_dtype: Any = "float32"

    @nn.compact
    def __call__(self, tokens, *, lengths=None, mask=None, train: bool, output: str = "logits"):
        lookup(_POOLS, "pooling", self.pooling)
        check_tokens(self, tokens)
        lengths = text_lengths(tokens, lengths, mask)
        embedded = _embed(self, tokens, self.embed_dim).astype(jnp.float32)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(embedded)
        out = recurrent.RNNClassifier(num_classes=self.num_classes, pooling=self.pooling, **recurrent.shared_attributes(self),
                                      name="classifier")(x, lengths=lengths, train=train, output=output)
        return {"embed": embedded, **out} if output == "stages" else out

    __call__.__doc__ = """Classifies a batch of texts.

        Args:""" + _TOKEN_ARGS + """
          output: 'logits' (B, num_classes) float32; 'features': the pooled features the
            head reads; 'stages': a dict of the embeddings ('embed') and every recurrent
            layer's outputs ('layer_0', ...).

        Returns what ``output`` names (the features when ``num_classes`` is 0).
        """


class WideConv(nn.Module):
    """A wide 1-D convolution ``(B, T, E) -> (B, T + w - 1, F)``: output ``j`` reads tokens
    ``j - w + 1 .. j`` (zeros outside), i.e. ``nn.Conv(F, (w,), padding=[(w - 1, w - 1)])``
    with the same parameters (``kernel`` ``(w, E, F)``, ``bias``).

    Computed as one matmul over the stacked shifted inputs: on CPU, XLA's convolution
    gradient measured 5.7x slower (widths 3/4/5, batch 64, 256 tokens, 128 -> 100).
    """

    features: int
    width: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        w = self.width
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (w, x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        padded = jnp.pad(x, ((0, 0), (w - 1, w - 1), (0, 0)))
        steps = x.shape[1] + w - 1
        windows = jnp.stack([padded[:, k : k + steps] for k in range(w)], axis=2)  # (B, T+w-1, w, E)
        y = jnp.einsum("btke,kef->btf", windows.astype(self.dtype), kernel.astype(self.dtype))
        return y + bias.astype(self.dtype)


class TextCNN(nn.Module):
    """Kim 2014: wide convolutions of several widths, max over valid time, dropout, head.

    Attributes:
      num_classes: outputs of the dense head; 0 builds no head (the model returns the
        max-pooled features).
      vocab_size: token ids in [0, vocab_size).
      embed_dim: size of the token embeddings.
      widths: the convolutions' widths (one convolution each).
      features: feature maps of each convolution.
      dropout_rate: dropout before the head (rng 'dropout' in training).
      dtype: compute dtype of the embeddings, convolutions and head; the logits are float32.
      param_dtype: dtype of the parameters.
    """

    num_classes: int = 2
    vocab_size: int = 20_000
    embed_dim: int = 128
    widths: Sequence[int] = (3, 4, 5)
    features: int = 100
    dropout_rate: float = 0.5
    dtype: Any = "float32"
    param_dtype: Any = "float32"

    @nn.compact
    def __call__(self, tokens, *, lengths=None, mask=None, train: bool, output: str = "logits"):
        check_tokens(self, tokens)
        check_output(self, output)
        dtype = jnp.dtype(self.dtype)
        lengths = recurrent.checked_lengths(self, text_lengths(tokens, lengths, mask), tokens.shape[0], tokens.shape[1])
        steps = tokens.shape[1]
        # Zero embeddings at padding are exactly the convolution's own zero padding.
        x = _embed(self, tokens, self.embed_dim) * recurrent.sequence_mask(lengths, steps)[..., None].astype(dtype)
        pooled, stages = [], {"embed": x}
        for w in self.widths:
            y = nn.relu(WideConv(self.features, w, dtype, self.param_dtype, name=f"conv_{w}")(x))  # y[j]: tokens j-w+1..j
            stages[f"conv_{w}"] = y
            touches_text = recurrent.sequence_mask(lengths + w - 1, steps + w - 1)[..., None]
            pooled.append(jnp.max(jnp.where(touches_text, y, -jnp.inf), axis=1))
        z = jnp.concatenate(pooled, -1)
        if output == "logits" and self.num_classes:
            z = nn.Dropout(self.dropout_rate, deterministic=not train)(z)
        return classify(self, z, output, stages=stages)

    __call__.__doc__ = """Classifies a batch of texts.

        Args:""" + _TOKEN_ARGS + """
          output: 'logits' (B, num_classes) float32; 'features': the max-pooled features
            (before the dropout) the dense layer 'head' reads; 'stages': a dict of the
            embeddings ('embed') and each convolution's outputs ('conv_3', ...).

        Returns what ``output`` names (the features when ``num_classes`` is 0).
        """


MODELS = {"text_rnn": TextRNN, "text_cnn": TextCNN}
