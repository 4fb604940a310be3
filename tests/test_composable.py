"""Every registered model composes with JAX's transformations, on every backend (issue #19):
forward mode (``jax.jvp``, ``jax.jacfwd``), ``jax.export`` (serialised, deserialised, run),
programs lowered for CUDA and TPU from this CPU-only machine (the CPU pass leaves them as they
were), and gradients of gradients.

References are independent of the transformation under test: a forward-mode tangent is checked
against reverse mode through the transposition identity ``<u, J v> = <J^T u, v>`` (JVP rules
vs transpose rules), ``jacfwd`` against ``jacrev``, an exported program against the model
itself, a Hessian-vector product (forward over reverse) against reverse over reverse.

Sizes are tiny (widths of 4-8, inputs of 8-32 pixels or 5 steps), so compiling dominates. Forward
mode is run for one model of each layout and traced (``jax.eval_shape``) for the deeper stacks of
the same blocks (ResNet-34/32/44/56/110/101/152, VGG-13/16/19); every export is run but the
deepest ResNets' (101, 152, 110), which are exported, round-tripped and lowered from shapes only.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import fast_init, stablehlo_ops
from jaxclf import cpu, models

B = 2


@dataclasses.dataclass(frozen=True)
class Spec:
    """How to call one registered model small: kwargs, input, the extra call arguments."""

    kwargs: dict
    shape: tuple
    tokens: int = 0  # > 0: integer inputs in [1, tokens) (text models: no input derivative)
    extra: str = ""  # 'targets' (teacher forcing) or 'latent' (rnn_generator's float condition)
    run: bool = True  # False: forward mode traced only (deeper stacks of blocks run in a smaller model)
    abstract: bool = False  # True: nothing compiled or run, shapes only (the deepest ResNets)


IMAGENET = dict(widths=(4, 4, 8, 8))
CIFAR = dict(widths=(4, 4, 8))
VGG = dict(widths=(4, 4, 8, 8, 8), hidden=(8, 8), pool_size=1, dropout_rate=0.0)
RNN = dict(hidden=8)
SKETCH = dict(enc_hidden=4, dec_hidden=8, z_size=3, num_mixtures=2)
SPECS: dict[str, Spec] = {
    "alexnet": Spec(dict(widths=(4, 4, 4, 4, 4), hidden=(8, 8), pool_size=1, dropout_rate=0.0), (B, 63, 63, 3)),
    # Traced only: its blocks (conv + batch norm, max pooling, concatenation) run numerically
    # in the other families, and its compile alone cost a third of this file's time.
    "googlenet": Spec(dict(width_mult=1 / 16, dropout_rate=0.0), (B, 32, 32, 3), run=False),
    "conv1d": Spec(dict(channels=4), (B, 24, 1)),
    "lenet5": Spec({}, (B, 28, 28, 1)),
    "linear": Spec({}, (B, 6)),
    "linear_ovr": Spec({}, (B, 6)),
    "mlp": Spec(dict(hidden=(8,)), (B, 6)),
    **{n: Spec(RNN, (B, 5, 3)) for n in ("rnn", "lstm", "gru", "bilstm", "bigru", "lstm_attention", "rnn_classifier",
                                         "rnn_tagger")},
    "rnn_generator": Spec(dict(hidden=8, vocab_size=5, embed_dim=4), (B, 3), extra="latent"),
    "seq2seq": Spec(dict(hidden=8, embed_dim=4), (B, 5, 3), extra="targets"),
    # Forward mode runs for one of each layout (ImageNet/CIFAR stem, with and without batch
    # norm); the deeper stacks and the bottleneck blocks are traced (their export runs).
    **{n: Spec(IMAGENET, (B, 32, 32, 3), run=n == "resnet18", abstract=n in ("resnet101", "resnet152"))
       for n in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")},
    **{n: Spec(CIFAR, (B, 8, 8, 3), run=n == "resnet20", abstract=n == "resnet110")
       for n in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")},
    **{n: Spec(VGG, (B, 32, 32, 3), run=n in ("vgg11", "vgg11_bn"))
       for n in ("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn")},
    "sketch_rnn": Spec(SKETCH, (B, 6, 5)),
    "sketch_rnn_unconditional": Spec(SKETCH, (B, 6, 5)),
    "text_cnn": Spec(dict(vocab_size=12, embed_dim=4, widths=(2, 3), features=4, dropout_rate=0.0), (B, 7), tokens=12),
    "text_rnn": Spec(dict(vocab_size=12, embed_dim=4, hidden=8), (B, 7), tokens=12),
}
NUM_CLASSES = 3
TARGET_STEPS = 4


def test_every_registered_model_has_a_spec():
    assert sorted(SPECS) == models.names()


@functools.cache
def _setup(name: str):
    """(model, params, other variables, input, extra call kwargs) of ``name``, built once."""
    spec = SPECS[name]
    classes = {"num_classes": NUM_CLASSES} if "num_classes" in models.describe(name) else {}
    model = models.create(name, **classes, **spec.kwargs)
    key = jax.random.key(0)
    if spec.tokens:
        x = jax.random.randint(key, spec.shape, 1, spec.tokens)
    else:
        x = jax.random.normal(key, spec.shape)
    extra = {"train": False}
    if spec.extra == "targets":
        extra["targets"] = jax.random.randint(jax.random.key(1), (B, TARGET_STEPS), 0, NUM_CLASSES)
    elif spec.extra == "latent":
        extra["targets"] = jax.random.randint(jax.random.key(1), (B, TARGET_STEPS), 0, spec.kwargs["vocab_size"])
    init = functools.partial(model.init, **extra)
    if spec.abstract:  # shapes only: nothing compiled
        variables = jax.eval_shape(init, jax.random.key(2), x)
    else:  # conv nets: numpy-drawn values (compiling init's PRNG would dominate)
        variables = fast_init(model, x, **extra) or jax.jit(init)(jax.random.key(2), x)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}
    if spec.abstract:  # closed over by _forward: constants (batch statistics; shapes are what count)
        rest = jax.tree.map(lambda a: jnp.ones(a.shape, a.dtype), rest)
    return model, params, rest, x, extra


def _forward(name: str):
    """``(params, x) -> logits`` (eval mode; Sketch-RNN: its dict of outputs)."""
    model, _, rest, _, extra = _setup(name)
    return lambda params, x: model.apply({"params": params, **rest}, x, **extra)


def _normal_like(tree, seed: int):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return treedef.unflatten([jax.random.normal(k, l.shape, l.dtype) for k, l in zip(keys, leaves)])


def _vdot(a, b) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _norm(a) -> jax.Array:
    return jnp.sqrt(_vdot(a, a))


def _differentiable(name: str) -> tuple[int, ...]:
    """Which of (params, x) forward mode is taken for: integer inputs (text) have no tangent."""
    return (0,) if SPECS[name].tokens else (0, 1)


def _assert_transposes(jv, u, grads, tangents):
    """``<u, J v> == <J^T u, v>`` to float32 round-off, relative to the Cauchy-Schwarz bounds
    ``|u| |J v|`` and ``|J^T u| |v|`` of the two sides (sums with cancellation)."""
    left, right = _vdot(u, jv), _vdot(grads, tangents)
    bound = jnp.maximum(_norm(u) * _norm(jv), _norm(grads) * _norm(tangents))
    assert bound > 0
    assert abs(left - right) <= 1e-5 * bound, (float(left), float(right), float(bound))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_jvp_agrees_with_reverse_mode(name):
    """``jax.jvp`` of the logits w.r.t. the parameters and the input, checked against the
    VJP (``<u, J v> = <J^T u, v>``); the deepest ResNets are traced in forward mode only."""
    _, params, _, x, _ = _setup(name)
    argnums = _differentiable(name)
    primals = (params, x)
    f = _forward(name)

    def f_diff(*diff):
        args = list(primals)
        for i, a in zip(argnums, diff):
            args[i] = a
        return f(*args)

    diff = tuple(primals[i] for i in argnums)
    if not SPECS[name].run:  # traced: forward mode has a rule for every operation
        out, jv = jax.eval_shape(lambda d: jax.jvp(f_diff, d, d), diff)
        assert jax.tree.map(lambda a: (a.shape, a.dtype), jv) == jax.tree.map(lambda a: (a.shape, a.dtype), out)
        return
    tangents = tuple(_normal_like(d, seed=3 + i) for i, d in enumerate(diff))
    u = _normal_like(jax.eval_shape(f_diff, *diff), seed=9)

    @jax.jit
    def both(diff, tangents, u):  # one program: compiling dominates
        return jax.jvp(f_diff, diff, tangents)[1], jax.vjp(f_diff, *diff)[1](u)

    jv, grads = both(diff, tangents, u)
    _assert_transposes(jv, u, grads, tangents)


JACOBIANS = [  # tiny enough that a full Jacobian is cheap; each family's forward rules
    ("lenet5", 1, (1, 28, 28, 1)),  # conv + max pool, w.r.t. the input
    ("resnet20", 0, (1, 8, 8, 3)),  # conv + batch norm + zero-pad shortcut, w.r.t. the parameters
    ("vgg11_bn", 1, (1, 32, 32, 3)),
    ("lstm", 0, (1, 5, 3)),  # w.r.t. the parameters, through the scan
    ("gru", 1, (1, 5, 3)),
]


@pytest.mark.parametrize("name,argnum,shape", JACOBIANS, ids=[j[0] for j in JACOBIANS])
def test_jacfwd_equals_jacrev(name, argnum, shape):
    _, params, _, _, _ = _setup(name)
    x = jax.random.normal(jax.random.key(4), shape)
    f = _forward(name)
    fwd, rev = jax.jit(lambda p, x: (jax.jacfwd(f, argnums=argnum)(p, x), jax.jacrev(f, argnums=argnum)(p, x)))(params, x)
    assert jax.tree.structure(fwd) == jax.tree.structure(rev)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), fwd, rev)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_export_serialise_deserialise_gives_the_models_logits(name):
    """The user's program (``jax.jit`` of the model) exported for this CPU with the default
    settings, serialised, deserialised and called, gives the model's logits. (The deepest ResNets,
    shapes only: the round trip keeps the module and its signature.)"""
    _, params, _, x, _ = _setup(name)
    f = _forward(name)
    exported = jax.export.export(jax.jit(f))(params, x)
    assert exported.platforms == ("cpu",)
    assert not _custom_calls(exported.mlir_module())
    restored = jax.export.deserialize(exported.serialize())
    if SPECS[name].abstract:
        assert restored.mlir_module() == exported.mlir_module()
        assert (restored.in_avals, restored.out_avals) == (exported.in_avals, exported.out_avals)
        return
    ours, ref = jax.jit(lambda p, x: (restored.call(p, x), f(p, x)))(params, x)  # one program to compile
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), ours, ref)


def _custom_calls(mlir_text: str) -> dict[str, int]:
    """The targets of a module's custom calls (``@Sharding`` comes from sharding constraints)."""
    counts: dict[str, int] = {}
    for target in re.findall(r"custom_call\s*@([\w.$-]+)", mlir_text):
        counts[target] = counts.get(target, 0) + 1
    return counts


