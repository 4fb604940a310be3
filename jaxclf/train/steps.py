"""The train state and the pure train/eval steps.

``train_step(state, batch) -> (state, stats)`` (stats holds the metric state) and ``eval_step(state, batch) ->
metric_state`` are pure functions of their arguments (the model, optimizer, loss and metrics
are bound with functools.partial by :func:`make_steps`), so they jit, scan and vmap, and
compute the same thing on one device or sharded over a mesh. Dropout keys are derived from
the base key and ``state.step``, so nothing random is carried in the state.
"""

from __future__ import annotations

import functools
import inspect
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


def init_state(model: nn.Module, tx: optax.GradientTransformation, example, key) -> TrainState:
    """Initialises parameters from one example batch (shapes only matter): an inputs array, or
    a batch dict with 'labels' for models that read their targets (see ``model_inputs``)."""
    batch = example if isinstance(example, dict) else {"inputs": example}
    variables = model.init({"params": key, "dropout": key}, batch["inputs"], train=False, **model_inputs(model, batch))
    variables = dict(variables)
    params = variables.pop("params")
    return TrainState(jnp.zeros((), jnp.int32), params, variables, tx.init(params))


def model_inputs(model, batch: dict) -> dict:
    """The keyword arguments a model's ``__call__`` takes from the batch besides its inputs:
    ``lengths`` (the valid steps of variable-length sequences) when the batch has them, and
    ``targets=batch['labels']`` for models that read their targets (teacher forcing: the
    generator, seq2seq). Decided by the model's signature, not by its name."""
    params = inspect.signature(model.__call__).parameters  # a FrozenBatchNorm forwards to its model
    kwargs = {"lengths": batch["lengths"]} if "lengths" in batch and "lengths" in params else {}
    if "targets" in params:
        if "labels" not in batch:
            raise ValueError(f"{type(getattr(model, 'model', model)).__name__} reads its targets (teacher forcing): "
                             "the batch needs 'labels' (per-step tokens, task 'sequence')")
        kwargs["targets"] = batch["labels"]
    return kwargs


def _apply(model, state_vars, params, batch: dict, *, train: bool, key=None):
    """Runs the model on ``batch['inputs']`` and what ``model_inputs`` adds (lengths,
    teacher-forced targets); returns (outputs, updated non-param collections).

    In training, a model with auxiliary heads (GoogLeNet's ``aux_logits``) sows their logits
    as ``intermediates/aux_logits``; the outputs are then ``(logits, aux_logits)``.
    """
    variables = {"params": params, **state_vars}
    aux = train and getattr(model, "aux_logits", False)
    mutable = [*state_vars, "intermediates"] if aux else (list(state_vars) if train and state_vars else False)
    out = model.apply(
        variables, batch["inputs"], train=train, rngs={"dropout": key} if key is not None else None, mutable=mutable,
        **model_inputs(model, batch),
    )
    if not mutable:
        return out, state_vars
    out, new_vars = out
    new_vars = dict(new_vars)
    sown = new_vars.pop("intermediates", {})
    return ((out, tuple(sown.get("aux_logits", ()))) if aux else out), new_vars


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


def classification_loss(per_example_loss: Callable, aux_weight: float = 0.3) -> Callable:
    """``(outputs, batch, step) -> (loss, metric inputs)`` for classifiers: the masked mean
    per-example loss, plus ``aux_weight`` times that of each auxiliary head (GoogLeNet's,
    training only: ``outputs`` is then ``(logits, aux_logits)``, see ``_apply``). The metric
    inputs are what ``Collection.from_model_output`` reads."""

    def loss(outputs, batch, step):
        del step
        logits, aux = outputs if isinstance(outputs, tuple) else (outputs, ())
        labels, mask = batch["labels"], batch["mask"]
        per_example = per_example_loss(logits, labels)
        total = _masked_mean(per_example, mask)
        for aux_logits in aux:
            total = total + aux_weight * _masked_mean(per_example_loss(aux_logits, labels), mask)
        return total, {"logits": logits, "labels": labels, "loss": per_example, "mask": mask}

    return loss


def step_mask(batch: dict, steps: int) -> jax.Array:
    """(B, steps) weights of per-step targets: each example's mask, times its valid steps when
    the batch has ``lengths`` (the targets are as long as the valid inputs: tagging,
    copy/reverse; a generator's targets), else every step."""
    mask = batch["mask"][:, None]
    if "lengths" in batch:
        return mask * (jnp.arange(steps)[None, :] < batch["lengths"][:, None])
    return jnp.broadcast_to(mask, (mask.shape[0], steps))


