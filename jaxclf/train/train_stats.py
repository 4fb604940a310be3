"""What a run keeps on the device between two logs: the train metrics' state, gradient norms,
and, for the whole run, its non-finite steps.

Every step adds its statistics here inside the jitted chunk, so logging costs one device
computation (:func:`summarize`) and one fetch, made after the next chunk is dispatched. The
statistics are saved with each checkpoint, so a resumed run logs what an uninterrupted one does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_BAD_KINDS = {1: "loss", 2: "gradient"}
_WINDOW = ("grad_norm_sum", "layer_grad_norm_sum", "steps")  # reset at every log


def empty(metric_set, layer_norms) -> dict:
    """Statistics before the first step. ``layer_norms``: None, or a tree of zeros shaped like
    the per-layer gradient norms (``steps.per_layer_norms``), to sum those too."""
    stats = {
        "metrics": metric_set.empty(),
        "grad_norm_sum": jnp.zeros((), jnp.float32),
        "steps": jnp.zeros((), jnp.int32),
        "nonfinite_steps": jnp.zeros((), jnp.int32),
        "first_bad_step": jnp.full((), -1, jnp.int32),
        "first_bad_kind": jnp.zeros((), jnp.int32),
    }
    if layer_norms is not None:
        stats["layer_grad_norm_sum"] = layer_norms
    return stats


def add(stats, step_stats, step, metric_set) -> dict:
    """``stats`` plus one train step's (``steps.train_step``'s second output) at ``step``.
    A non-finite step's gradient norms are left out of the sums and counted instead."""
    bad = ~(step_stats["loss_finite"] & step_stats["grads_finite"])
    first = bad & (stats["first_bad_step"] < 0)
    out = {
        "metrics": metric_set.merge(stats["metrics"], step_stats["metrics"]),
        "grad_norm_sum": stats["grad_norm_sum"] + jnp.where(bad, 0.0, step_stats["grad_norm"]),
        "steps": stats["steps"] + 1,
        "nonfinite_steps": stats["nonfinite_steps"] + bad.astype(jnp.int32),
        "first_bad_step": jnp.where(first, step + 1, stats["first_bad_step"]),
        "first_bad_kind": jnp.where(first, jnp.where(step_stats["loss_finite"], 2, 1), stats["first_bad_kind"]),
    }
    if "layer_grad_norm_sum" in stats:
        out["layer_grad_norm_sum"] = jax.tree.map(
            lambda a, g: a + jnp.where(bad, 0.0, g), stats["layer_grad_norm_sum"], step_stats["layer_grad_norms"]
        )
    return out


def summarize(stats, metric_set) -> dict:
    """All a log reads, in one device computation: the window's metrics and mean gradient
    norms, and the run's non-finite bookkeeping."""
    steps = jnp.maximum(stats["steps"], 1).astype(jnp.float32)
    out = {
        "metrics": metric_set.compute(stats["metrics"]),
        "grad_norm": stats["grad_norm_sum"] / steps,
        **{k: stats[k] for k in ("nonfinite_steps", "first_bad_step", "first_bad_kind")},
    }
    if "layer_grad_norm_sum" in stats:
        out["layer_grad_norms"] = jax.tree.map(lambda total: total / steps, stats["layer_grad_norm_sum"])
    return out


def reset(stats, metric_set) -> dict:
    """Starts a new logging window; the non-finite bookkeeping carries over."""
    zeros = jax.tree.map(jnp.zeros_like, stats)
    return {**stats, "metrics": metric_set.empty(), **{k: zeros[k] for k in _WINDOW if k in stats}}


def check_finite(stats, *, skip: bool, last_checkpoint: int | None) -> int:
    """Raises FloatingPointError on a non-finite step unless skipping; returns the count.
    ``stats``: the statistics or a summary fetched to the host (both hold the bookkeeping)."""
    count = int(stats["nonfinite_steps"])
    if count and not skip:
        kind = _BAD_KINDS[int(stats["first_bad_kind"])]
        kept = f"the last checkpoint (step {last_checkpoint}) is kept" if last_checkpoint else "no checkpoint was written"
        raise FloatingPointError(
            f"non-finite {kind} at step {int(stats['first_bad_step'])}; {kept}. "
            "Lower the learning rate, clip gradients (optim.clip_norm), or set train.skip_nonfinite=True"
        )
    return count


def scalars(summary, skipped: int) -> dict[str, float]:
    """The logged scalars of a summary fetched to the host."""
    out = {k: float(v) for k, v in summary["metrics"].items()}
    out["grad_norm"] = float(summary["grad_norm"])
    for layer, value in summary.get("layer_grad_norms", {}).items():
        out[f"grad_norm/{layer}"] = float(value)
    if skipped:
        out["skipped_nonfinite"] = float(skipped)
    return out
