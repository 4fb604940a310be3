"""The CPU fast paths compute what the straightforward layers compute, and bfloat16 compute.

``layers.conv_general_dilated`` (oneDNN's convolutions on one CPU device; else a matmul over
patches for few-channel or smaller-than-kernel inputs, else ``channels_last_conv`` with its
own backward pass) is checked against ``lax.conv_general_dilated``, ``layers.tiled_max_pool`` against ``nn.max_pool`` (values and
gradients, ties included), and whole models against themselves with the fast paths
switched off. With ``dtype='bfloat16'`` every model keeps
float32 parameters and float32 logits close to the float32 model's.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxclf import models
from jaxclf.models import layers

NHWC = ("NHWC", "HWIO", "NHWC")


def _value_and_grads(f, *args):
    """f(*args) and the gradient of a fixed random projection of it w.r.t. every arg.

    Under one jit: op by op, every slice, pad and layer of a model compiles on its own (a
    model took 10-30 s). ``value_and_grads`` is a new function on every call, so JAX's trace
    cache cannot hand the plain layers' call the trace of the fast ones."""
    spec = jax.eval_shape(f, *args)
    probe = jax.random.normal(jax.random.key(1), spec.shape, spec.dtype)

    @jax.jit
    def value_and_grads(probe, *args):
        return f(*args), jax.grad(lambda *a: jnp.sum(f(*a) * probe), argnums=tuple(range(len(args))))(*args)

    return value_and_grads(probe, *args)


def _assert_close(a, b, rtol=1e-5):
    """Equal within ``rtol`` of the largest entry, per output and per gradient tree (a
    conv bias before batch norm has a gradient that is zero up to round-off)."""
    for part_a, part_b in zip(a, b, strict=True):
        scale = max(float(jnp.max(jnp.abs(y))) for y in jax.tree.leaves(part_b)) or 1.0
        for x, y in zip(jax.tree.leaves(part_a), jax.tree.leaves(part_b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=rtol * scale)


# (input shape, kernel shape, strides, padding): few channels, and inputs smaller than the kernel.
PATCH_CASES = [
    ((4, 28, 28, 1), (5, 5, 1, 6), (1, 1), "VALID"),
    ((4, 32, 32, 3), (3, 3, 3, 16), (1, 1), ((1, 1), (1, 1))),
    ((4, 15, 17, 3), (7, 7, 3, 8), (2, 2), ((3, 3), (3, 3))),
    ((4, 9, 9, 2), (3, 3, 2, 5), (2, 2), "SAME"),
    ((4, 2, 2, 32), (3, 3, 32, 16), (1, 1), ((1, 1), (1, 1))),
    ((4, 1, 1, 32), (3, 3, 32, 16), (1, 1), ((1, 1), (1, 1))),
]


@pytest.mark.parametrize("x_shape,w_shape,strides,padding", PATCH_CASES)
def test_patch_conv_matches_xla_conv(x_shape, w_shape, strides, padding):
    assert layers._use_patches(x_shape, w_shape[:2])
    x = jax.random.normal(jax.random.key(0), x_shape)
    w = jax.random.normal(jax.random.key(1), w_shape) / np.sqrt(np.prod(w_shape[:3]))

    def fast(x, w):
        return layers.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)

    def plain(x, w):
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)

    _assert_close(_value_and_grads(fast, x, w), _value_and_grads(plain, x, w))


def test_patch_conv_in_one_dimension():
    x = jax.random.normal(jax.random.key(0), (4, 40, 1))
    conv = layers.Conv(5, (5,), strides=2, padding=[(1, 1)])
    plain = nn.Conv(5, (5,), strides=2, padding=[(1, 1)])
    params = conv.init(jax.random.key(1), x)
    _assert_close(_value_and_grads(lambda p, x: conv.apply(p, x), params, x),
                  _value_and_grads(lambda p, x: plain.apply(p, x), params, x))


# (input shape, kernel shape, strides, padding): ResNet's 3x3 and strided 1x1 convs, odd sizes,
# asymmetric padding, a stride larger than the kernel, one spatial axis.
BACKWARD_CASES = [
    ((3, 9, 9, 16), (3, 3, 16, 20), (1, 1), ((1, 1), (1, 1))),
    ((3, 9, 11, 16), (3, 3, 16, 8), (2, 2), ((1, 1), (1, 1))),
    ((3, 8, 8, 16), (1, 1, 16, 8), (2, 2), ((0, 0), (0, 0))),
    ((3, 12, 13, 16), (7, 7, 16, 8), (2, 2), ((3, 3), (3, 3))),
    ((3, 12, 12, 16), (2, 2, 16, 8), (3, 3), ((0, 2), (1, 0))),
    ((3, 20, 16), (5, 16, 8), (2,), ((2, 2),)),
    # 32 examples, 2+ MiB of input and output gradient: on CPU the kernel gradient is summed
    # over two chunks of 16.
    ((32, 32, 32, 16), (3, 3, 16, 8), (1, 1), ((1, 1), (1, 1))),
    ((32, 33, 33, 16), (3, 3, 16, 8), (2, 2), ((1, 1), (1, 1))),
]


