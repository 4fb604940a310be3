"""The train state and the pure train/eval steps.

``train_step(state, batch) -> (state, stats)`` (stats holds the metric state) and ``eval_step(state, batch) ->
metric_state`` are pure functions of their arguments (the model, optimizer, loss and metrics
are bound with functools.partial by :func:`make_steps`), so they jit, scan and vmap, and
compute the same thing on one device or sharded over a mesh. Dropout keys are derived from
the base key and ``state.step``, so nothing random is carried in the state.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxclf.train import losses


@struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    model_state: Any  # non-parameter collections, e.g. {'batch_stats': ...}; {} if none
    opt_state: Any


def init_state(model: nn.Module, tx: optax.GradientTransformation, example: jax.Array, key) -> TrainState:
    """Initialises parameters from one example batch (shapes only matter)."""
    variables = model.init({"params": key, "dropout": key}, example, train=False)
    variables = dict(variables)
    params = variables.pop("params")
    return TrainState(jnp.zeros((), jnp.int32), params, variables, tx.init(params))


def _apply(model, state_vars, params, inputs, *, train: bool, key=None):
    """Runs the model; returns (logits, aux_logits tuple, updated non-param collections)."""
    variables = {"params": params, **state_vars}
    mutable = list(state_vars) if train else False
    out = model.apply(variables, inputs, train=train, rngs={"dropout": key} if key is not None else None, mutable=mutable)
    out, new_vars = out if mutable else (out, state_vars)
    logits, aux = out if isinstance(out, tuple) else (out, ())
    return logits, tuple(aux), new_vars


def per_layer_norms(tree) -> dict[str, jax.Array]:
    """The L2 norm of each layer's leaves (e.g. of gradients, to watch them explode or vanish).

    A layer is the path up to and including a ``layer_<i>`` component (``layer_0``,
    ``encoder/layer_1``), else the top-level module name (``Conv_0``, ``head``).
    """
    squares: dict[str, jax.Array] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        keys = [str(getattr(k, "key", k)) for k in path]
        keys = keys[1:] if keys[0] == "params" else keys
        cut = next((i for i, k in enumerate(keys) if re.fullmatch(r"layer_\d+", k)), 0)
        name = "/".join(keys[: cut + 1])
        squares[name] = squares.get(name, 0.0) + jnp.sum(jnp.square(leaf.astype(jnp.float32)))
    return {name: jnp.sqrt(v) for name, v in squares.items()}


def _masked_mean(values, mask):
    return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def train_step(
    state: TrainState, batch: dict, *, model, tx, loss_fn: Callable, metrics, key, aux_weight: float = 0.3, skip_nonfinite: bool = False
):
    """One optimizer step on ``batch`` = {'inputs', 'labels', 'mask'}.

    Returns ``(state, stats)``: ``stats['metrics']`` is the batch's metric state,
    ``stats['grad_norm']`` the global gradient norm, and ``stats['loss_finite']`` /
    ``stats['grads_finite']`` flag non-finite values without forcing a host sync. With
    ``skip_nonfinite`` a step with a non-finite loss or gradient leaves parameters,
    optimizer and model state unchanged (only the step counter advances).
    """
    step_key = jax.random.fold_in(key, state.step)
    mask = batch["mask"]

    def objective(params):
        logits, aux, new_vars = _apply(model, state.model_state, params, batch["inputs"], train=True, key=step_key)
        per_example = loss_fn(logits, batch["labels"])
        total = _masked_mean(per_example, mask)
        for aux_logits in aux:
            total = total + aux_weight * _masked_mean(loss_fn(aux_logits, batch["labels"]), mask)
        return total, (logits, per_example, new_vars)

    (loss, (logits, per_example, new_vars)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, model_state=new_vars, opt_state=opt_state)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if skip_nonfinite:
        kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
        new_state = kept.replace(step=state.step + 1)
    stats = {
        "metrics": metrics.update(metrics.empty(), logits=logits, labels=batch["labels"], loss=per_example, mask=mask),
        "grad_norm": grad_norm,
        "layer_grad_norms": per_layer_norms(grads),
        "loss_finite": jnp.isfinite(loss),
        "grads_finite": jnp.isfinite(grad_norm),
    }
    return new_state, stats


def eval_step(state: TrainState, batch: dict, *, model, loss_fn: Callable, metrics):
    """Metric sums over ``batch``; padded examples (mask 0) do not count."""
    logits, _, _ = _apply(model, state.model_state, state.params, batch["inputs"], train=False)
    per_example = loss_fn(logits, batch["labels"])
    return metrics.update(metrics.empty(), logits=logits, labels=batch["labels"], loss=per_example, mask=batch["mask"])


def make_steps(
    model, tx, metrics, *, task: str, key, label_smoothing=0.0, class_weights=None, aux_weight=0.3, skip_nonfinite=False
):
    """(train_step, eval_step) with everything but (state, batch) bound."""
    loss_fn = functools.partial(
        losses.per_example_loss,
        task=task,
        one_vs_rest=getattr(model, "one_vs_rest", False),
        label_smoothing=label_smoothing,
        class_weights=class_weights,
    )
    train = functools.partial(
        train_step, model=model, tx=tx, loss_fn=loss_fn, metrics=metrics, key=key, aux_weight=aux_weight, skip_nonfinite=skip_nonfinite
    )
    evaluate = functools.partial(eval_step, model=model, loss_fn=loss_fn, metrics=metrics)
    return train, evaluate
