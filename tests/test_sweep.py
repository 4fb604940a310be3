"""Sweeps: structure, the process-per-point runner (summary, skip, kill + resume, failures)
and the vmapped runner (equal to the points run one by one)."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxclf import sweep as sweep_lib
from jaxclf.train import checkpoint, vmap_sweep

from conftest import REPO

CONFIG = os.path.join(REPO, "configs", "sweep_lenet5_digits.py")
# momentum-SGD: linear in the gradients, so vmapped and one-by-one agree to ~1e-8 (Adam's
# normalisation amplifies the rounding of near-zero gradients to ~1e-4). No per-point report
# (its plots cost each point process about 2 s; the sweep's own summary and plots are kept).
OVERRIDES = ["--config.optim.name=momentum", "--config.train.progress=False",
             "--config.train.batch_size=32", "--config.train.eval_batch_size=64", "--config.eval.report=False"]
AXIS = "--sweep=optim.lr=0.01,0.03"


def sweep_command(root, tfds_dir, *extra):
    return [sys.executable, "-m", "jaxclf.sweep", f"--config={CONFIG}:smoke", f"--workdir={root}", AXIS,
            f"--config.dataset.data_dir={tfds_dir}", *OVERRIDES, *extra]


def env():
    e = {**os.environ, "JAX_PLATFORMS": "cpu"}
    e.pop("XLA_FLAGS", None)
    return e


def rows(root):
    with open(root / "summary.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def clean(tmp_path_factory, tfds_dir):
    """A finished 2x2 (lr x seed) sweep, two points at a time."""
    root = tmp_path_factory.mktemp("sweep") / "clean"
    out = subprocess.run(sweep_command(root, tfds_dir, "--parallel=2"), env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return root


def test_structure_and_parsing(smoke_config):
    s = sweep_lib.product(sweep_lib.zip_({"optim.lr": [0.1, 0.01], "optim.weight_decay": [0.0, 1e-4]}), {"seed": [0, 1, 2]})
    assert len(s) == 6 and s.keys == ("optim.lr", "optim.weight_decay", "seed")
    assert sweep_lib.point_name(s.points[3]) == "optim.lr=0.01,optim.weight_decay=0.0001,seed=0"
    s = sweep_lib.build(smoke_config, s, ["seed=7", "train.progress=false"])
    assert len(s) == 2 and all(p["seed"] == 7 and p["train.progress"] is False for p in s.points)
    with pytest.raises(KeyError, match="did you mean 'optim.lr'"):
        sweep_lib.build(smoke_config, s, ["optim.lrr=1"])
    with pytest.raises(ValueError, match="seed takes int values"):
        sweep_lib.build(smoke_config, s, ["seed=0.5"])
    with pytest.raises(ValueError, match="unknown model"):
        sweep_lib.build(smoke_config, s, ["model.name=nope"])
    with pytest.raises(ValueError, match="equal length"):
        sweep_lib.zip_({"a": [1], "b": [1, 2]})
    with pytest.raises(ValueError, match="'model.name'"):
        vmap_sweep.check_vmappable(["seed", "model.name"])


def test_sweep_summary_and_rerun_does_nothing(clean, tfds_dir):
    table = rows(clean)
    assert len(table) == 4 and {r["seed"] for r in table} == {"0", "1"}
    accs = [float(r["test/accuracy"]) for r in table]
    assert accs == sorted(accs, reverse=True)
    assert (clean / "summary.md").read_text().count("\n| optim.lr=") == 4
    assert (clean / "plot_optim.lr.png").exists() and (clean / "plot_seed.png").exists()
    stamps = {p: p.stat().st_mtime_ns for p in clean.glob("*/metrics.jsonl")}
    assert len(stamps) == 4
    start = time.time()
    out = subprocess.run(sweep_command(clean, tfds_dir), env=env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "4 already finished, 0 to run" in out.stdout
    assert {p: p.stat().st_mtime_ns for p in clean.glob("*/metrics.jsonl")} == stamps
    assert time.time() - start < 60


def test_killed_sweep_resumes_to_the_same_summary(clean, tmp_path, tfds_dir):
    root, seed0 = tmp_path / "killed", "--sweep=seed=0"
    proc = subprocess.Popen(sweep_command(root, tfds_dir, seed0), env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not list(root.glob("*/results.json")) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its running point
    proc.wait()
    assert len(list(root.glob("*/results.json"))) == 1
    out = subprocess.run(sweep_command(root, tfds_dir, seed0), env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 already finished, 1 to run" in out.stdout
    reference = {r["name"]: r for r in rows(clean)}
    resumed = rows(root)
    assert len(resumed) == 2 and all(r == reference[r["name"]] for r in resumed)


def test_failed_point_is_reported_and_others_summarized(clean, tmp_path, tfds_dir):
    root = tmp_path / "failing"
    shutil.copytree(clean, root)
    out = subprocess.run(sweep_command(root, tfds_dir, "--parallel=2", "--sweep=optim.lr=0.01,1e30", "--sweep=seed=0"),
                         env=env(), capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "failed" in out.stdout and "non-finite" in out.stdout
    table = {r["name"]: r for r in rows(root)}
    assert float(table["optim.lr=0.01,seed=0"]["test/accuracy"]) > 0
    assert table["optim.lr=1e+30,seed=0"]["test/accuracy"] == ""
    assert table["optim.lr=0.01,seed=0"]["status"] == "finished"
    assert table["optim.lr=1e+30,seed=0"]["status"] == "failed (exit 1)"  # ended, with its exit code
    assert "- optim.lr=1e+30,seed=0: failed (exit 1)" in (root / "summary.md").read_text()
    assert "1 point(s) failed" in out.stderr


def test_vmapped_sweep_equals_one_by_one(clean, tmp_path, smoke_config):
    config = smoke_config
    config.optim.name = "momentum"
    sweep = sweep_lib.build(config, sweep_lib.load_sweep(CONFIG, "smoke"), [AXIS.split("=", 1)[1]])
    configs = [sweep_lib.apply_point(config, p) for p in sweep.points]
    dirs = [tmp_path / sweep_lib.point_name(p) for p in sweep.points]
    results = vmap_sweep.run(configs, dirs)
    for point, workdir, result in zip(sweep.points, dirs, results):
        reference = clean / sweep_lib.point_name(point)
        assert sweep_lib.is_finished(workdir, config, point)
        _, one = checkpoint.load(reference / "checkpoints")
        _, vm = checkpoint.load(workdir / "checkpoints")
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), one["state"]["params"], vm["state"]["params"])
        assert jax.tree.structure(one) == jax.tree.structure(vm)  # the loop's layout: it can resume it
        np.testing.assert_allclose(json.loads((reference / "results.json").read_text())["test"]["accuracy"],
                                   result["test"]["accuracy"], atol=1e-6)
    assert len(sweep_lib.summarize(tmp_path, sweep)) == 4


def test_slurm_scripts(smoke_config, tmp_path):
    from jaxclf import launch

    sweep = sweep_lib.build(smoke_config, sweep_lib.load_sweep(CONFIG, "smoke"), [])
    array = launch.sbatch_script("/c.py:smoke", tmp_path, sweep, ["--config.train.num_steps=10"],
                                 launch.Slurm(nodes=1, gpus_per_node=8, partition="gpu", max_concurrent=2, setup=("module load cuda",)))
    assert "#SBATCH --array=0-3%2" in array and "#SBATCH --ntasks-per-node=1" in array and "#SBATCH --gpus-per-node=8" in array
    assert "#SBATCH --partition=gpu" in array and "module load cuda" in array and "--distributed" not in array
    assert "NAMES=(optim.lr=0.001,seed=0 optim.lr=0.001,seed=1 optim.lr=0.003,seed=0 optim.lr=0.003,seed=1)" in array
    assert "'--config.optim.lr=0.003 --config.seed=1'" in array
    assert f"srun python -m jaxclf.main --config=/c.py:smoke --config.train.num_steps=10 --workdir={tmp_path}/\"$NAME\" $POINT_ARGS &" in array
    assert "scontrol requeue" in array and "#SBATCH --signal=B:TERM@120" in array
    one = sweep_lib.Sweep(({},))
    multi = launch.sbatch_script("/c.py", tmp_path, one, [], launch.Slurm(nodes=4, gpus_per_node=8))
    assert "#SBATCH --nodes=4" in multi and "#SBATCH --ntasks-per-node=8" in multi and "--array" not in multi
    assert "srun --kill-on-bad-exit=1 python -m jaxclf.main" in multi and "$POINT_ARGS --distributed &" in multi
    assert subprocess.run(["bash", "-n"], input=multi, text=True).returncode == 0