@pytest.mark.parametrize("x_shape,w_shape,strides,padding", BACKWARD_CASES)
def test_channels_last_conv_gradients_match_jax(x_shape, w_shape, strides, padding):
    x = jax.random.normal(jax.random.key(0), x_shape)
    w = jax.random.normal(jax.random.key(1), w_shape) / np.sqrt(np.prod(w_shape[:-1]))
    dims = layers._channels_last(len(x_shape))
    g = jax.eval_shape(lambda: layers.channels_last_conv(x, w, strides, padding))
    assert layers._kernel_gradient_chunks(x, g) == (2 if x_shape[0] == 32 else 1)

    def plain(x, w):
        return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=dims)

    _assert_close(_value_and_grads(lambda x, w: layers.channels_last_conv(x, w, strides, padding), x, w),
                  _value_and_grads(plain, x, w))


def test_channels_last_conv_gradients_in_float64():
    """The kernel gradient sums in at least float32 (bfloat16 compute), not at most."""
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (32, 12, 12, 16), jnp.float64)
        w = jax.random.normal(jax.random.key(1), (3, 3, 16, 8), jnp.float64) / 12
        ours = _value_and_grads(lambda x, w: layers.channels_last_conv(x, w, (1, 1), ((1, 1), (1, 1))), x, w)
        plain = _value_and_grads(
            lambda x, w: lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC), x, w)
        assert all(a.dtype == jnp.float64 for a in jax.tree.leaves(ours))
        _assert_close(ours, plain, rtol=1e-12)


def _conv_layouts(fn, *args) -> set[str]:
    """The dim_labels of every convolution in ``fn``'s optimised XLA program."""
    hlo = jax.jit(fn).lower(*args).compile().as_text()
    return {line.split("dim_labels=")[1].split(",")[0].split()[0] for line in hlo.splitlines()
            if " convolution(" in line}


def _scanned_sgd_layouts(conv, params, x) -> set[str]:
    """Convolution layouts of two scanned SGD steps on ``conv``'s parameters."""
    def steps(params, x):
        def body(p, _):
            g = jax.grad(lambda p: jnp.sum(conv.apply(p, x) ** 2))(p)
            return jax.tree.map(lambda a, b: a - 0.1 * b, p, g), None
        return jax.lax.scan(body, params, None, length=2)[0]

    return _conv_layouts(steps, params, x)


def test_conv_gradients_in_a_scan_keep_the_fast_layout():
    """Inside a loop body XLA:CPU does not rewrite JAX's gradient convolutions into the
    channels-last layout it runs fast (they run as naive loops, 10-200x slower); every
    convolution of a scanned train step through ``layers.Conv`` must already be in it."""
    kwargs = dict(features=16, kernel_size=(3, 3), strides=2, padding=((1, 1), (1, 1)))
    x = jax.random.normal(jax.random.key(0), (4, 9, 9, 16))
    params = layers.Conv(**kwargs).init(jax.random.key(1), x)
    assert _scanned_sgd_layouts(layers.Conv(**kwargs), params, x) == {"b01f_01io->b01f"}
    assert len(_scanned_sgd_layouts(nn.Conv(**kwargs), params, x)) > 1  # what this guards against


def test_many_channel_convs_stay_xla_convs():
    assert not layers._use_patches((8, 32, 32, 16), (3, 3))
    assert not layers._use_patches((8, 3, 3, 512), (3, 3))


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
    fast = _value_and_grads(lambda x: layers.tiled_max_pool(x, w, pads), x)
    plain = _value_and_grads(lambda x: nn.max_pool(x, w, w, pads), x)
    _assert_close(fast, plain, rtol=0)


@pytest.fixture
def plain_layers(monkeypatch):
    """Switches the fast paths off: JAX's own convolutions (not oneDNN's) and ``nn.max_pool``
    everywhere."""

    def plain_conv(x, w, strides, pads, precision=None):
        return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=layers._channels_last(x.ndim),
                                        precision=precision)

    def switch_off():
        monkeypatch.setenv("JAXCLF_CONV", "xla")
        monkeypatch.setattr(layers, "_use_patches", lambda *a: False)
        monkeypatch.setattr(layers, "channels_last_conv", plain_conv)
        monkeypatch.setattr(layers, "tiled_max_pool", lambda x, w, p: nn.max_pool(x, w, w, p))

    return switch_off


