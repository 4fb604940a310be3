"""Test session set-up: 4 simulated CPU devices, quiet TensorFlow, a per-session TFDS dir,
a per-session XLA compilation cache.

Tests that want one device pass ``devices=jax.devices()[:1]`` explicitly (oneDNN's
convolutions, ``jaxclf.cpu``, apply to one-device programs only).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tempfile

# One XLA compilation cache per test session, shared by the xdist workers and the
# subprocesses the tests start: many tests compile the same small programs.
_CACHE = os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jaxclf-xla-cache-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# XLA:CPU's LLVM back end at -O0: compiling dominates this suite (thousands of small programs,
# each run a few times) and -O0 compiles them about a third faster (suite 436 -> ~330 s on 2
# cores). XLA's HLO passes (fusion, layouts) and floating-point semantics are unchanged; the
# sweep and multi-process tests' subprocesses drop XLA_FLAGS and compile as users do.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_num_cpu_devices", 4)


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
    """A TFDS data_dir shared by the session's tests (bundled datasets are built once)."""
    return str(tmp_path_factory.mktemp("tfds"))


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def smoke_config(tfds_dir):
    """The LeNet-5 digits smoke config, quiet, reading data from the session's TFDS dir, without
    the report's plots: they take longer than the rest of a (compiled) smoke run, and
    test_train.py::test_run_writes_every_workdir_file, test_report.py and the configs' smoke
    runs check them."""
    from jaxclf import config as config_lib

    c = config_lib.load(os.path.join(REPO, "configs", "lenet5_digits.py"), "smoke")
    c.dataset.data_dir = tfds_dir
    c.train.progress = False
    c.train.batch_size = 32
    c.train.eval_batch_size = 64
    c.eval.report = False
    return c


CONV_NET_LEAVES = ("['kernel']", "['bias']", "['scale']", "['mean']", "['var']")


def fast_init(model, *args, **init_kwargs):
    """Variables with init's shapes but values drawn by numpy (He-scaled normal kernels,
    unit norm scales, zero biases and means, unit variances); None when a leaf is none of
    those (e.g. a recurrent cell's or an embedding's: use ``model.init`` for such models).

    Compiling ``model.init`` on CPU is dominated by the threefry PRNG and takes up to a
    minute for GoogLeNet; the tests of training behaviour and of transformations only need
    sensible values.
    """
    init_kwargs.setdefault("train", False)
    shapes = jax.eval_shape(functools.partial(model.init, **init_kwargs), jax.random.key(0), *args)
    names = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(shapes)]
    if not all(n.endswith(CONV_NET_LEAVES) for n in names):
        return None
    rng = np.random.default_rng(0)

    def fill(path, leaf):
        name = jax.tree_util.keystr(path)
        if name.endswith("['kernel']"):
            fan_in = int(np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.normal(0, np.sqrt(2 / fan_in), leaf.shape), leaf.dtype)
        is_one = name.endswith("['scale']") or name.endswith("['var']")
        return jnp.full(leaf.shape, 1.0 if is_one else 0.0, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def stablehlo_ops(mlir_text: str) -> dict[str, int]:
    """How many of each StableHLO op a module holds (to compare two lowerings)."""
    counts: dict[str, int] = {}
    for token in mlir_text.split():
        if token.startswith(("stablehlo.", '"stablehlo.')):
            op = token.strip('"').split("(")[0]
            counts[op] = counts.get(op, 0) + 1
    return counts
