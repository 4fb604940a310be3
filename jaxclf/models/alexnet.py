"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) in torchvision's single-tower form.

Five convolutions (11x11/4, 5x5, then three 3x3) with max pooling after the 1st, 2nd
and 5th, then three dense layers with dropout. The original's two-GPU grouping and
local response normalisation are dropped, and the widths are 64-192-384-256-256 (the
"one weird trick" variant, Krizhevsky 2014) -- the model published parameter counts and
pretrained weights refer to: 61,100,840 parameters at 1000 classes.

Before the classifier an adaptive average pool brings any feature map to 6x6, so the
classifier has the same size at every input resolution. The smallest input is 63x63.
"""

from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn

from jaxclf.models.layers import (DeepCNN, ConvNormAct, check_images, as_dtype, pooled_mlp_head,
                                  maybe_remat, pool)


class AlexNet(DeepCNN):
    """AlexNet; ``widths``, ``hidden`` and ``pool_size`` shrink it for tests and small data.

    Attributes:
      num_classes: outputs of the dense head; 0 builds no head (the model returns the features).
      widths: channels of the five convolutions.
      hidden: widths of the hidden dense layers before the head.
      pool_size: side of the adaptive average pool before the classifier; None: 6 (torchvision)
        unless the last map is smaller (then its own side: no replicated pixels).
      dropout_rate: dropout before each hidden dense layer (rng 'dropout' in training).
      norm: 'none' (the original) or 'batch' (a modern variant).
      remat: rematerialise each conv layer (recompute its activations in the backward pass).
      dtype: compute dtype, e.g. 'bfloat16'; the logits are float32 whatever it is.
      param_dtype: dtype of the parameters.
    """

    num_classes: int = 1000
    widths: Sequence[int] = (64, 192, 384, 256, 256)
    hidden: Sequence[int] = (4096, 4096)
    pool_size: Optional[int] = None
    dropout_rate: float = 0.5
    norm: str = "none"

    @nn.compact
    def __call__(self, x, *, train: bool, output: str = "logits"):
        """Classifies a batch of images.

        Args:
          x: images (N, H, W, C), at least 63x63, cast to ``dtype``.
          train: True applies dropout (rng 'dropout') and, with ``norm='batch'``, batch
            statistics (collection 'batch_stats', apply with ``mutable=['batch_stats']``).
            Required: a forgotten flag must not silently train in evaluation mode.
          output: 'logits' (N, num_classes) float32; 'features': the last hidden layer's
            output (the input of the dense layer 'head'); 'stages': a dict of each conv
            layer's output ('stage1' .. 'stage5', after its max pool where it has one).

        Returns what ``output`` names (the features when ``num_classes`` is 0).
        """
        check_images(self, x)
        conv = maybe_remat(ConvNormAct, self.remat)
        dtype = as_dtype(self.dtype)
        x = x.astype(dtype)
        stages = {}
        # (kernel, stride, padding, max-pool after)
        layout = ((11, 4, 2, True), (5, 1, 2, True), (3, 1, 1, False), (3, 1, 1, False), (3, 1, 1, True))
        for i, (width, (k, s, p, pooled)) in enumerate(zip(self.widths, layout, strict=True)):
            x = conv(width, k, s, p, norm=self.norm, dtype=dtype, param_dtype=self.param_dtype,
                     name=f"ConvNormAct_{i}")(x, train)
            x = pool(x, "max", 3, 2) if pooled else x
            stages[f"stage{i + 1}"] = x
        return pooled_mlp_head(self, x, stages, output, default_side=6, dropout_first=True, train=train, dtype=dtype)


MODELS = {"alexnet": AlexNet}
