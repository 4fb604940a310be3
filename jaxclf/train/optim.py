"""Optimizers and learning-rate schedules from the config's ``optim`` section, via optax.

The chain is: clip by global norm (optional) -> weight decay -> optimizer with schedule.
Weight decay is coupled (L2 added to the gradient, as in the SGD papers) for every optimizer
except ``adamw``, whose decay is decoupled (Loshchilov and Hutter).
"""

from __future__ import annotations

from typing import Callable

import jax
import optax

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "step", "linear")


def check_names(cfg) -> None:
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {cfg.name!r}; valid: {', '.join(OPTIMIZERS)}")
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; valid: {', '.join(SCHEDULES)}")


def schedule(cfg, num_steps: int) -> optax.Schedule:
    """Learning rate per step: optional linear warm-up, then the named decay."""
    check_names(cfg)
    warmup = int(cfg.warmup_steps)
    decay_steps = max(num_steps - warmup, 1)
    end = cfg.lr * cfg.end_lr_factor
    if cfg.schedule == "constant":
        main = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.end_lr_factor)
    elif cfg.schedule == "linear":
        main = optax.linear_schedule(cfg.lr, end, decay_steps)
    else:  # step: multiply by step_factor at each boundary (fractions of the run)
        boundaries = {int(f * num_steps) - warmup: cfg.step_factor for f in cfg.step_boundaries}
        main = optax.piecewise_constant_schedule(cfg.lr, boundaries)
    if not warmup:
        return main
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warmup), main], [warmup])


def _kernel_mask(params):
    """True for weight matrices/kernels (names ending in 'kernel'), False elsewhere."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], "key", None) == "kernel", params
    )


def chain(cfg, lr: Callable, *, weight_decay, momentum, coupled_decay: bool) -> optax.GradientTransformation:
    """``cfg.name``'s chain with these hyperparameters (numbers, or traced values when a
    vmapped sweep injects them); ``coupled_decay`` says whether the L2 term is in the chain."""
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    mask = _kernel_mask if cfg.decay_kernels_only else None
    if coupled_decay and cfg.name != "adamw":
        parts.append(optax.add_decayed_weights(weight_decay, mask=mask))
    if cfg.name == "sgd":
        parts.append(optax.sgd(lr))
    elif cfg.name in ("momentum", "nesterov"):
        parts.append(optax.sgd(lr, momentum=momentum, nesterov=cfg.name == "nesterov"))
    elif cfg.name == "adam":
        parts.append(optax.adam(lr, b1=cfg.b1, b2=cfg.b2))
    else:
        parts.append(optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=weight_decay, mask=mask))
    return optax.chain(*parts)


def optimizer(cfg, num_steps: int) -> optax.GradientTransformation:
    """The optax chain the config describes."""
    return chain(cfg, schedule(cfg, num_steps), weight_decay=cfg.weight_decay, momentum=cfg.momentum,
                 coupled_decay=bool(cfg.weight_decay))