ACCELERATORS = ["cuda", "tpu"]


def _assert_plain_for_accelerators(optimized_text: str, plain_text: str):
    """No custom call but sharding annotations, and the same StableHLO ops as the plain program."""
    calls = _custom_calls(optimized_text)
    assert set(calls) <= {"Sharding"}, calls
    assert calls == _custom_calls(plain_text)
    assert stablehlo_ops(optimized_text) == stablehlo_ops(plain_text)
    assert stablehlo_ops(plain_text)  # what the comparison counts exists


def _assert_exports_are_plain(optimized, plain, *args, **static):
    """``jax.export`` for CUDA and TPU (one multi-platform module) of the CPU-optimised function
    is the plain function's."""
    texts = [jax.export.export(f, platforms=ACCELERATORS)(*args, **static).mlir_module() for f in (optimized, plain)]
    _assert_plain_for_accelerators(*texts)


def _assert_lowerings_are_plain(optimized, plain, *args, **static):
    """Lowered (not exported) for each accelerator, the CPU-optimised function is the plain one:
    the CPU pass is decided by the platform lowered for, not by ``jax.export``."""
    for platform in ACCELERATORS:
        texts = [f.trace(*args, **static).lower(lowering_platforms=(platform,)).as_text() for f in (optimized, plain)]
        _assert_plain_for_accelerators(*texts)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_programs_for_cuda_and_tpu_are_plain_xla(name):
    """``jax.export(..., platforms=['cuda', 'tpu'])`` of the model, CPU pass included, from this
    CPU-only machine: XLA's own ops, no custom call."""
    _, params, _, x, _ = _setup(name)
    f = _forward(name)
    _assert_exports_are_plain(jax.jit(cpu.optimize(f)), jax.jit(f), params, x)


