"""jaxclf.ops against the lecture's hand-worked examples and against XLA/flax."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxclf import ops

IMAGE = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], np.float32)
KERNEL = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)
POOL_IN = np.array([[4, 9, 2, 5], [5, 6, 2, 4], [2, 4, 5, 4], [5, 6, 8, 4]], np.float32)


@pytest.mark.parametrize("flip", [False, True])
def test_lecture_convolution(flip):
    # The kernel is symmetric under 180-degree rotation, so both definitions agree.
    np.testing.assert_array_equal(ops.conv2d(IMAGE, KERNEL, flip=flip), [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_lecture_pooling():
    np.testing.assert_array_equal(ops.max_pool(POOL_IN, 2), [[9, 5], [6, 8]])
    np.testing.assert_allclose(ops.avg_pool(POOL_IN, 2), [[6.0, 3.25], [4.25, 5.25]])


def test_flip_is_true_convolution():
    # G[m, n] = sum_jk g[j, k] f[m - j, n - k] over the full support, by brute force,
    # equals conv2d(flip=True) with full padding (k - 1 on each side).
    rng = np.random.default_rng(0)
    f, g = rng.normal(size=(5, 6)), rng.normal(size=(2, 3))
    full = np.zeros((5 + 2 - 1, 6 + 3 - 1))
    for m in range(full.shape[0]):
        for n in range(full.shape[1]):
            full[m, n] = sum(
                g[j, k] * f[m - j, n - k]
                for j in range(2) for k in range(3)
                if 0 <= m - j < 5 and 0 <= n - k < 6
            )
    got = ops.conv2d(f, g, padding=((1, 1), (2, 2)), flip=True)
    np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-5)
    assert not np.allclose(ops.conv2d(f, g, padding=((1, 1), (2, 2))), full)


CONV_CASES = [
    # stride, padding, dilation
    (1, "valid", 1),
    (1, "same", 1),
    (2, "same", 1),
    (2, "valid", 1),
    ((2, 1), ((1, 2), (0, 3)), 1),
    (1, "same", 2),
    (3, 1, (2, 1)),
]


@pytest.mark.parametrize("stride,padding,dilation", CONV_CASES)
def test_conv2d_matches_lax(stride, padding, dilation):
    kx, kk = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (2, 11, 9, 3))
    kernel = jax.random.normal(kk, (3, 4, 3, 5))
    pads = ops.resolve_padding(padding, x.shape[1:3], kernel.shape[:2], stride, dilation)
    pair = lambda v: (v, v) if isinstance(v, int) else v  # noqa: E731
    want = jax.lax.conv_general_dilated(
        x, kernel, pair(stride), pads, rhs_dilation=pair(dilation),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    got = ops.conv2d(x, kernel, stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride,padding", [(1, "SAME"), (2, "SAME"), (2, "VALID"), (1, ((2, 0), (1, 1)))])
def test_conv2d_matches_flax_conv(stride, padding):
    x = jax.random.normal(jax.random.key(1), (2, 10, 10, 3))
    layer = nn.Conv(4, (3, 3), strides=stride, padding=padding, use_bias=False)
    params = layer.init(jax.random.key(2), x)
    got = ops.conv2d(x, params["params"]["kernel"], stride=stride, padding=padding)
    np.testing.assert_allclose(got, layer.apply(params, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "window,stride,padding", [(2, None, "valid"), (3, 2, "valid"), (3, 2, "same"), (3, 1, ((1, 1), (1, 1))), ((2, 3), (1, 2), "same")]
)
def test_pooling_matches_flax(window, stride, padding):
    x = jax.random.normal(jax.random.key(3), (2, 9, 8, 3))
    w = (window, window) if isinstance(window, int) else window
    s = w if stride is None else ((stride, stride) if isinstance(stride, int) else stride)
    pad = padding.upper() if isinstance(padding, str) else padding
    np.testing.assert_allclose(ops.max_pool(x, window, stride, padding), nn.max_pool(x, w, s, pad), rtol=1e-6)
    np.testing.assert_allclose(ops.avg_pool(x, window, stride, padding), nn.avg_pool(x, w, s, pad), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        ops.avg_pool(x, window, stride, padding, count_include_pad=False),
        nn.avg_pool(x, w, s, pad, count_include_pad=False),
        rtol=1e-5, atol=1e-6,
    )


def test_conv2d_is_differentiable_and_jittable():
    x = jnp.asarray(IMAGE)
    grad = jax.jit(jax.grad(lambda k: ops.conv2d(x, k).sum()))(jnp.asarray(KERNEL))
    # d/dg[j,k] of sum_mn sum_jk g[j,k] x[m+j, n+k] is the sum of the window x[j:j+3, k:k+3].
    want = [[IMAGE[j : j + 3, k : k + 3].sum() for k in range(3)] for j in range(3)]
    np.testing.assert_allclose(grad, want)


def test_kernels():
    rng = np.random.default_rng(0)
    img = rng.uniform(size=(12, 10)).astype(np.float32)
    np.testing.assert_allclose(ops.apply_kernel(img, "identity"), img, atol=1e-6)
    flat = np.full((8, 8), 0.5, np.float32)
    for name in ("outline", "sobel_x", "sobel_y"):  # zero-sum kernels: no response inside a flat region
        np.testing.assert_allclose(ops.apply_kernel(flat, name)[1:-1, 1:-1], 0, atol=1e-6)
    for name in ("box_blur", "gaussian_blur", "sharpen", "emboss"):  # unit-sum: keep flat brightness
        np.testing.assert_allclose(ops.apply_kernel(flat, name)[1:-1, 1:-1], 0.5, atol=1e-6)
    ramp = np.tile(np.arange(6, dtype=np.float32), (6, 1))  # brightness grows left to right
    np.testing.assert_allclose(ops.apply_kernel(ramp, "sobel_x")[1:-1, 1:-1], 8.0)
    np.testing.assert_allclose(ops.apply_kernel(ramp, "sobel_y")[1:-1, 1:-1], 0.0)
    rgb = rng.uniform(size=(7, 7, 3)).astype(np.float32)
    out = ops.apply_kernel(rgb, "sharpen")
    assert out.shape == rgb.shape
    np.testing.assert_allclose(out[..., 1], ops.apply_kernel(rgb[..., 1], "sharpen"), rtol=1e-6)
    with pytest.raises(ValueError, match="valid: box_blur"):
        ops.apply_kernel(img, "nope")