SMALL_CNNS = [
    ("lenet5", {}, (4, 28, 28, 1)),
    ("vgg11_bn", dict(widths=(8, 16, 16, 32, 32), hidden=(16, 16), pool_size=1, dropout_rate=0.0),
     (4, 32, 32, 3)),
    ("resnet18", dict(widths=(8, 8, 16, 16)), (4, 32, 32, 3)),  # 3x3 convs on 1x1 maps
]  # GoogLeNet uses the same two layers; its compile alone would double this test's time


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("name,kwargs,shape", SMALL_CNNS, ids=[c[0] for c in SMALL_CNNS])
def test_models_match_the_plain_layers(name, kwargs, shape, train, plain_layers):
    _assert_model_matches_plain_layers(name, kwargs, shape, train, plain_layers)


def _assert_model_matches_plain_layers(name, kwargs, shape, train, plain_layers, program_has=None):
    """A model's values and gradients through the fast layers and through the plain ones
    (``program_has``: a custom call the fast program must contain)."""
    model = models.create(name, num_classes=10, **kwargs)
    x = jax.random.normal(jax.random.key(0), shape)
    # An RBG key: threefry's init compiles for 5-9 s here; the values only need to be typical.
    variables = jax.jit(model.init)(jax.random.key(1, impl="rbg"), x)
    params, state = variables["params"], {k: v for k, v in variables.items() if k != "params"}

    def forward(params, x):
        out, _ = model.apply({"params": params, **state}, x, train=train, mutable=list(state))
        return out

    if program_has:
        assert program_has in _custom_calls(forward, params, x)
    fast = _value_and_grads(forward, params, x)
    plain_layers()
    # Batch statistics of tiny batches amplify float32 round-off through deep stacks of
    # batch norm (GoogLeNet: 2e-4 relative in training mode, 5e-7 in evaluation mode).
    _assert_close(fast, _value_and_grads(forward, params, x), rtol=1e-3 if train else 1e-5)


BF16_MODELS = [
    ("lenet5", {}, (4, 32, 32, 1)),
    ("resnet20", {}, (4, 32, 32, 3)),
    ("vgg11_bn", dict(widths=(8, 16, 16, 32, 32), hidden=(16, 16), pool_size=1), (4, 32, 32, 3)),
    ("conv1d", {}, (4, 40, 1)),
    ("linear", {}, (4, 30)),
    ("mlp", {}, (4, 40)),
    ("lstm", dict(hidden=16), (4, 12, 3)),
    ("bigru", dict(hidden=16), (4, 12, 3)),
    ("rnn", dict(hidden=16), (4, 12, 3)),
    ("lstm_attention", dict(hidden=16), (4, 12, 3)),
    ("rnn_classifier", dict(cell="flax_optimized_lstm", hidden=16), (4, 12, 3)),
    ("rnn_tagger", dict(hidden=16), (4, 12, 3)),
]


@pytest.mark.parametrize("name,kwargs,shape", BF16_MODELS, ids=[m[0] for m in BF16_MODELS])
def test_bfloat16_compute_keeps_float32_params_and_logits(name, kwargs, shape):
    x = jax.random.normal(jax.random.key(0), shape)
    full = models.create(name, num_classes=10, dtype="float32", **kwargs)
    half = models.create(name, num_classes=10, dtype="bfloat16", **kwargs)
    variables = half.init(jax.random.key(1), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert jax.tree.structure(variables) == jax.tree.structure(full.init(jax.random.key(1), x))
    logits, reference = half.apply(variables, x), full.apply(variables, x)
    assert logits.dtype == jnp.float32
    _assert_close(logits, reference, rtol=5e-2)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("alexnet", dict(widths=(8, 16, 16, 16, 16), hidden=(16, 16), pool_size=2), (2, 63, 63, 3)),
    ("googlenet", dict(width_mult=0.125), (2, 64, 64, 3)),
])
def test_bfloat16_deep_models_trace_with_float32_params_and_logits(name, kwargs, shape):
    """Types only (jax.eval_shape: no compile), for models whose compile costs most of a minute."""
    half = models.create(name, num_classes=10, dtype="bfloat16", **kwargs)
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(lambda x: half.init(jax.random.key(1), x), x)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert jax.eval_shape(lambda v, x: half.apply(v, x), variables, x).dtype == jnp.float32


