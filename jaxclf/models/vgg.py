"""VGG (Simonyan & Zisserman 2015): stacks of 3x3 convolutions and 2x2 max pools.

Configurations A, B, D, E of the paper (11, 13, 16, 19 weight layers) differ only in
how many 3x3 convs each of the five stages has; ``_bn`` variants add batch norm after
every conv (torchvision keeps the conv bias there). The head is torchvision's: adaptive
average pool to 7x7, then 4096-4096-classes with dropout. Parameter counts at 1000
classes match torchvision exactly, e.g. vgg16 138,357,544 and vgg16_bn 138,365,992.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import flax.linen as nn

from jaxclf.models.layers import (DeepCNN, ConvNormAct, check_images, as_dtype, pooled_mlp_head,
                                  maybe_remat, pool)

# Convs per stage for the paper's configurations A (vgg11), B (13), D (16), E (19).
STAGE_DEPTHS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


class VGG(DeepCNN):
    """A VGG network: stage i has ``stage_depths[i]`` 3x3 convs of ``widths[i]`` channels.

    Attributes:
      num_classes: outputs of the dense head; 0 builds no head (the model returns the features).
      stage_depths: 3x3 convs in each of the stages, each stage ending in a 2x2 max pool.
      widths: channels of each stage.
      hidden: widths of the hidden dense layers before the head (() for none).
      pool_size: side of the adaptive average pool before the classifier; None: 7 (torchvision)
        unless the last map is smaller (a 32x32 input's 1x1 map is then read as it is rather
        than replicated to 7x7, which made vgg11 128.8M parameters at 32x32 instead of 28.1M).
      norm: 'none' (the paper) or 'batch' (the _bn variants).
      dropout_rate: dropout after each hidden dense layer (rng 'dropout' in training).
      remat: rematerialise each conv layer (recompute its activations in the backward pass).
      dtype: compute dtype, e.g. 'bfloat16'; the logits are float32 whatever it is.
      param_dtype: dtype of the parameters.
    """

    num_classes: int = 1000
    stage_depths: Sequence[int] = STAGE_DEPTHS[16]
    widths: Sequence[int] = (64, 128, 256, 512, 512)
    hidden: Sequence[int] = (4096, 4096)
    pool_size: Optional[int] = None
    norm: str = "none"
    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, x, *, train: bool, output: str = "logits"):
        """Classifies a batch of images.

        Args:
          x: images (N, H, W, C), cast to ``dtype``.
          train: True applies dropout (rng 'dropout') and, with ``norm='batch'``, batch
            statistics (collection 'batch_stats', apply with ``mutable=['batch_stats']``).
            Required: a forgotten flag must not silently train in evaluation mode.
          output: 'logits' (N, num_classes) float32; 'features': the last hidden layer's
            output (the input of the dense layer 'head'); 'stages': a dict of each stage's
            pooled map ('stage1' .. 'stage5').

        Returns what ``output`` names (the features when ``num_classes`` is 0).
        """
        check_images(self, x)
        conv = maybe_remat(ConvNormAct, self.remat)
        dtype = as_dtype(self.dtype)
        x = x.astype(dtype)
        stages, n = {}, 0
        for i, (depth, width) in enumerate(zip(self.stage_depths, self.widths, strict=True)):
            for _ in range(depth):
                x = conv(width, 3, norm=self.norm, use_bias=True, dtype=dtype, param_dtype=self.param_dtype,
                         name=f"ConvNormAct_{n}")(x, train)
                n += 1
            x = pool(x, "max", 2, 2)
            stages[f"stage{i + 1}"] = x
        return pooled_mlp_head(self, x, stages, output, default_side=7, dropout_first=False, train=train, dtype=dtype)


MODELS = {
    f"vgg{depth}{suffix}": functools.partial(VGG, stage_depths=stages, norm=norm)
    for depth, stages in STAGE_DEPTHS.items()
    for suffix, norm in (("", "none"), ("_bn", "batch"))
}