# ----------------------------------------------------------------------------- train steps


def _train_step(name: str):
    """jaxclf's own train step (``state.make_steps``: loss, gradients, SGD momentum, metrics)
    with its initial state and a batch, for a classifier or Sketch-RNN."""
    from jaxclf import metrics
    from jaxclf.train import optim, steps as steps_lib
    from jaxclf.config import base_config

    model, _, _, x, _ = _setup(name)
    cfg = base_config().optim
    cfg.name, cfg.lr, cfg.momentum, cfg.schedule = "momentum", 0.01, 0.9, "constant"
    tx = optim.optimizer(cfg, num_steps=1)
    if name.startswith("sketch_rnn"):
        task = dict(task="generative", family_loss=models.loss(name, model))
        metric_set = metrics.means(models.loss_scalars(name))
    else:
        task = dict(task="multiclass")
        metric_set = metrics.collection(("accuracy",), num_classes=NUM_CLASSES)
    step = steps_lib.make_steps(model, tx, metric_set, key=jax.random.key(5), **task)[0]
    state = jax.jit(functools.partial(steps_lib.init_state, model, tx, x[:1], jax.random.key(6)))()
    batch = {"inputs": x, "labels": jnp.arange(B) % NUM_CLASSES, "mask": jnp.ones(B)}
    return step, state, batch