@pytest.mark.parametrize("name", ["rnn_generator", "seq2seq"])
def test_bfloat16_sequence_generators(name):
    model = models.create(name, num_classes=6, hidden=16, dtype="bfloat16")
    cond = jnp.arange(3) if name == "rnn_generator" else jax.random.normal(jax.random.key(0), (3, 5, 2))
    targets = jnp.ones((3, 4), jnp.int32)
    variables = model.init(jax.random.key(1), cond, targets=targets)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
    assert model.apply(variables, cond, targets=targets).dtype == jnp.float32
    tokens, lengths = model.sample(variables, jax.random.key(2), cond, max_len=5)
    assert tokens.shape == (3, 5) and lengths.shape == (3,)


# ----------------------------------------------------------------------------- oneDNN convolutions

# (input shape, kernel shape, strides, padding): the convolutions of the registered CNNs.
ONEDNN_CASES = [
    ((3, 28, 28, 1), (5, 5, 1, 6), (1, 1), ((2, 2), (2, 2))),  # LeNet-5 conv1
    ((3, 14, 14, 6), (5, 5, 6, 16), (1, 1), ((0, 0), (0, 0))),  # LeNet-5 conv2
    ((3, 8, 8, 16), (3, 3, 16, 32), (2, 2), ((1, 1), (1, 1))),  # ResNet stage entry
    ((3, 8, 8, 16), (1, 1, 16, 32), (2, 2), ((0, 0), (0, 0))),  # projection shortcut
    ((2, 15, 17, 3), (7, 7, 3, 8), (2, 2), ((3, 3), (3, 3))),  # ImageNet stem, odd sizes
    ((2, 35, 35, 3), (11, 11, 3, 8), (4, 4), ((2, 2), (2, 2))),  # AlexNet conv1
    ((2, 9, 10, 4), (3, 2, 4, 5), (2, 1), ((2, 1), (0, 2))),  # uneven everything
]


@pytest.mark.parametrize("x_shape,w_shape,strides,padding", ONEDNN_CASES)
def test_onednn_conv_matches_lax(x_shape, w_shape, strides, padding, onednn_on):
    x = jax.random.normal(jax.random.key(0), x_shape)
    w = jax.random.normal(jax.random.key(1), w_shape)
    ours = _value_and_grads(lambda x, w: onednn_on.conv(x, w, strides, padding), x, w)
    plain = _value_and_grads(lambda x, w: lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC),
                             x, w)
    _assert_close(ours, plain)


def test_onednn_conv_under_vmap_and_scan(onednn_on):
    """The sweep vmaps a train step over its points (each with its own kernels) and the
    loop scans it; both run the custom call per point / per step."""
    pads = ((1, 1), (1, 1))
    xs = jax.random.normal(jax.random.key(0), (3, 2, 6, 6, 4))
    ws = jax.random.normal(jax.random.key(1), (3, 3, 3, 4, 4))
    conv = lambda x, w: onednn_on.conv(x, w, (1, 1), pads)  # noqa: E731
    loss = lambda x, w: jnp.sum(jnp.tanh(conv(x, w)))  # noqa: E731
    batched = jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=(0, 1))))(xs, ws)
    one_by_one = [jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, w) for x, w in zip(xs, ws)]
    _assert_close(batched, jax.tree.map(lambda *a: jnp.stack(a), *one_by_one))
    scanned = jax.jit(lambda ws: lax.scan(lambda x, w: (jnp.tanh(conv(x, w)), None), xs[0], ws)[0])(ws)
    unrolled = xs[0]
    for w in ws:
        unrolled = jnp.tanh(lax.conv_general_dilated(unrolled, w, (1, 1), pads, dimension_numbers=NHWC))
    _assert_close([scanned], [unrolled])


def test_onednn_gradients_of_gradients_match_lax(onednn_on):
    """Reverse over reverse (e.g. a gradient penalty): each part's gradients are the others."""
    x = jax.random.normal(jax.random.key(0), (2, 7, 7, 3))
    w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))

    def penalty(conv):
        def grad_norm(x, w):
            gx, gw = jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), argnums=(0, 1))(x, w)
            return jnp.sum(gx ** 2) + jnp.sum(gw ** 2)
        return jax.jit(jax.value_and_grad(grad_norm, argnums=(0, 1)))(x, w)

    ours = penalty(lambda x, w: onednn_on.conv(x, w, (2, 2), ((1, 1), (1, 1))))
    plain = penalty(lambda x, w: lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)), dimension_numbers=NHWC))
    _assert_close(ours, plain)


