"""jaxclf.cpu: the CPU rewrites of a jitted step compute what the plain program computes, apply
only when the program is lowered for the CPU, and leave GPU/TPU programs and jax.export alone.

Each case runs the same function jitted plainly and through ``cpu.optimize`` (oneDNN where it
applies, with ``JAXCLF_CONV=xla`` the XLA:CPU formulations: patches, channels-last gradients,
tiled max pooling), values and gradients compared.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from conftest import stablehlo_ops
from jaxclf import cpu, models
from jaxclf.cpu import conv as cpu_conv
from jaxclf.cpu import onednn

NHWC = ("NHWC", "HWIO", "NHWC")


def _value_and_grads(f, *args, optimized: bool):
    """f(*args) and the gradient of a fixed random projection of it w.r.t. every arg, jitted
    plainly or through ``cpu.optimize`` (a new function per call: no shared trace cache)."""
    spec = jax.eval_shape(f, *args)
    probe = jax.random.normal(jax.random.key(1), spec.shape, spec.dtype)

    def value_and_grads(probe, *args):
        return f(*args), jax.grad(lambda *a: jnp.sum(f(*a) * probe), argnums=tuple(range(len(args))))(*args)

    return jax.jit(cpu.optimize(value_and_grads) if optimized else value_and_grads)(probe, *args)


def _assert_close(a, b, rtol=1e-5):
    """Equal within ``rtol`` of the largest entry, per output and per gradient tree."""
    for part_a, part_b in zip(a, b, strict=True):
        scale = max((float(jnp.max(jnp.abs(y))) for y in jax.tree.leaves(part_b)), default=1.0) or 1.0
        for x, y in zip(jax.tree.leaves(part_a), jax.tree.leaves(part_b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=rtol * scale)


def _compiled(f, *args) -> str:
    return jax.jit(cpu.optimize(f)).lower(*args).compile().as_text()


@pytest.fixture(params=["auto", "xla"])
def conv_setting(request, monkeypatch):
    """Both CPU paths: oneDNN (where it applies) and XLA:CPU's formulations."""
    if request.param == "auto":
        assert onednn.load_error() is None, onednn.load_error()  # a dependency on x86-64 Linux
    monkeypatch.setenv(onednn.SETTING, request.param)
    return request.param


# (input shape, kernel shape, strides, padding): the convolutions of the registered CNNs,
# few channels, inputs smaller than the kernel, and 1-D.
CONV_CASES = [
    ((3, 28, 28, 1), (5, 5, 1, 6), (1, 1), ((2, 2), (2, 2))),  # LeNet-5 conv1
    ((3, 14, 14, 6), (5, 5, 6, 16), (1, 1), ((0, 0), (0, 0))),  # LeNet-5 conv2
    ((3, 8, 8, 16), (3, 3, 16, 32), (2, 2), ((1, 1), (1, 1))),  # ResNet stage entry
    ((3, 8, 8, 16), (1, 1, 16, 32), (2, 2), ((0, 0), (0, 0))),  # projection shortcut
    ((2, 15, 17, 3), (7, 7, 3, 8), (2, 2), ((3, 3), (3, 3))),  # ImageNet stem, odd sizes
    ((2, 35, 35, 3), (11, 11, 3, 8), (4, 4), ((2, 2), (2, 2))),  # AlexNet conv1
    ((2, 9, 10, 4), (3, 2, 4, 5), (2, 1), ((2, 1), (0, 2))),  # uneven everything
    ((4, 2, 2, 32), (3, 3, 32, 16), (1, 1), ((1, 1), (1, 1))),  # smaller than the kernel
    ((4, 40, 1), (5, 1, 25), (2,), ((1, 1),)),  # MNIST-1D's 1-D convolution
    ((32, 8, 8, 16), (3, 3, 16, 16), (1, 1), ((1, 1), (1, 1))),  # big enough to sum in chunks
]


@pytest.mark.parametrize("x_shape,w_shape,strides,padding", CONV_CASES)
def test_convolutions_match_lax(x_shape, w_shape, strides, padding, conv_setting, monkeypatch):
    monkeypatch.setattr(cpu_conv, "KERNEL_GRADIENT_MIN_BYTES", 2**16)  # the last case sums in chunks
    x = jax.random.normal(jax.random.key(0), x_shape)
    w = jax.random.normal(jax.random.key(1), w_shape)
    dims = NHWC if len(x_shape) == 4 else ("NWC", "WIO", "NWC")
    f = lambda x, w: lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dims)  # noqa: E731
    fast = _value_and_grads(f, x, w, optimized=True)
    _assert_close(fast, _value_and_grads(f, x, w, optimized=False))
    program = _compiled(lambda x, w: jax.vjp(f, x, w)[1](f(x, w)), x, w)
    on_onednn = conv_setting == "auto" and len(x_shape) == 4 and x_shape[1] >= w_shape[0]
    assert program.count("jaxclf_onednn") == (3 if on_onednn else 0)


