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
from jaxclf.models.layers import lookup

PAD_ID = 0  # jaxclf.data.text.PAD_ID (the models do not import the data package)

# 'flatten' concatenates every step's state: its size would depend on the padded width.
_POOLS = {k: v for k, v in recurrent._POOLS.items() if k != "flatten"}


def text_lengths(tokens, lengths=None, mask=None):
    """``lengths`` or the mask's sum; else the count of non-padding ids, at least 1."""
    resolved = recurrent.resolve_lengths(lengths, mask)
    if resolved is None:
        resolved = jnp.maximum(jnp.sum(tokens != PAD_ID, axis=1, dtype=jnp.int32), 1)
    return resolved


def _embed(module: nn.Module, tokens, dim: int):
    return nn.Embed(module.vocab_size, dim, dtype=jnp.dtype(module.dtype), name="embed")(tokens)


class TextRNN(nn.Module):
    """Embed, then ``recurrent.RNNClassifier`` (encode, pool over valid steps, classify).

    ``dropout_rate`` applies to the embeddings, between stacked layers and before the head.
    """

    num_classes: int = 2
    vocab_size: int = 20_000
    embed_dim: int = 128
    cell: str = "lstm"
    hidden: int = 128
    num_layers: int = 1
    bidirectional: bool = True
    pooling: str = "max"
    dropout_rate: float = 0.0
    hoist: bool = True
    unroll: int = 1
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, tokens, *, lengths=None, mask=None, train: bool = False):
        lookup(_POOLS, "pooling", self.pooling)
        lengths = text_lengths(tokens, lengths, mask)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(_embed(self, tokens, self.embed_dim))
        return recurrent.RNNClassifier(
            self.num_classes, self.cell, self.hidden, self.num_layers, self.bidirectional, self.pooling,
            self.dropout_rate, self.hoist, self.unroll, self.dtype, name="classifier",
        )(x, lengths=lengths, train=train)


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

    @nn.compact
    def __call__(self, x):
        w = self.width
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (w, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        padded = jnp.pad(x, ((0, 0), (w - 1, w - 1), (0, 0)))
        steps = x.shape[1] + w - 1
        windows = jnp.stack([padded[:, k : k + steps] for k in range(w)], axis=2)  # (B, T+w-1, w, E)
        y = jnp.einsum("btke,kef->btf", windows.astype(self.dtype), kernel.astype(self.dtype))
        return y + bias.astype(self.dtype)


class TextCNN(nn.Module):
    """Kim 2014: wide convolutions of several widths, max over valid time, dropout, head."""

    num_classes: int = 2
    vocab_size: int = 20_000
    embed_dim: int = 128
    widths: Sequence[int] = (3, 4, 5)
    features: int = 100
    dropout_rate: float = 0.5
    dtype: Any = "float32"

    @nn.compact
    def __call__(self, tokens, *, lengths=None, mask=None, train: bool = False):
        dtype = jnp.dtype(self.dtype)
        lengths = text_lengths(tokens, lengths, mask)
        steps = tokens.shape[1]
        # Zero embeddings at padding are exactly the convolution's own zero padding.
        x = _embed(self, tokens, self.embed_dim) * recurrent.sequence_mask(lengths, steps)[..., None].astype(dtype)
        pooled = []
        for w in self.widths:
            y = nn.relu(WideConv(self.features, w, dtype, name=f"conv_{w}")(x))  # y[j]: tokens j-w+1..j
            touches_text = recurrent.sequence_mask(lengths + w - 1, steps + w - 1)[..., None]
            pooled.append(jnp.max(jnp.where(touches_text, y, -jnp.inf), axis=1))
        z = nn.Dropout(self.dropout_rate, deterministic=not train)(jnp.concatenate(pooled, -1))
        return nn.Dense(self.num_classes, dtype=dtype, name="head")(z).astype(jnp.float32)


MODELS = {"text_rnn": TextRNN, "text_cnn": TextCNN}
