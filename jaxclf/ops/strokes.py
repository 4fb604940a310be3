"""Vector sketches as pen-offset sequences (Ha and Eck 2017, "A Neural Representation of
Sketch Drawings"): the two formats and the conversions between them.

* stroke-3 ``(n, 3)``: ``(dx, dy, pen_lifted)`` per point; ``pen_lifted = 1`` means the pen
  leaves the paper *after* this point (the next offset is a move, not a line). This is the
  storage format of the QuickDraw sketch-rnn ``.npz`` files (int16).
* stroke-5 ``(Nmax, 5)``: ``(dx, dy, p1, p2, p3)`` with one-hot pen state: p1 pen stays down,
  p2 pen lifted, p3 sketch has ended. Rows from the sketch's length on are end rows
  ``(0, 0, 0, 0, 1)``; this padding is what the model learns to emit to stop. (A sketch of
  exactly Nmax points gets no end row, as in the paper; the shapes data leave headroom.)

Here rather than in ``jaxclf.data`` because the Sketch-RNN model reads and writes stroke-5
too, and the models do not import the data package.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

END_ROW = np.array([0, 0, 0, 0, 1], np.float32)
START_ROW = np.array([0, 0, 1, 0, 0], np.float32)  # S_0: the decoder's first input


def to_stroke5(s3: np.ndarray, max_len: int) -> np.ndarray:
    """Stroke-3 ``(n, 3)`` -> stroke-5 ``(max_len, 5)`` padded with end rows; ``n <= max_len``."""
    n = len(s3)
    if n > max_len:
        raise ValueError(f"sketch has {n} points, more than max_len={max_len}")
    out = np.tile(END_ROW, (max_len, 1))
    out[:n, :2] = s3[:, :2]
    out[:n, 3] = s3[:, 2]
    out[:n, 2] = 1 - s3[:, 2]
    out[:n, 4] = 0
    return out


def stroke5_length(s5) -> np.ndarray | jax.Array:
    """Points before the first end row, for ``(..., T, 5)`` arrays (numpy or JAX)."""
    xp = jnp if isinstance(s5, jax.Array) else np
    ended = xp.cumsum(s5[..., 4] > 0.5, axis=-1) > 0
    return xp.sum(~ended, axis=-1)


def to_stroke3(s5: np.ndarray) -> np.ndarray:
    """Stroke-5 ``(T, 5)`` -> stroke-3, cut at the first end row; pen from argmax(p1, p2)."""
    s5 = np.asarray(s5, np.float32)
    n = int(stroke5_length(s5))
    pen = np.argmax(s5[:n, 2:4], axis=-1).astype(np.float32)
    return np.concatenate([s5[:n, :2], pen[:, None]], axis=-1)


def to_absolute(s3: np.ndarray) -> list[np.ndarray]:
    """The polylines (absolute ``(k, 2)`` points) of a stroke-3 sketch, one per pen-down run.

    The pen starts at the origin; every point is reached by its offset, and a point whose
    *previous* point lifted the pen starts a new polyline.
    """
    if len(s3) == 0:
        return []
    points = np.cumsum(s3[:, :2], axis=0)
    breaks = np.flatnonzero(s3[:-1, 2] > 0.5) + 1
    return [p for p in np.split(points, breaks) if len(p)]