@pytest.mark.parametrize("x_shape,w_shape,strides,padding", CONV_CASES[:-2])
def test_every_form_is_recognised_with_its_forward_convolution(x_shape, w_shape, strides, padding):
    """The forward pass and both gradient convolutions JAX writes map back to the same forward
    convolution (what oneDNN needs to build its primitives)."""
    x = jax.ShapeDtypeStruct(x_shape, jnp.float32)
    w = jax.ShapeDtypeStruct(w_shape, jnp.float32)
    f = lambda x, w: lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)  # noqa: E731
    jaxpr = jax.make_jaxpr(lambda x, w: jax.vjp(f, x, w)[1](f(x, w)))(x, w)
    found = {}
    for eqn in cpu_conv._conv_eqns(jaxpr.jaxpr):
        shapes = [v.aval.shape for v in (*eqn.invars, *eqn.outvars)]
        part, spec = cpu_conv.match(eqn.params, *shapes)
        found[part] = spec
    assert set(found) == set(cpu_conv.PARTS)
    assert {(s.x_shape, s.w_shape, s.strides) for s in found.values()} == {(x_shape, w_shape, strides)}
    y_shape = jax.eval_shape(f, x, w).shape
    assert all(s.y_shape == y_shape for s in found.values())


def test_other_convolutions_are_left_to_xla():
    x, w = jnp.ones((2, 9, 9, 4)), jnp.ones((3, 3, 2, 6))
    grouped = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC,  # noqa: E731
                                                    feature_group_count=2)
    dilated = lambda x, w: lax.conv_general_dilated(x, w[:, :, :2].repeat(2, 2), (1, 1), "SAME",  # noqa: E731
                                                    rhs_dilation=(2, 2), dimension_numbers=NHWC)
    for f in (grouped, dilated):
        assert "jaxclf_onednn" not in _compiled(f, x, w)
        _assert_close(_value_and_grads(f, x, w, optimized=True), _value_and_grads(f, x, w, optimized=False))


@pytest.mark.parametrize("shape,window,pads", [
    ((3, 24, 24, 6), 2, ((0, 0), (0, 0))),
    ((3, 7, 9, 4), 2, ((0, 0), (0, 0))),  # odd sizes: the last row/column is in no window
    ((3, 7, 7, 4), 2, ((0, 1), (0, 1))),  # GoogLeNet's ceil mode pads bottom/right
    ((3, 9, 9, 2), 3, ((0, 0), (0, 0))),
])
def test_tiled_max_pool_matches_reduce_window(shape, window, pads):
    # Small integers make ties within windows common: the gradient must pick the same tap.
    x = jax.random.randint(jax.random.key(0), shape, -3, 4).astype(jnp.float32)
    w = (window, window)
    f = lambda x: nn.max_pool(x, w, w, pads)  # noqa: E731
    _assert_close(_value_and_grads(f, x, optimized=True), _value_and_grads(f, x, optimized=False), rtol=0)
    program = jax.jit(cpu.optimize(lambda x: jax.grad(lambda x: jnp.sum(f(x) ** 2))(x))).lower(x).as_text()
    assert "select_and_scatter" not in program and "reduce_window" not in program


def test_conv_gradients_in_a_scan_keep_the_fast_layout(monkeypatch):
    """Inside a loop body XLA:CPU does not rewrite JAX's gradient convolutions into the
    channels-last layout it runs fast (they ran as naive loops, 10-200x slower); through the
    CPU pass every convolution of a scanned train step is in it (XLA's path: JAXCLF_CONV=xla)."""
    monkeypatch.setenv(onednn.SETTING, "xla")
    layer = nn.Conv(16, (3, 3), strides=2, padding=((1, 1), (1, 1)))
    x = jax.random.normal(jax.random.key(0), (4, 9, 9, 16))
    params = layer.init(jax.random.key(1), x)

    def steps(params, x):
        def body(p, _):
            g = jax.grad(lambda p: jnp.sum(layer.apply(p, x) ** 2))(p)
            return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), None
        return jax.lax.scan(body, params, None, length=2)[0]

    def layouts(hlo):
        return {line.split("dim_labels=")[1].split(",")[0].split()[0] for line in hlo.splitlines()
                if " convolution(" in line}

    assert layouts(_compiled(steps, params, x)) == {"b01f_01io->b01f"}
    assert len(layouts(jax.jit(steps).lower(params, x).compile().as_text())) > 1  # what this guards against