def _custom_calls(f, *args) -> str:
    """The custom calls of ``f``'s program, traced anew (the setting is read when tracing)."""
    text = jax.jit(lambda *a: f(*a)).lower(*args).as_text()
    return " ".join(line for line in text.splitlines() if "custom_call" in line)


def test_conv_layer_takes_onednn_on_one_cpu_device_only(onednn_on, monkeypatch):
    conv = layers.Conv(8, (3, 3), padding=((1, 1), (1, 1)))
    x = jnp.ones((2, 8, 8, 4))
    params = conv.init(jax.random.key(0), x)
    grad = lambda p, x: jax.value_and_grad(lambda p: jnp.sum(conv.apply(p, x)))(p)  # noqa: E731
    calls = _custom_calls(grad, params, x)
    assert "jaxclf_onednn_forward" in calls and "jaxclf_onednn_kernel_gradient" in calls
    half = layers.Conv(8, (3, 3), padding=((1, 1), (1, 1)), dtype=jnp.bfloat16)  # float32 only
    assert "jaxclf_onednn" not in _custom_calls(lambda p, x: half.apply(p, x), params, x)
    cropped = layers.Conv(8, (3, 3), padding=((-1, 0), (1, 1)))  # negative padding: XLA's
    assert "jaxclf_onednn" not in _custom_calls(lambda p, x: cropped.apply(p, x), params, x)
    monkeypatch.setenv(onednn_on.SETTING, "xla")
    assert "jaxclf_onednn" not in _custom_calls(grad, params, x)
    monkeypatch.setenv(onednn_on.SETTING, "auto")
    monkeypatch.setattr(onednn_on, "_single_device", lambda: False)  # e.g. this session's 4 devices
    assert "jaxclf_onednn" not in _custom_calls(grad, params, x)


def test_conv_setting_errors_name_the_problem(onednn_on, monkeypatch, caplog):
    x, w = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 2))
    conv = lambda x, w: layers.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)  # noqa: E731
    monkeypatch.setenv(onednn_on.SETTING, "mkl")
    with pytest.raises(ValueError, match="JAXCLF_CONV='mkl'.*valid: auto, onednn, xla"):
        conv(x, w)
    monkeypatch.setattr(onednn_on, "load_error", lambda: "libgomp.so.1: cannot open shared object file")
    monkeypatch.setenv(onednn_on.SETTING, "onednn")
    with pytest.raises(RuntimeError, match="JAXCLF_CONV=onednn but oneDNN cannot be loaded: libgomp"):
        conv(x, w)
    monkeypatch.setenv(onednn_on.SETTING, "auto")  # falls back to XLA, and says why
    with caplog.at_level("WARNING"):
        np.testing.assert_allclose(conv(x, w), lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC))
    assert "convolutions run on XLA, not oneDNN: libgomp" in caplog.text


def test_onednn_failure_inside_a_program_raises(onednn_on, monkeypatch):
    """An error in the handler reaches the caller as an exception, not a crash or garbage."""
    def broken(*args):
        raise RuntimeError("oneDNN: execution failed: runtime error")

    monkeypatch.setattr(onednn_on, "run", broken)
    x, w = jnp.ones((1, 5, 5, 2)), jnp.ones((3, 3, 2, 3))
    with pytest.raises(Exception, match="jaxclf oneDNN convolution: RuntimeError.*runtime error"):
        jax.block_until_ready(jax.jit(lambda x, w: onednn_on.conv(x, w, (1, 1), ((1, 1), (1, 1))))(x, w))


def test_onednn_handler_declares_its_ffi_version(onednn_on, monkeypatch):
    """XLA checks the version the handler reports, so a jaxlib whose call frames differ from
    the structures onednn.py reads refuses it with an error instead of running it."""
    monkeypatch.setattr(onednn_on, "FFI_API_VERSION", (99, 0))
    x, w = jnp.ones((1, 7, 3, 2)), jnp.ones((3, 3, 2, 5))  # a shape no other test registers
    with pytest.raises(Exception, match=r"API version \(99\.0\) is incompatible"):
        jax.jit(lambda x, w: onednn_on.conv(x, w, (1, 1), ((1, 1), (1, 1))))(x, w)


@pytest.mark.parametrize("name,kwargs,shape", SMALL_CNNS, ids=[c[0] for c in SMALL_CNNS])
def test_models_on_onednn_match_the_plain_layers(name, kwargs, shape, onednn_on, plain_layers):
    _assert_model_matches_plain_layers(name, kwargs, shape, True, plain_layers, program_has="jaxclf_onednn")
