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

import jax
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