def _steps(model, x, train=True):
    """A model's loss and gradient as a jaxclf step computes them (batch statistics in training
    mode, the updated statistics returned)."""
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(1, impl="rbg"), x)
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def step(params, x):
        def loss(p):
            out, new = model.apply({"params": p, **state}, x, train=train, mutable=list(state))
            return jnp.sum(out ** 2), new
        return jax.value_and_grad(loss, has_aux=True)(params)

    return step, params


SMALL_CNNS = [
    ("lenet5", {}, (4, 28, 28, 1)),
    ("vgg11_bn", dict(widths=(8, 16, 16, 32, 32), hidden=(16, 16), pool_size=1, dropout_rate=0.0), (4, 32, 32, 3)),
    ("resnet18", dict(widths=(8, 8, 16, 16)), (4, 32, 32, 3)),  # 3x3 convs on 1x1 maps
    ("conv1d", {}, (4, 40, 1)),
]


@pytest.mark.parametrize("name,kwargs,shape", SMALL_CNNS, ids=[c[0] for c in SMALL_CNNS])
def test_models_match_the_plain_program(name, kwargs, shape, conv_setting):
    model = models.create(name, num_classes=10, **kwargs)
    x = jax.random.normal(jax.random.key(0), shape)
    step, params = _steps(model, x)
    compiled = jax.jit(cpu.optimize(step)).lower(params, x).compile()
    fast = compiled(params, x)
    if conv_setting == "auto" and len(shape) == 4:
        assert "jaxclf_onednn" in compiled.as_text()
    # Batch statistics of tiny batches amplify float32 round-off through deep stacks of batch
    # norm (as in the tests of the layers this pass replaced: 1e-3 in training mode).
    _assert_close(fast, jax.jit(step)(params, x), rtol=1e-3)


def test_programs_for_other_platforms_and_export_are_the_original():
    """Lowered for CUDA or TPU (from this CPU-only machine), or exported, the optimised step
    is the plain step: no oneDNN custom calls, no CPU rewrites."""
    model = models.create("resnet20", num_classes=10, stage_sizes=(1, 1, 1))
    x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
    step, params = _steps(model, x)
    for platform in ("cuda", "tpu"):
        fast = jax.jit(cpu.optimize(step)).trace(params, x).lower(lowering_platforms=(platform,)).as_text()
        plain = jax.jit(step).trace(params, x).lower(lowering_platforms=(platform,)).as_text()
        assert "custom_call" not in fast
        assert stablehlo_ops(fast) == stablehlo_ops(plain)
    exported = jax.export.export(jax.jit(cpu.optimize(step)))(params, x)
    assert "custom_call" not in exported.mlir_module()
    restored = jax.export.deserialize(exported.serialize())
    _assert_close(restored.call(params, x), jax.jit(step)(params, x), rtol=1e-5)


def test_onednn_runs_on_one_device_only(monkeypatch):
    """The custom calls have no partitioning rule: a program over several devices keeps XLA's
    convolutions (this session has 4 simulated CPU devices)."""
    assert onednn.load_error() is None, onednn.load_error()
    monkeypatch.setenv(onednn.SETTING, "auto")
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:2]), ("data",))
    sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    x = jax.device_put(jnp.ones((4, 8, 8, 4)), sharded)
    w = jnp.ones((3, 3, 4, 8))
    f = lambda x, w: jnp.sum(lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC))  # noqa: E731
    assert "jaxclf_onednn" not in jax.jit(cpu.optimize(jax.grad(f, argnums=1))).lower(x, w).compile().as_text()
    assert "jaxclf_onednn" in _compiled(jax.grad(f, argnums=1), jnp.ones((4, 8, 8, 4)), w)


def test_vmapped_and_scanned_steps_match(conv_setting):
    """The sweep vmaps a train step over its points (each with its own kernels) and the loop
    scans it."""
    pads = ((1, 1), (1, 1))
    xs = jax.random.normal(jax.random.key(0), (3, 2, 6, 6, 4))
    ws = jax.random.normal(jax.random.key(1), (3, 3, 3, 4, 4))
    conv = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=NHWC)  # noqa: E731
    loss = lambda x, w: jnp.sum(jnp.tanh(conv(x, w)))  # noqa: E731
    vg = jax.vmap(jax.value_and_grad(loss, argnums=(0, 1)))
    _assert_close(jax.jit(cpu.optimize(vg))(xs, ws), jax.jit(vg)(xs, ws))
    scan = lambda ws: lax.scan(lambda x, w: (jnp.tanh(conv(x, w)), None), xs[0], ws)[0]  # noqa: E731
    _assert_close([jax.jit(cpu.optimize(jax.grad(lambda ws: jnp.sum(scan(ws)))))(ws)],
                  [jax.jit(jax.grad(lambda ws: jnp.sum(scan(ws))))(ws)])


