"""Training recipes shared by several config files (the papers' settings), and variants.

Config files stay one screen long: they pick a model and a dataset and apply a recipe.
"""

from __future__ import annotations

from typing import Callable

import ml_collections


def apply_variant(c: ml_collections.ConfigDict, arg: str | None, variants: dict[str, Callable]) -> ml_collections.ConfigDict:
    """Applies ``variants[arg]`` to ``c`` (no arg: unchanged); unknown names list the valid ones."""
    if arg is None:
        return c
    if arg not in variants:
        raise ValueError(f"unknown variant {arg!r}; valid: {', '.join(sorted(variants))}")
    variants[arg](c)
    return c


def smoke(c: ml_collections.ConfigDict) -> None:
    """A few tiny steps (tests run every config this way, on bundled or mock data)."""
    t = c.train
    t.num_steps, t.batch_size, t.eval_batch_size = 2, 8, 8
    t.log_every = t.eval_every = t.checkpoint_every = 1
    t.steps_per_call = 1
    c.optim.warmup_steps = 0


def he2015_cifar10(c: ml_collections.ConfigDict, *, warmup_steps: int = 0) -> None:
    """He et al. 2015, sec. 4.2: SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1
    divided by 10 at 32k and 48k iterations, 64k in all; 4-pixel padding + random 32x32
    crop + horizontal flip. (The paper subtracts the per-pixel mean; we standardise per
    channel with train-split statistics.)"""
    c.dataset.name = "cifar10"
    c.dataset.augment = ("random_crop", "flip")
    c.dataset.crop_padding = 4
    c.optim.name = "momentum"
    c.optim.lr = 0.1
    c.optim.momentum = 0.9
    c.optim.weight_decay = 1e-4
    c.optim.schedule = "step"
    c.optim.step_boundaries = (0.5, 0.75)  # 32k and 48k of 64k
    c.optim.step_factor = 0.1
    c.optim.warmup_steps = warmup_steps
    c.train.batch_size = 128
    c.train.num_steps = 64_000
    c.train.eval_every = 2_000
    c.train.log_every = 200
    c.train.checkpoint_every = 2_000
    c.train.steps_per_call = 200
