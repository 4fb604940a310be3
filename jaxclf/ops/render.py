"""Drawing stroke-3 sketches: SVG text (vector, exact) and PNG grids (matplotlib).

Both draw each pen-down run of points as one polyline (``strokes.to_absolute``); image y
points down in SVG and up in matplotlib, so the SVG flips y to look the same as the PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from jaxclf.ops.strokes import to_absolute


def _bounds(lines: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    points = np.concatenate(lines) if lines else np.zeros((1, 2))
    return points.min(0), points.max(0)


def to_svg(s3: np.ndarray, size: int = 200, margin: float = 0.05, stroke_width: float = 2.0) -> str:
    """An SVG document of the sketch scaled to fit a ``size`` square."""
    lines = to_absolute(np.asarray(s3, np.float64))
    lo, hi = _bounds(lines)
    span = max(float((hi - lo).max()), 1e-6)
    scale = size * (1 - 2 * margin) / span
    offset = size / 2 - scale * (lo + hi) / 2 * np.array([1, -1])
    paths = []
    for line in lines:
        xy = line * scale * np.array([1, -1]) + offset
        paths.append('<polyline points="' + " ".join(f"{x:.2f},{y:.2f}" for x, y in xy) + '"/>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" viewBox="0 0 {size} {size}">'
        f'<rect width="100%" height="100%" fill="white"/>'
        f'<g fill="none" stroke="black" stroke-width="{stroke_width}" stroke-linecap="round" stroke-linejoin="round">'
        + "".join(paths)
        + "</g></svg>"
    )


def draw(ax, s3: np.ndarray, *, color="black", linewidth: float = 1.5, title: str | None = None) -> None:
    """Draws one sketch on a matplotlib axis, equal aspect, no ticks."""
    lines = to_absolute(np.asarray(s3, np.float64))
    for line in lines:
        if len(line) == 1:
            ax.plot(line[:, 0], line[:, 1], ".", color=color, markersize=2)
        ax.plot(line[:, 0], line[:, 1], "-", color=color, linewidth=linewidth, solid_capstyle="round")
    lo, hi = _bounds(lines)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()), 1e-6) * 0.55
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def save_grid(
    sketches: Sequence[np.ndarray],
    path: str | Path,
    *,
    ncols: int,
    titles: Sequence[str] | None = None,
    row_labels: Sequence[str] | None = None,
    cell_size: float = 1.2,
    suptitle: str | None = None,
) -> Path:
    """A PNG grid of stroke-3 sketches, row-major, each scaled to fill its cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = -(-len(sketches) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * cell_size, nrows * cell_size), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i < len(sketches):
            draw(ax, sketches[i], title=titles[i] if titles else None)
        else:
            ax.axis("off")
    for r, label in enumerate(row_labels or ()):
        axes[r, 0].set_ylabel(label, fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