def sequence_loss(per_example_loss: Callable) -> Callable:
    """``(outputs, batch, step) -> (loss, metric inputs)`` for per-step targets (task
    'sequence': labels (B, T) token ids, logits (B, T, C)): every (example, step) is one row
    of :func:`classification_loss`, weighted by :func:`step_mask`, so the loss is the mean
    over valid tokens and the metrics (accuracy, ...) are token-level."""
    rows = classification_loss(per_example_loss)

    def loss(outputs, batch, step):
        labels = batch["labels"]
        if outputs.ndim != 3 or outputs.shape[:2] != labels.shape:
            raise ValueError(f"task 'sequence' needs per-step logits (B, T, classes) for labels of shape "
                             f"{labels.shape}; the model gives shape {outputs.shape}")
        flat = {"labels": labels.reshape(-1), "mask": step_mask(batch, labels.shape[1]).reshape(-1)}
        return rows(outputs.reshape(-1, outputs.shape[-1]), flat, step)

    return loss


def model_loss(family_loss: Callable) -> Callable:
    """``(outputs, batch, step) -> (loss, metric inputs)`` for models that define their own loss
    (task 'generative', e.g. Sketch-RNN): ``family_loss(outputs, batch, step) -> (loss,
    scalars)``; the metrics (``Means``) are example-weighted means of the scalars."""

    def loss(outputs, batch, step):
        total, scalars = family_loss(outputs, batch, step)
        return total, {"values": scalars, "weight": jnp.sum(batch["mask"])}

    return loss


def train_step(
    state: TrainState, batch: dict, *, model, tx, loss_fn: Callable, metrics, key, skip_nonfinite: bool = False,
    layer_norms: bool = False,
):
    """One optimizer step on ``batch`` = {'inputs', 'labels', 'mask'} (+ 'lengths').

    Returns ``(state, stats)``: ``stats['metrics']`` is the batch's metric state (computed from
    the step's outputs after differentiation: the gradient only sees the loss),
    ``stats['grad_norm']`` the global gradient norm (with ``layer_norms``, also
    ``stats['layer_grad_norms']`` per layer), and ``stats['loss_finite']`` /
    ``stats['grads_finite']`` flag non-finite values without forcing a host sync. With
    ``skip_nonfinite`` a step with a non-finite loss or gradient leaves parameters,
    optimizer and model state unchanged (only the step counter advances).
    """
    step_key = jax.random.fold_in(key, state.step)

    def loss(params):
        outputs, new_vars = _apply(model, state.model_state, params, batch, train=True, key=step_key)
        total, metric_inputs = loss_fn(outputs, batch, state.step)
        return total, (metric_inputs, new_vars)

    (total, (metric_inputs, new_vars)), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
    grad_norm = optax.global_norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(step=state.step + 1, params=params, model_state=new_vars, opt_state=opt_state)
    finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)
    if skip_nonfinite:
        kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
        new_state = kept.replace(step=state.step + 1)
    stats = {
        "metrics": metrics.from_model_output(**metric_inputs),
        "grad_norm": grad_norm,
        "loss_finite": jnp.isfinite(total),
        "grads_finite": jnp.isfinite(grad_norm),
    }
    if layer_norms:
        stats["layer_grad_norms"] = per_layer_norms(grads)
    return new_state, stats


def eval_step(state: TrainState, batch: dict, *, model, loss_fn: Callable, metrics):
    """The batch's metric state; padded examples (mask 0) do not count."""
    outputs, _ = _apply(model, state.model_state, state.params, batch, train=False)
    return metrics.from_model_output(**loss_fn(outputs, batch, state.step)[1])


def make_loss(model, *, task: str, label_smoothing=0.0, class_weights=None, aux_weight=0.3,
              family_loss: Callable | None = None) -> Callable:
    """The task's ``(outputs, batch, step) -> (loss, metric inputs)``: the model family's own
    loss for task 'generative', the per-step one for 'sequence', else the classification loss."""
    if task == "generative":
        return model_loss(family_loss)
    per_example = functools.partial(
        losses.per_example_loss,
        task="multiclass" if task == "sequence" else task,
        one_vs_rest=getattr(model, "one_vs_rest", False),
        label_smoothing=label_smoothing,
        class_weights=class_weights,
    )
    return sequence_loss(per_example) if task == "sequence" else classification_loss(per_example, aux_weight)


def make_steps(
    model, tx, metrics, *, task: str, key=None, label_smoothing=0.0, class_weights=None, aux_weight=0.3, skip_nonfinite=False,
    layer_norms=False, family_loss: Callable | None = None,
):
    """(train_step, eval_step) with everything but (state, batch) bound; ``metrics`` is the
    metric set whose ``from_model_output`` turns a step's outputs into its metric state.
    ``key``: the base dropout key (None: pass ``key=`` to each train step call)."""
    loss_fn = make_loss(model, task=task, label_smoothing=label_smoothing, class_weights=class_weights,
                        aux_weight=aux_weight, family_loss=family_loss)
    train = functools.partial(
        train_step, model=model, tx=tx, loss_fn=loss_fn, metrics=metrics, key=key, skip_nonfinite=skip_nonfinite,
        layer_norms=layer_norms,
    )
    evaluate = functools.partial(eval_step, model=model, loss_fn=loss_fn, metrics=metrics)
    return train, evaluate
