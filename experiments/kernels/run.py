"""Applies each classic image kernel in ``jaxclf.ops.KERNELS`` to a real photograph.

    PYTHONPATH=. python experiments/kernels/run.py [--out experiments/kernels/kernels.png]

(``PYTHONPATH=.`` is not needed once jaxclf is installed, e.g. ``pip install -e .``.)

The image is scikit-learn's bundled 'china.jpg' (427x640, no download), converted to
greyscale and cropped to the pagoda. Each panel is ``apply_kernel(image, name)`` with 'same' padding.
"""

from __future__ import annotations

import argparse
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_sample_image  # noqa: E402

from jaxclf.ops import KERNELS, apply_kernel  # noqa: E402


def greyscale(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma in [0, 1]."""
    return (rgb.astype(np.float32) / 255.0) @ np.array([0.299, 0.587, 0.114], np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name("kernels.png")))
    args = parser.parse_args()
    # A 160x160 crop of the pagoda, so that the blurs are visible at this figure size.
    image = greyscale(load_sample_image("china.jpg"))[90:250, 120:280]
    fig, axes = plt.subplots(3, 3, figsize=(9, 10.5))
    axes = axes.ravel()
    axes[0].imshow(image, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("original (greyscale)")
    for ax, (name, kernel) in zip(axes[1:], KERNELS.items()):
        out = np.asarray(apply_kernel(image, name))
        if kernel.sum() == 0:  # edge detectors: show response magnitude, auto-scaled
            ax.imshow(np.abs(out), cmap="gray", vmin=0, vmax=np.percentile(np.abs(out), 99.5))
        else:
            ax.imshow(np.clip(out, 0, 1), cmap="gray", vmin=0, vmax=1)
        rows = "\n".join(" ".join(f"{v:g}" if v == int(v) else f"{v:.2f}" for v in row) for row in kernel)
        ax.set_title(f"{name}\n{rows}", fontsize=8, family="monospace")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
