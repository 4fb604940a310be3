"""Transfer learning: start from another run's (or a converted torchvision) checkpoint.

Pure functions on parameter pytrees, wired into the loop in three places:

* :func:`initialize` copies pretrained weights into a freshly initialised train state
  (:func:`merge_pretrained` on params and on model_state): every path whose shape matches
  is copied; a head whose class count differs keeps its fresh initialisation.
* :func:`make_optimizer` wraps the configured optax chain with ``optax.multi_transform``:
  the backbone (paths matching ``freeze``) gets ``optax.set_to_zero()`` (frozen: its
  parameters stay bitwise unchanged), or a gate that keeps it frozen for ``unfreeze_after``
  steps and then trains it at ``backbone_lr_factor`` times the learning rate. The gate is a
  step-dependent scale, so the optimizer state has the same structure before and after
  unfreezing (checkpoints stay restorable, the jitted step is compiled once).
* :func:`freeze_batch_norm` wraps the model so that batch norm uses (and keeps) its running
  statistics while the rest of the model, dropout included, is in training mode.

Paths are '/'-joined flax names, e.g. ``stage1_block1/ConvNormAct_0/conv/kernel``; ``freeze``,
``exclude`` and ``head`` are regular expressions searched in them.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

# HEAD_PATTERN: the classifier layers ('head' in every family, GoogLeNet's 'fc' and its aux
# heads' last layers), whose shapes depend on the class count.
from jaxclf.models.heads import HEAD_PATTERN  # noqa: F401  (part of this module's API)
from jaxclf.schema import Field, Section

# Everything but those: the usual ``freeze`` for training only a new head.
BACKBONE_PATTERN = r"^(?!(head|fc|aux\d/Dense_1)/)"

SECTION = Section("transfer learning (jaxclf.transfer); paths are regexes over '/'-joined parameter names", {
    "init_from": Field("", "workdir or checkpoint dir to start from (e.g. python -m jaxclf.convert output)"),
    "exclude": Field("", "paths never copied (a head of another shape is re-initialised anyway)"),
    "freeze": Field("", "paths frozen, e.g. jaxclf.transfer.BACKBONE_PATTERN"),
    "unfreeze_after": Field(-1, "-1: frozen for good; N >= 0: frozen N steps, then trained"),
    "backbone_lr_factor": Field(0.1, "lr multiplier of the frozen paths once they train"),
    "freeze_batch_stats": Field(False, "batch norm in inference mode while training"),
})


def validate(section) -> None:
    """Raises ValueError naming the key of a path pattern that is not a regular expression."""
    for key in ("exclude", "freeze"):
        try:
            re.compile(section[key])
        except re.error as e:
            raise ValueError(f"transfer.{key}={section[key]!r} is not a regular expression: {e}") from None


def _flat(tree) -> dict[str, Any]:
    return traverse_util.flatten_dict(tree, sep="/") if tree else {}


def _unflat(flat: dict[str, Any]) -> dict:
    return traverse_util.unflatten_dict(flat, sep="/")


@dataclasses.dataclass(frozen=True)
class MergeReport:
    """What :func:`merge_pretrained` did, by path."""

    copied: tuple[str, ...]
    reinitialised: tuple[str, ...]  # in the target only, excluded, or a head of another shape
    unused: tuple[str, ...]  # in the source only

    def summary(self) -> str:
        def some(paths):
            return ", ".join(paths[:4]) + (", ..." if len(paths) > 4 else "")

        return (
            f"copied {len(self.copied)} arrays; kept {len(self.reinitialised)} freshly initialised "
            f"({some(self.reinitialised)}); {len(self.unused)} source arrays unused ({some(self.unused)})"
        )


def merge_pretrained(target: dict, source: dict, *, exclude: str | None = None,
                     head: str = HEAD_PATTERN) -> tuple[dict, MergeReport]:
    """``target`` with every array of ``source`` at the same path and shape copied in.

    ``exclude`` paths are never copied. A shape mismatch is expected in the ``head`` (another
    class count: the head keeps its fresh initialisation) and an error elsewhere (a different
    architecture). Raises ValueError when nothing at all matches. Dtypes follow the target.
    Works on params and on model_state (``{'batch_stats': ...}``) alike.
    """
    tgt, src = _flat(target), _flat(source)
    merged, copied, fresh, mismatched = {}, [], [], []
    for path, value in tgt.items():
        other = src.get(path)
        if other is None or (exclude and re.search(exclude, path)):
            merged[path] = value
            fresh.append(path)
        elif tuple(np.shape(other)) != tuple(np.shape(value)):
            if not re.search(head, path):
                mismatched.append(f"{path}: {np.shape(other)} -> {np.shape(value)}")
            merged[path] = value
            fresh.append(path)
        else:
            merged[path] = np.asarray(other, dtype=np.asarray(value).dtype)
            copied.append(path)
    if mismatched:
        raise ValueError(f"pretrained shapes differ outside the head ({head!r}): " + "; ".join(mismatched[:5]))
    if tgt and not copied:
        raise ValueError(
            f"no pretrained array matches the model: target paths e.g. {list(tgt)[:3]}, "
            f"source paths e.g. {list(src)[:3]} (is it the same architecture?)"
        )
    report = MergeReport(tuple(copied), tuple(fresh), tuple(sorted(set(src) - set(tgt))))
    return (_unflat(merged) if merged else {}), report


def _host(tree):
    """numpy copies; a replicated global array (multi-process) is read from a local shard."""
    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and x.sharding.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(jax.device_get(x))

    return jax.tree.map(one, tree)


def initialize(state, pretrained: tuple[dict, dict], *, exclude: str | None = None, source: str = "pretrained"):
    """The train state with params and model_state merged from ``pretrained`` = (params,
    model_state), e.g. ``jaxclf.train.checkpoint.load_params(path)``; ``source`` names them
    in the log.

    Arrays are placed with the shardings of ``state``'s (works on a global mesh, also
    multi-process: every process reads the same file). The optimizer state is kept: its
    structure depends only on shapes.
    """
    params, model_state = pretrained
    new_params, report = merge_pretrained(_host(state.params), _host(params), exclude=exclude)
    logging.warning("transfer from %s: params: %s", source, report.summary())
    new_model_state = state.model_state
    if state.model_state and not model_state:
        logging.warning("transfer from %s: it has no model_state (batch statistics); keeping fresh ones", source)
    elif state.model_state:
        new_model_state, report = merge_pretrained(_host(state.model_state), _host(model_state), exclude=exclude)
        logging.warning("transfer from %s: model_state: %s", source, report.summary())

    def place(new, old):
        new = np.asarray(new, old.dtype)
        return jax.make_array_from_callback(old.shape, old.sharding, lambda index: new[index])

    return state.replace(params=jax.tree.map(place, new_params, state.params),
                         model_state=jax.tree.map(place, new_model_state, state.model_state))


# --------------------------------------------------------------------------- optimizer


def trainable_mask(params, freeze: str | None):
    """Pytree of bools like ``params``: False where the path matches ``freeze``."""
    def trainable(path, _):
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        return not (freeze and re.search(freeze, name))

    return jax.tree_util.tree_map_with_path(trainable, params)


class GateState(NamedTuple):
    """The step count of :func:`gate` (the same structure frozen or not)."""

    count: jax.Array


def gate(unfreeze_after: int, factor: float = 1.0) -> optax.GradientTransformation:
    """Updates are zero before step ``unfreeze_after``, then multiplied by ``factor``.

    The zero is -0.0, so ``p + update`` keeps ``p`` bitwise (even a +0.0 or -0.0 p).
    """
    def init(params):
        del params
        return GateState(count=jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        del params
        on = state.count >= unfreeze_after
        updates = jax.tree.map(lambda u: jnp.where(on, u * factor, jnp.full_like(u, -0.0)), updates)
        return updates, GateState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def make_optimizer(tx: optax.GradientTransformation, *, freeze: str | None = None,
                   backbone_lr_factor: float = 1.0, unfreeze_after: int | None = None) -> optax.GradientTransformation:
    """``tx`` for the trainable parameters, a frozen or slower copy for the ``freeze`` paths.

    * ``freeze`` empty: ``tx`` unchanged.
    * ``unfreeze_after`` None (or negative): the ``freeze`` paths never change
      (``optax.set_to_zero``; no optimizer state for them).
    * ``unfreeze_after`` = N >= 0: frozen for N steps (0: never frozen), then trained by their own copy of
      ``tx`` with updates scaled by ``backbone_lr_factor`` (for SGD/Adam that is the learning rate
      times the factor). Gradients are gated too, so momentum does not build up while frozen.

    Note: each group gets its own ``tx`` state, so global-norm clipping inside ``tx`` clips each
    group by its own norm.
    """
    if not freeze:
        return tx
    if unfreeze_after is None or unfreeze_after < 0:
        backbone = optax.set_to_zero()
    else:
        backbone = optax.chain(gate(unfreeze_after), tx, gate(unfreeze_after, backbone_lr_factor))

    def labels(params):
        return jax.tree.map(lambda t: "train" if t else "backbone", trainable_mask(params, freeze))

    return optax.multi_transform({"train": tx, "backbone": backbone}, labels)


# --------------------------------------------------------------------------- batch norm


def _running_average(next_fun, args, kwargs, context):
    """Interceptor: every BatchNorm call normalises with (and keeps) its running statistics."""
    module = context.module
    if isinstance(module, nn.BatchNorm) and context.method_name == "__call__":
        # BatchNorm merges its attribute with the call argument and refuses both set; the module
        # instance is created anew by its parent on every call, so setting it here is local.
        object.__setattr__(module, "use_running_average", True)
        kwargs = {k: v for k, v in kwargs.items() if k != "use_running_average"}
    return next_fun(*args, **kwargs)


@dataclasses.dataclass(frozen=True)
class FrozenBatchNorm:
    """A model whose batch norms stay in inference mode while ``train=True`` still turns on
    dropout (and aux heads). It stands in for the model wherever ``init``/``apply`` are called;
    the batch statistics come back unchanged from a ``mutable=['batch_stats']`` apply."""

    model: nn.Module

    def init(self, *args, **kwargs):
        return self.model.init(*args, **kwargs)

    def apply(self, *args, **kwargs):
        with nn.intercept_methods(_running_average):
            return self.model.apply(*args, **kwargs)

    def __getattr__(self, name):  # one_vs_rest and other model attributes
        if name == "model":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.model, name)


def freeze_batch_norm(model: nn.Module) -> FrozenBatchNorm:
    return FrozenBatchNorm(model)
