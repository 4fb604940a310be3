"""Two processes through jax.distributed on 127.0.0.1 train like one process."""

import os
import socket
import subprocess
import sys

import jax
import numpy as np

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
        *extra,
    ]


def test_two_processes_match_one(tmp_path, tfds_dir):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    single = subprocess.run(command(tmp_path / "one", tfds_dir), env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]

    port = free_port()
    procs = [
        subprocess.Popen(
            command(tmp_path / "two", tfds_dir, f"--coordinator=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"),
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert '"accuracy"' in outs[0][0]  # process 0 prints the results

    _, one = checkpoint.load(tmp_path / "one" / "checkpoints")
    _, two = checkpoint.load(tmp_path / "two" / "checkpoints")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), one["state"]["params"], two["state"]["params"])
    assert (tmp_path / "two" / "results.json").read_text() != ""
