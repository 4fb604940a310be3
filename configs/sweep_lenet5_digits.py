"""A sweep of LeNet-5 on digits: (lr, weight decay) pairs times three seeds.

    python -m jaxclf.sweep --config=configs/sweep_lenet5_digits.py --workdir=runs/sweep_lenet5 \
        --parallel=2 [--sweep=seed=0,1] [--vmap]

Every point is a normal ``jaxclf.main`` run in ``runs/sweep_lenet5/<key=value,...>``; the sweep
writes ``summary.csv``, ``summary.md`` (best test accuracy first) and ``plot_<key>.png``.
One point alone is a normal run:

    python -m jaxclf.main --config=configs/sweep_lenet5_digits.py --workdir=runs/one --config.seed=1

``:smoke`` is the tests' tiny 2x2 (lr x seed) sweep of six steps.
"""

import os

from jaxclf.config import load
from jaxclf.sweep import product, zip_


def get_config(arg=None):
    """The LeNet-5 digits config (``:smoke``: its six-step variant)."""
    return load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "lenet5_digits.py"), arg)


def get_sweep(arg=None):
    if arg == "smoke":
        return product({"optim.lr": [1e-3, 3e-3]}, {"seed": [0, 1]})
    return product(zip_({"optim.lr": [1e-3, 3e-3, 1e-2], "optim.weight_decay": [0.0, 1e-4, 1e-4]}), {"seed": [0, 1, 2]})
