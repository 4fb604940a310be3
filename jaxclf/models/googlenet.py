"""GoogLeNet / Inception v1 (Szegedy et al. 2014), in torchvision's batch-norm form.

Nine Inception modules, each concatenating four parallel branches: a 1x1 conv, a 1x1
reduction then 3x3 conv, a 1x1 reduction then a larger conv, and 3x3 max pool then 1x1
projection. Every conv is conv -> BN (eps 1e-3) -> relu, as torchvision's GoogLeNet
(the paper predates batch norm). torchvision's "5x5" branch uses a 3x3 kernel (a
quirk kept for its pretrained weights); ``wide_kernel=5`` gives the paper's 5x5.

Two auxiliary classifiers (after inception 4a and 4d) add gradient to the middle of
the network during training; they are on with ``aux_logits=True``. The model returns the
logits in both modes; in training the aux heads' logits are sown as
``intermediates/aux_logits`` (a tuple of two), which the training loss reads. Parameters at 1000
classes: 6,624,904 without the aux heads (torchvision's published figure: its
pretrained model drops the heads), 13,004,888 with them.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxclf.models.layers import (DeepCNN, ConvNormAct, adaptive_avg_pool, check_images, classify, as_dtype,
                                  global_avg_pool, maybe_remat, pool)

# (1x1, 3x3 reduce, 3x3, wide reduce, wide, pool proj) per module, from the paper's Table 1.
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
GOOGLENET_BN_EPSILON = 1e-3


class Inception(nn.Module):
    """Four parallel branches concatenated along channels; the output keeps the size."""

    widths: Sequence[int]
    wide_kernel: int = 3
    conv: Any = ConvNormAct

    @nn.compact
    def __call__(self, x, train: bool):
        c1, r3, c3, rw, cw, proj = self.widths
        conv = self.conv
        b1 = conv(c1, 1)(x, train=train)
        b2 = conv(c3, 3)(conv(r3, 1)(x, train=train), train=train)
        b3 = conv(cw, self.wide_kernel)(conv(rw, 1)(x, train=train), train=train)
        b4 = conv(proj, 1)(pool(x, "max", 3, 1, padding=1, ceil_mode=True), train=train)
        return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class AuxHead(nn.Module):
    """Auxiliary classifier: pool to 4x4 -> 1x1 conv (128) -> fc 1024 -> dropout -> fc."""

    num_classes: int
    dropout_rate: float = 0.7
    conv: Any = ConvNormAct
    widths: Sequence[int] = (128, 1024)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool):
        x = self.conv(self.widths[0], 1)(adaptive_avg_pool(x, (4, 4)), train=train)
        x = nn.relu(nn.Dense(self.widths[1], dtype=self.dtype, param_dtype=self.param_dtype)(x.reshape(x.shape[0], -1)))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)(x).astype(jnp.float32)


class GoogLeNet(DeepCNN):
    """Inception v1; the aux heads' parameters exist whenever ``aux_logits`` is set.

    Attributes:
      num_classes: outputs of the dense head 'fc' (and the aux heads); 0 builds no head (the
        model returns the pooled features).
      aux_logits: build the two auxiliary classifiers; in training their logits are sown as
        ``intermediates/aux_logits``.
      wide_kernel: kernel of the "5x5" branch: 3 (torchvision's weights) or 5 (the paper).
      norm: 'batch' (torchvision), 'group', 'layer' or 'none'.
      dropout_rate: dropout before the head (rng 'dropout' in training).
      aux_dropout_rate: dropout in the aux heads.
      width_mult: scales every conv and aux-head width (small models for tests).
      remat: rematerialise each Inception module (recompute its activations in the backward pass).
      dtype: compute dtype, e.g. 'bfloat16'; the logits are float32 whatever it is.
      param_dtype: dtype of the parameters.
    """

    num_classes: int = 1000
    aux_logits: bool = False
    wide_kernel: int = 3
    norm: str = "batch"
    dropout_rate: float = 0.2
    aux_dropout_rate: float = 0.7
    width_mult: float = 1.0

    @nn.compact
    def __call__(self, x, *, train: bool, output: str = "logits"):
        """Classifies a batch of images.

        Args:
          x: images (N, H, W, C), cast to ``dtype``.
          train: True applies dropout (rng 'dropout'), batch statistics (collection
            'batch_stats', apply with ``mutable=['batch_stats']``) and, with ``aux_logits``,
            the aux heads, whose logits are sown as ``intermediates/aux_logits`` (apply with
            ``mutable=['batch_stats', 'intermediates']`` to read them). Required: a forgotten
            flag must not silently train in evaluation mode.
          output: 'logits' (N, num_classes) float32 in both modes; 'features': the globally
            pooled features the head 'fc' reads (before its dropout); 'stages': a dict of the
            maps after each downsampling block ('stage1' .. 'stage5').

        Returns what ``output`` names (the features when ``num_classes`` is 0).
        """
        check_images(self, x)
        dtype = as_dtype(self.dtype)
        conv = functools.partial(ConvNormAct, norm=self.norm, norm_epsilon=GOOGLENET_BN_EPSILON,
                                 dtype=dtype, param_dtype=self.param_dtype)
        inception = maybe_remat(Inception, self.remat)

        def w(width):
            return max(1, round(width * self.width_mult))

        def block(name):
            return inception(tuple(map(w, INCEPTION[name])), self.wide_kernel, conv, name=f"inception{name}")

        def max_pool(y, window=3):
            return pool(y, "max", window, 2, ceil_mode=True)

        aux_head = functools.partial(AuxHead, self.num_classes, self.aux_dropout_rate, conv,
                                     (w(128), w(1024)), dtype, self.param_dtype)
        # Aux heads run in training; at init too, so that their parameters always exist.
        run_aux = self.aux_logits and self.num_classes > 0 and (train or self.is_initializing())

        def aux(name, y):
            if run_aux:
                logits = aux_head(name=name)(y, train)
                if not self.is_initializing():  # init returns every collection: keep them clean
                    self.sow("intermediates", "aux_logits", logits)

        x = x.astype(dtype)
        stages = {"stage1": max_pool(conv(w(64), 7, 2, name="conv1")(x, train))}
        x = conv(w(64), 1, name="conv2")(stages["stage1"], train)
        stages["stage2"] = x = max_pool(conv(w(192), 3, name="conv3")(x, train))
        x = block("3b")(block("3a")(x, train), train)
        stages["stage3"] = x
        x = block("4a")(max_pool(x), train)
        aux("aux1", x)
        for name in ("4b", "4c", "4d"):
            x = block(name)(x, train)
        aux("aux2", x)
        stages["stage4"] = x = block("4e")(x, train)
        x = block("5b")(block("5a")(max_pool(x, 2), train), train)
        stages["stage5"] = x
        z = global_avg_pool(x)
        if output == "logits" and self.num_classes:
            z = nn.Dropout(self.dropout_rate, deterministic=not train)(z)
        return classify(self, z, output, name="fc", stages=stages)


MODELS = {"googlenet": GoogLeNet}
