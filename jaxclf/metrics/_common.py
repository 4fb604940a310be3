"""Shared helpers: weights, safe division (the ``zero_division`` policy) and input checks.

Labels: every metric declares its classes ``0 .. K-1`` (``num_classes``, the score's columns,
or 0/1 for binary scores and indicators) instead of inferring them from the data as sklearn
does. A counted label outside that range (rows of weight 0 never count) makes the result
invalid: outside jit a ValueError names it; inside jit, where values cannot be inspected, the
result is NaN. :func:`labels_valid` is the jittable check, :func:`check_labels` the raising one.

``zero_division`` follows scikit-learn: when a ratio's denominator is zero (no true positives
and no predicted positives, a class absent from both, a single class, ...) the ratio is
``zero_division`` (sklearn's 0.0, 1.0 or ``nan``; any float is accepted) instead of
raising; sklearn's "warn" is 0.0 here (warnings cannot be raised inside jit). Averages over classes ignore ``nan`` entries, as
sklearn's ``_nanaverage`` does.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def is_traced(x) -> bool:
    """True inside jit/vmap/grad, where values cannot be inspected."""
    return isinstance(x, jax.core.Tracer)


def check_finite(x, name: str):
    """Raises ValueError on NaN/inf outside jit; inside jit non-finite rows must be masked.

    Under jit nothing can raise: a NaN or inf score still gets a place in the sort (NaN above
    +inf), so unmasked results are defined but meaningless. Give such rows ``sample_weight``
    0, e.g. ``jnp.isfinite(score)``: zero-weight rows never count, whatever their score
    (probability metrics such as log loss need the value replaced too).
    """
    if x is None or is_traced(x):
        return
    arr = np.asarray(x)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; mask those rows (sample_weight=0) "
                         "and replace their values")


def replicated(*arrays):
    """Gathers arrays sharded on an Explicit-axes mesh (``jax.make_mesh``'s default).

    Sorts and scatter-adds over a batch-sharded axis are rejected in explicit sharding mode;
    metric inputs are small (B x K), so every device takes the whole batch. Arrays that are
    not explicitly sharded pass through unchanged (XLA then partitions or gathers itself).
    """
    out = []
    for x in arrays:
        sh = getattr(jax.typeof(x), "sharding", None) if x is not None else None
        mesh = getattr(sh, "mesh", None)
        if (mesh is not None and jax.sharding.AxisType.Explicit in tuple(mesh.axis_types)
                and any(p is not None for p in sh.spec)):
            whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
            x = jax.sharding.reshard(x, whole)
        out.append(x)
    return out if len(out) != 1 else out[0]


def weights(sample_weight, n: int) -> jax.Array:
    """Per-example float32 weights; None means all ones. A 0/1 mask is a weight."""
    if sample_weight is None:
        return jnp.ones((n,), jnp.float32)
    check_finite(sample_weight, "sample_weight")
    return replicated(jnp.asarray(sample_weight, jnp.float32).reshape(n))


def divide(num, den, zero_division=0.0) -> jax.Array:
    """num / den, or ``zero_division`` where den == 0 (see module docstring)."""
    zd = zero_division if isinstance(zero_division, jax.Array) else _zero_division_value(
        zero_division)
    den_ok = den != 0
    return jnp.where(den_ok, num / jnp.where(den_ok, den, 1.0), zd)


def _zero_division_value(zero_division) -> float:
    if zero_division == "warn":
        return 0.0
    try:
        return float(zero_division)
    except (TypeError, ValueError):
        raise ValueError(f"zero_division must be a float (0.0, 1.0, nan) or 'warn', "
                         f"got {zero_division!r}") from None


def nanaverage(values, weights=None) -> jax.Array:
    """Weighted mean ignoring NaN entries; NaN if nothing is left (sklearn's _nanaverage).

    With ``weights`` whose (non-NaN) sum is zero, the plain mean is returned, as in sklearn
    (e.g. 'weighted' averaging when every class has zero support).
    """
    ok = ~jnp.isnan(values)
    v = jnp.where(ok, values, 0.0)
    plain = divide(v.sum(), ok.sum(), jnp.nan)
    if weights is None:
        return plain
    w = jnp.where(ok, weights, 0.0)
    return jnp.where(w.sum() > 0, (v * w).sum() / jnp.where(w.sum() > 0, w.sum(), 1.0), plain)


class LabelCheck(NamedTuple):
    """Counted labels outside ``[0, k)`` of one input: a pytree, so jitted code returns it."""

    bad: jax.Array  # number of counted labels outside [0, k) (non-integers included)
    example: jax.Array  # one offending label (0 if none)
    k: jax.Array  # the declared number of classes


def label_check(y, k: int, sample_weight=None) -> LabelCheck:
    """Which labels of ``y`` (any shape, rows on axis 0) lie outside ``[0, k)``; rows whose
    weight is 0 are padding and never count. One compiled program when called eagerly."""
    y = replicated(jnp.asarray(y))
    if sample_weight is not None:
        sample_weight = replicated(jnp.asarray(sample_weight, jnp.float32))
    return _label_check(y, k, sample_weight)


@functools.partial(jax.jit, static_argnums=(1,))
def _label_check(y, k, sample_weight):
    yf = y.astype(jnp.float32) if jnp.issubdtype(y.dtype, jnp.floating) else y
    bad = (yf < 0) | (yf >= k)
    if jnp.issubdtype(y.dtype, jnp.floating):
        bad = bad | (yf != jnp.floor(yf))
    if sample_weight is not None and y.ndim >= 1:
        w = sample_weight.reshape((y.shape[0],) + (1,) * (y.ndim - 1))
        bad = bad & (w != 0)
    example = jnp.where(bad, yf, 0).reshape(-1)[jnp.argmax(bad.reshape(-1))] if bad.size else 0
    return LabelCheck(bad.sum(), jnp.asarray(example), jnp.asarray(k, jnp.int32))


def merge_checks(*checks: LabelCheck) -> LabelCheck:
    """One check of several inputs (the first offending input's example)."""
    bad = sum(c.bad for c in checks)
    first = checks[0]
    for c in checks[1:]:
        first = jax.tree.map(lambda a, b, ok=first.bad > 0: jnp.where(ok, a, b), first, c)
    return first._replace(bad=bad)


def invalidate(value, check: LabelCheck):
    """``value`` (any pytree of floats) as NaN where the check found bad labels."""
    return jax.tree.map(lambda v: jnp.where(check.bad > 0, jnp.nan, v)
                        if jnp.issubdtype(jnp.result_type(v), jnp.floating) else v, value)


def raise_invalid(check: LabelCheck, name: str = "y_true", hint: str = "") -> None:
    """Raises ValueError for a concrete failed check; a traced one passes (result is NaN)."""
    if is_traced(check.bad) or int(check.bad) == 0:
        return
    k = int(check.k)
    example = float(check.example)
    example = int(example) if example.is_integer() else example
    valid = "0 or 1" if k == 2 else f"integers in [0, {k})"
    raise ValueError(f"{name} has {int(check.bad)} label(s) outside the declared classes "
                     f"(e.g. {example}); valid labels: {valid}" + (f". {hint}" if hint else ""))


def settle(value, check: LabelCheck, name: str = "y_true", hint: str = ""):
    """Outside jit: raise on bad labels. Inside jit: NaN where labels are bad."""
    if is_traced(check.bad):
        return invalidate(value, check)
    raise_invalid(check, name, hint)
    return value


def labels_valid(y, *, num_classes: int, sample_weight=None) -> jax.Array:
    """Boolean scalar (jittable): every counted label of ``y`` is an integer in
    ``[0, num_classes)`` (rows of ``sample_weight`` 0 never count). For 0/1 indicator
    arrays pass ``num_classes=2``."""
    return label_check(y, num_classes, sample_weight).bad == 0


def check_labels(y, *, num_classes: int, sample_weight=None, name: str = "y_true") -> None:
    """Raises ValueError naming an offending label unless every counted label of ``y`` is in
    ``[0, num_classes)``; call it outside jit (inside jit use :func:`labels_valid`)."""
    if is_traced(y):
        raise ValueError("check_labels needs concrete values; inside jit use labels_valid "
                         "(a boolean array) or read the NaN the metrics return")
    raise_invalid(label_check(y, num_classes, sample_weight), name)


def as_labels(y, name: str = "y") -> jax.Array:
    """Integer labels as int32 (floats 0./1. accepted)."""
    return replicated(jnp.asarray(y).astype(jnp.int32))


def jit_metric(*static_argnames: str, finite: tuple[str, ...] = (), hint: str = ""):
    """Compiles a metric once per shape and static options, keeping eager calls fast.

    Outside jit the arrays named in ``finite`` are checked for NaN/inf first. A
    ``zero_division`` keyword is validated here and passed traced (NaN is no cache key).
    ``fn`` returns ``(value, LabelCheck of y_true)``, value already NaN for bad labels; the
    wrapper returns the value and, when the check is concrete, raises for bad labels.
    """

    def deco(fn):
        jitted = jax.jit(fn, static_argnames=static_argnames)
        names = fn.__code__.co_varnames[: fn.__code__.co_argcount]

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for name in finite:
                value = args[names.index(name)] if name in names[: len(args)] else kwargs.get(name)
                check_finite(value, name)
            if "zero_division" in kwargs and not isinstance(kwargs["zero_division"], jax.Array):
                kwargs["zero_division"] = jnp.float32(_zero_division_value(kwargs["zero_division"]))
            value, check = jitted(*args, **kwargs)
            raise_invalid(check, "y_true", hint)
            return value

        return wrapper

    return deco
