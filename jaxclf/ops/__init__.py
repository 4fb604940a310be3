"""The building blocks of CNNs as plain, differentiable JAX functions.

Written from their definitions (shifted slices, window reductions) so they can be read
against the lecture; the models use flax's fused layers, and tests check the two agree.
Also the vector-sketch formats (``strokes``) and their drawing (``render``), which the data
pipeline and the Sketch-RNN model share.
"""

from jaxclf.ops.conv import conv2d, resolve_padding
from jaxclf.ops.kernels import KERNELS, apply_kernel, get_kernel
from jaxclf.ops.pool import avg_pool, max_pool

__all__ = ["conv2d", "resolve_padding", "max_pool", "avg_pool", "KERNELS", "apply_kernel", "get_kernel"]
