"""Several processes through jax.distributed on 127.0.0.1 train like one: two processes of
two devices each (four devices in all) match one process on one device, and a checkpoint
written by the two processes resumes in one.

Every run is a subprocess (each costs a Python start-up importing JAX and TensorFlow), and
all are compared with one module-wide single-process reference run.
"""

import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxclf.train import checkpoint

from conftest import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(workdir, tfds_dir, *extra):
    return [
        sys.executable, "-m", "jaxclf.main",
        f"--config={os.path.join(REPO, 'configs', 'lenet5_digits.py')}:smoke",
        f"--workdir={workdir}",
        f"--config.dataset.data_dir={tfds_dir}",
        "--config.train.progress=False",
        "--config.train.batch_size=32",
        "--config.train.eval_batch_size=64",
        "--config.eval.report=False",  # plots: 2 s per finished run, checked elsewhere
        *extra,
    ]


def env(local_devices=1):
    """XLA's convolutions in every run: on several devices jaxclf does not use oneDNN's
    (jaxclf.onednn), and the one-device reference must compute the same sums to compare."""
    e = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(local_devices), "JAXCLF_CONV": "xla"}
    e.pop("XLA_FLAGS", None)
    return e


def run_processes(workdir, tfds_dir, n, local_devices=1):
    """``n`` processes of one run; returns each one's stdout."""
    port = free_port()
    procs = [
        subprocess.Popen(
            command(workdir, tfds_dir, f"--coordinator=127.0.0.1:{port}", f"--num_processes={n}", f"--process_id={i}"),
            env=env(local_devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(n)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [out for out, _ in outs]


def params(workdir):
    step, item = checkpoint.load(workdir / "checkpoints")
    return step, item["state"]["params"]


def assert_close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5, rtol=0), a, b)


@pytest.fixture(scope="module")
def single(tmp_path_factory, tfds_dir):
    """The 6-step reference run in one process on one device (it also builds the dataset once)."""
    workdir = tmp_path_factory.mktemp("mp") / "one"
    out = subprocess.run(command(workdir, tfds_dir), env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


def test_two_processes_of_two_devices_match_one_and_their_checkpoint_resumes_in_one(single, tmp_path, tfds_dir):
    """Four devices over two processes (each process holds two shards of every batch) train
    like one device; their step-3 checkpoint, as if they had been stopped after it, resumes in
    one process on one device."""
    four = tmp_path / "four"
    stdouts = run_processes(four, tfds_dir, 2, local_devices=2)
    assert '"accuracy"' in stdouts[0]  # process 0 prints the results
    assert (four / "results.json").read_text() != ""
    (s1, p1), (s4, p4) = params(single), params(four)
    assert s1 == s4 == 6
    assert_close(p1, p4)
    resumed = tmp_path / "resumed"
    shutil.copytree(four, resumed)
    shutil.rmtree(resumed / "checkpoints" / "6")
    (resumed / "results.json").unlink()
    out = subprocess.run(command(resumed, tfds_dir), env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed" in out.stderr and "from step 3" in out.stderr
    s3, p3 = params(resumed)
    assert s3 == 6
    assert_close(p1, p3)