TRAIN_STEPS = ["resnet20", "sketch_rnn"]  # LeNet-5: the loop test below


@pytest.mark.parametrize("name", TRAIN_STEPS)
def test_train_step_exports_and_lowers_for_accelerators(name):
    """A train step as jaxclf jits it (``cpu.optimize`` over the whole step) exported with the
    default settings runs like the step itself; exported for CUDA/TPU it is the plain step."""
    step, state, batch = _train_step(name)
    leaves, treedef = jax.tree.flatten((state, batch))

    def flat_step(*leaves):  # serialisation needs registered pytree nodes: arrays in and out
        return jax.tree.leaves(step(*treedef.unflatten(leaves)))

    optimized = jax.jit(cpu.optimize(flat_step))
    exported = jax.export.export(optimized)(*leaves)
    assert not _custom_calls(exported.mlir_module())
    restored = jax.export.deserialize(exported.serialize())
    ours, ref = jax.jit(lambda *a: (restored.call(*a), flat_step(*a)))(*leaves)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), ours, ref)
    _assert_exports_are_plain(optimized, jax.jit(flat_step), *leaves)


def test_training_loops_step_function_lowers_to_plain_xla_for_accelerators(smoke_config):
    """The loop's own jitted ``train`` (``cpu.optimize`` inside ``jax.jit``, a scan of
    ``steps_per_call`` steps gathering batches from device arrays) lowered for CUDA and TPU:
    no custom call, and the same StableHLO as that function without the CPU pass."""
    from jaxclf.train import compiled, mesh as mesh_lib

    config = smoke_config
    config.train.steps_per_call = 2
    program = compiled.compile_run(config, mesh_lib.make_mesh(jax.devices()[:1]))
    state, acc = program.init()
    inputs = next(program.inputs.chunks([(0, 2)]))
    # The same function without the CPU pass: what ``cpu.optimize`` wrapped, jitted alike.
    plain = jax.jit(program.train.__wrapped__.__wrapped__, donate_argnums=(0, 1), static_argnames="num_steps")
    assert "jaxclf_cpu_kernel" in str(program.train.trace(state, acc, inputs, num_steps=2).jaxpr)
    assert "jaxclf_cpu_kernel" not in str(plain.trace(state, acc, inputs, num_steps=2).jaxpr)
    _assert_lowerings_are_plain(program.train, plain, state, acc, inputs, num_steps=2)
    _assert_exports_are_plain(program.train, plain, state, acc, inputs, num_steps=2)


# ----------------------------------------------------------------------------- second order

SECOND_ORDER = [("lenet5", True), ("conv1d", False), ("resnet20", False), ("lstm", False)]  # (model, also CPU pass)


@pytest.mark.parametrize("name,cpu_pass", SECOND_ORDER, ids=[s[0] for s in SECOND_ORDER])
def test_hessian_vector_products_and_gradient_penalty(name, cpu_pass):
    """Forward over reverse (``jax.jvp`` of ``jax.grad``, the cheap Hessian-vector product)
    equals reverse over reverse (``jax.grad`` of ``<grad, v>``), in training mode (batch
    statistics); a gradient penalty ``|d loss / d x|^2`` has the gradient whose directional
    derivative forward mode gives; and (LeNet-5) the CPU pass over that program changes nothing."""
    model, params, rest, x, _ = _setup(name)
    labels = jnp.arange(B) % NUM_CLASSES

    def loss(params, x):
        logits, _ = model.apply({"params": params, **rest}, x, train=True, mutable=list(rest))
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], -1))

    v = _normal_like(params, seed=7)
    penalty = lambda p: jnp.sum(jax.grad(loss, argnums=1)(p, x) ** 2)  # noqa: E731

    def second_order(p):
        hvp_fwd = jax.jvp(lambda q: jax.grad(loss)(q, x), (p,), (v,))[1]
        hvp_rev = jax.grad(lambda q: _vdot(jax.grad(loss)(q, x), v))(p)
        return hvp_fwd, hvp_rev, jax.grad(penalty)(p), jax.jvp(penalty, (p,), (v,))[1]

    fwd, rev, grad, directional = out = jax.jit(second_order)(params)
    scale = float(_norm(rev))
    assert scale > 0
    close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5 * scale)
    jax.tree.map(close, fwd, rev)
    assert abs(directional - _vdot(grad, v)) <= 1e-5 * float(_norm(grad) * _norm(v))
    if cpu_pass:  # oneDNN's convolutions in a forward-over-reverse program
        for got, want in zip(jax.jit(cpu.optimize(second_order))(params), out):
            tol = 1e-5 * float(_norm(want))  # of the whole tree: some leaves are round-off around 0
            jax.tree.map(lambda a, b, tol=tol: np.testing.assert_allclose(a, b, rtol=1e-4, atol=tol), got, want)