def test_gradients_of_gradients_match(conv_setting):
    """Reverse over reverse (e.g. a gradient penalty): the second-order convolutions are
    recognised too, or left to XLA."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    conv = lambda x, w: lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=NHWC)  # noqa: E731

    def grad_norm(x, w):
        gx, gw = jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), argnums=(0, 1))(x, w)
        return jnp.sum(gx ** 2) + jnp.sum(gw ** 2)

    vg = jax.value_and_grad(grad_norm, argnums=(0, 1))
    _assert_close(jax.jit(cpu.optimize(vg))(x, w), jax.jit(vg)(x, w))


def test_conv_setting_errors_name_the_problem(monkeypatch, caplog):
    x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
    f = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)  # noqa: E731
    monkeypatch.setenv(onednn.SETTING, "mkl")
    with pytest.raises(ValueError, match="JAXCLF_CONV='mkl'.*valid: auto, onednn, xla"):
        _compiled(f, x, w)
    monkeypatch.setattr(onednn, "load_error", lambda: "libgomp.so.1: cannot open shared object file")
    monkeypatch.setenv(onednn.SETTING, "onednn")
    with pytest.raises(RuntimeError, match="JAXCLF_CONV=onednn but oneDNN cannot be loaded: libgomp"):
        _compiled(f, x, w)
    monkeypatch.setenv(onednn.SETTING, "auto")  # falls back to XLA, and says why
    with caplog.at_level("WARNING"):
        np.testing.assert_allclose(jax.jit(cpu.optimize(f))(x, w), f(x, w), rtol=1e-6)
    assert "convolutions run on XLA, not oneDNN: libgomp" in caplog.text


def test_onednn_failure_inside_a_program_raises(monkeypatch):
    """An error in the handler reaches the caller as an exception, not a crash or garbage."""
    assert onednn.load_error() is None

    def broken(*args):
        raise RuntimeError("oneDNN: execution failed: runtime error")

    monkeypatch.setattr(onednn, "run", broken)
    x, w = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 3))
    f = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)  # noqa: E731
    with pytest.raises(Exception, match="jaxclf oneDNN convolution: RuntimeError.*runtime error"):
        jax.block_until_ready(jax.jit(cpu.optimize(f))(x, w))


def test_onednn_handler_declares_its_ffi_version(monkeypatch):
    """XLA checks the version the handler reports, so a jaxlib whose call frames differ from
    the structures onednn.py reads refuses it with an error instead of running it."""
    assert onednn.load_error() is None
    monkeypatch.setattr(onednn, "FFI_API_VERSION", (99, 0))
    x, w = jnp.ones((1, 7, 3, 2)), jnp.ones((3, 3, 2, 5))  # a shape no other test registers
    f = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)  # noqa: E731
    with pytest.raises(Exception, match=r"API version \(99\.0\) is incompatible"):
        jax.jit(cpu.optimize(f))(x, w)


def test_tune_scans_plain_cells_and_leaves_other_models():
    lstm = models.create("lstm", num_classes=3, hidden=8)
    assert lstm.hoist and not cpu.tune(lstm).hoist
    lenet = models.create("lenet5", num_classes=3)
    assert cpu.tune(lenet) is lenet


def test_an_optimized_function_transformed_from_outside_is_still_right():
    """``optimize`` belongs outermost, but jax.grad / jax.vmap / jax.jvp of an optimized
    function fall back to the original operations instead of failing."""
    x = jax.random.normal(jax.random.key(0), (3, 2, 6, 6, 4))
    w = jax.random.normal(jax.random.key(1), (3, 3, 4, 5))
    f = lambda x, w: jnp.sum(nn.max_pool(jnp.tanh(lax.conv_general_dilated(  # noqa: E731
        x, w, (1, 1), "SAME", dimension_numbers=NHWC)), (2, 2), (2, 2)) ** 2)
    fast = cpu.optimize(f)
    _assert_close([jax.jit(jax.vmap(jax.grad(fast, argnums=(0, 1)), (0, None)))(x, w)],
                  [jax.jit(jax.vmap(jax.grad(f, argnums=(0, 1)), (0, None)))(x, w)])
    _assert_close(jax.jvp(fast, (x[0], w), (x[1], w)), jax.jvp(f, (x[0], w), (x[1], w)))
