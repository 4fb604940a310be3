"""SIGKILL at random points, some during checkpoint saves: the re-run ends identical."""

import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from jaxclf.train import checkpoint

from conftest import REPO

KILLS = 4  # at least this many kills, of which at least two during a save
MAX_KILLS = 14


def command(workdir, tfds_dir):
    return [
        sys.executable, "-m", "jaxclf.main",
        f"--config={os.path.join(REPO, 'configs', 'lenet5_digits.py')}",
        f"--workdir={workdir}", f"--config.dataset.data_dir={tfds_dir}",
        "--config.train.progress=False", "--config.train.num_steps=60",
        "--config.train.batch_size=32", "--config.train.log_every=3",
        "--config.train.eval_every=30", "--config.train.checkpoint_every=2",
        "--config.train.keep_checkpoints=2",
        "--config.eval.report=False",  # plots: 2 s per finished run, checked elsewhere
    ]


def saving(workdir) -> bool:
    """True while orbax writes a step into a temporary directory."""
    try:
        return any("tmp" in name for name in os.listdir(workdir / "checkpoints"))
    except FileNotFoundError:
        return False


def kill_once(cmd, workdir, during_save: bool, rng) -> bool:
    """Starts the run and SIGKILLs it; returns whether a save was in progress then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    started = lambda: (workdir / "metrics.jsonl").exists()
    while not started() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if during_save:
        while not saving(workdir) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.001)
    else:
        time.sleep(rng.uniform(0.0, 1.5))
    hit_save = saving(workdir)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return hit_save and proc.returncode == -signal.SIGKILL


def test_killed_runs_resume_to_identical_results(tmp_path, tfds_dir):
    rng = random.Random(0)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert subprocess.run(command(whole, tfds_dir), capture_output=True, timeout=300).returncode == 0
    hits = []
    while len(hits) < MAX_KILLS and (len(hits) < KILLS or sum(hits) < 2):
        hits.append(kill_once(command(killed, tfds_dir), killed, during_save=len(hits) % 2 == 1, rng=rng))
    assert sum(hits) >= 2, f"only {sum(hits)} of {len(hits)} kills landed during a checkpoint save"
    final = subprocess.run(command(killed, tfds_dir), capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    _, a = checkpoint.load(whole / "checkpoints")
    _, b = checkpoint.load(killed / "checkpoints")
    jax.tree.map(np.testing.assert_array_equal, a["state"], b["state"])
    assert (whole / "results.json").read_text() == (killed / "results.json").read_text()
    assert (whole / "metrics.jsonl").read_text() == (killed / "metrics.jsonl").read_text()
