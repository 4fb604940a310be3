"""Classic 3x3 image kernels (the setosa.io "image kernels" demo) and applying them.

Each kernel is a small weight grid; sliding it over an image and summing the weighted
neighbourhood (``conv2d``) blurs, sharpens or finds edges depending on the weights.
Kernels whose weights sum to 1 (identity, blurs, sharpen, emboss) keep the image's
brightness; those summing to 0 (outline, sobel) respond only to change, i.e. edges.
"""

from __future__ import annotations

from typing import Union

import jax.numpy as jnp
import numpy as np

from jaxclf.ops.conv import conv2d

KERNELS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32),
    "box_blur": np.full((3, 3), 1 / 9, np.float32),
    # Binomial approximation of a Gaussian with sigma ~ 0.85: the outer product of [1,2,1]/4.
    "gaussian_blur": np.outer([1, 2, 1], [1, 2, 1]).astype(np.float32) / 16,
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32),
    "outline": np.array([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]], np.float32),
    # Sobel: a derivative across one axis smoothed by [1,2,1] along the other.
    "sobel_x": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32),
    "sobel_y": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float32),
    "emboss": np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32),
}


def get_kernel(name: str) -> jnp.ndarray:
    """The named kernel as a float32 array."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel {name!r}; valid: {', '.join(sorted(KERNELS))}")
    return jnp.asarray(KERNELS[name])


def apply_kernel(image, name_or_kernel: Union[str, np.ndarray], *, padding="same"):
    """Filters an (H, W) or (H, W, C) image with a 2-D kernel, channel by channel.

    Uses cross-correlation (no flip), as the setosa demo and conv layers do; with
    'same' padding the output has the image's size (borders see zeros).
    """
    kernel = get_kernel(name_or_kernel) if isinstance(name_or_kernel, str) else jnp.asarray(name_or_kernel)
    image = jnp.asarray(image, jnp.float32)
    if image.ndim == 2:
        return conv2d(image, kernel, padding=padding)
    if image.ndim == 3:
        # Depthwise: move channels to the batch axis so each is filtered on its own.
        per_channel = jnp.moveaxis(image, -1, 0)[..., None]
        out = conv2d(per_channel, kernel[:, :, None, None], padding=padding)
        return jnp.moveaxis(out[..., 0], 0, -1)
    raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {image.shape}")
