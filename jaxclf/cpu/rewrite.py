"""The CPU pass: a jitted program's convolutions and max pooling rewritten for XLA:CPU when,
and only when, the program is lowered for the CPU.

``optimize(fun)`` traces ``fun`` (a train or eval step, after its gradients are taken) and
wraps each eqn of a kind in ``REWRITES`` (wherever it sits: inside scans, loops, conds, nested
jits) in ``cpu_kernel_p``, which carries the original primitive and its parameters. That
primitive lowers, for the CPU, to what ``REWRITES`` selects for the eqn (oneDNN's
convolutions, a convolution written as a matmul over patches, channels-last gradient
convolutions, tiled max pooling), and for every other platform, or for ``jax.export``, to
exactly the original eqn. So the decision is taken by the platform a program is lowered for,
never by the backend that happened to trace it; gradients, ``jax.jvp`` and export of the models
themselves never see any of this, because the models are plain Flax.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
from jax.extend import core
from jax.interpreters import ad, batching, mlir

# primitive name -> select(params, avals_in, avals_out, context) -> implementation or None.
# Filled by jaxclf.cpu.conv and jaxclf.cpu.pool.
REWRITES: dict[str, Callable] = {}


class Context:
    """What a selection may depend on besides the eqn: the lowering, not the tracing.
    (``jax.export`` always gets the original eqns: its programs must not depend on jaxclf.)"""

    def __init__(self, ctx):
        module = ctx.module_context
        self.for_export = bool(getattr(module.lowering_parameters, "for_export", False))
        self.num_devices = int(getattr(module.axis_context, "num_devices", 1) or 1)


cpu_kernel_p = core.Primitive("jaxclf_cpu_kernel")


def _abstract_eval(*avals, base, base_params):
    return base.abstract_eval(*avals, **dict(base_params))


cpu_kernel_p.def_effectful_abstract_eval(_abstract_eval)


def _original(ctx, *args, base, base_params):
    """The eqn as it was: what every platform but the CPU (and jax.export) lowers."""
    return mlir.lower_fun(lambda *a: base.bind(*a, **dict(base_params)), multiple_results=base.multiple_results)(
        ctx, *args)


def _cpu(ctx, *args, base, base_params):
    context = Context(ctx)
    select = REWRITES[base.name]
    impl = None if context.for_export else select(dict(base_params), ctx.avals_in, ctx.avals_out, context)
    if impl is None:
        return _original(ctx, *args, base=base, base_params=base_params)
    return mlir.lower_fun(impl, multiple_results=False)(ctx, *args)


mlir.register_lowering(cpu_kernel_p, _original)
mlir.register_lowering(cpu_kernel_p, _cpu, platform="cpu")


# Transformed from outside (``jax.grad(cpu.optimize(f))``, ``jax.vmap``), a marked eqn is the
# original op again: the rules are the original primitive's, so the result is right but not
# rewritten (apply ``optimize`` outermost, inside jit, to get the CPU rewrites).
def _jvp(primals, tangents, *, base, base_params):
    return ad.primitive_jvps[base](primals, tangents, **dict(base_params))


def _transpose(cotangent, *args, base, base_params):
    return ad.primitive_transposes[base](cotangent, *args, **dict(base_params))


def _batch(axis_data, args, dims, *, base, base_params):
    return batching.fancy_primitive_batchers[base](axis_data, args, dims, **dict(base_params))


ad.primitive_jvps[cpu_kernel_p] = _jvp
ad.primitive_transposes[cpu_kernel_p] = _transpose
batching.fancy_primitive_batchers[cpu_kernel_p] = _batch


def _rewrite_value(value):
    if isinstance(value, core.ClosedJaxpr):
        jaxpr = _rewrite_jaxpr(value.jaxpr)
        return value if jaxpr is value.jaxpr else value.replace(jaxpr=jaxpr)
    if isinstance(value, core.Jaxpr):
        return _rewrite_jaxpr(value)
    if isinstance(value, tuple) and value and all(isinstance(v, (core.Jaxpr, core.ClosedJaxpr)) for v in value):
        return tuple(map(_rewrite_value, value))
    return value


def _rewrite_eqn(eqn):
    if eqn.primitive.name in REWRITES:
        params = tuple(sorted(eqn.params.items()))
        return eqn.replace(primitive=cpu_kernel_p, params={"base": eqn.primitive, "base_params": params})
    params = {k: _rewrite_value(v) for k, v in eqn.params.items()}
    if all(params[k] is v for k, v in eqn.params.items()):
        return eqn
    return eqn.replace(params=params)


def _rewrite_jaxpr(jaxpr):
    eqns = [_rewrite_eqn(e) for e in jaxpr.eqns]
    if all(a is b for a, b in zip(eqns, jaxpr.eqns)):
        return jaxpr
    return jaxpr.replace(eqns=eqns)


def optimize(fun: Callable) -> Callable:
    """``fun`` with its convolutions and max pooling marked for the CPU rewrites above.

    Call it inside ``jax.jit`` on the whole step (gradients included):
    ``jax.jit(cpu.optimize(step), ...)``. Keyword arguments are taken as static (bound
    before tracing); positional arguments are the arrays. On GPU/TPU the lowered program is
    the original one.
    """

    @functools.wraps(fun)
    def wrapped(*args: Any, **static: Any):
        bound = functools.partial(fun, **static) if static else fun
        closed, shapes = jax.make_jaxpr(bound, return_shape=True)(*args)
        closed = closed.replace(jaxpr=_rewrite_jaxpr(closed.jaxpr))
        out = core.jaxpr_as_fun(closed)(*jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(shapes), out)

    return wrapped
