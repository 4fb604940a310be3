"""Four processes (one CPU device each) train like one; a checkpoint written by two processes
resumes in one. All runs use a constant schedule so that a 3-step run extended to 6 steps
(--config.train.num_steps + --allow_config_change) equals a 6-step run."""

import os
import subprocess

import jax
import numpy as np
import pytest

from jaxclf.train import checkpoint

from test_distributed import command, free_port

CONSTANT = "--config.optim.schedule=constant"


def env():
    e = {**os.environ, "JAX_PLATFORMS": "cpu"}
    e.pop("XLA_FLAGS", None)  # one CPU device per process
    return e


def run_processes(workdir, tfds_dir, n, *extra):
    port = free_port()
    procs = [
        subprocess.Popen(
            command(workdir, tfds_dir, CONSTANT, *extra, f"--coordinator=127.0.0.1:{port}", f"--num_processes={n}", f"--process_id={i}"),
            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(n)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]


def params(workdir):
    step, item = checkpoint.load(workdir / "checkpoints")
    return step, item["state"]["params"]


def assert_close(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-5, rtol=0), a, b)


@pytest.fixture(scope="module")
def single(tmp_path_factory, tfds_dir):
    """The 6-step reference run in one process (it also builds the dataset once)."""
    workdir = tmp_path_factory.mktemp("mp") / "one"
    out = subprocess.run(command(workdir, tfds_dir, CONSTANT), env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return workdir


def test_four_processes_match_one(single, tmp_path, tfds_dir):
    run_processes(tmp_path / "four", tfds_dir, 4)
    (s1, p1), (s4, p4) = params(single), params(tmp_path / "four")
    assert s1 == s4 == 6
    assert_close(p1, p4)


def test_two_process_checkpoint_resumes_in_one(single, tmp_path, tfds_dir):
    workdir = tmp_path / "resumed"
    run_processes(workdir, tfds_dir, 2, "--config.train.num_steps=3")
    assert params(workdir)[0] == 3
    out = subprocess.run(command(workdir, tfds_dir, CONSTANT, "--allow_config_change"), env=env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumed" in out.stderr and "from step 3" in out.stderr
    (s1, p1), (s2, p2) = params(single), params(workdir)
    assert s1 == s2 == 6
    assert_close(p1, p2)
