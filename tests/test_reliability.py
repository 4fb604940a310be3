"""What happens when: corrupted checkpoints, a changed config, non-finite values, preemption."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxclf.run import train_and_evaluate
from jaxclf.train import checkpoint
from jaxclf.train.workdir import ConfigMismatchError

from conftest import REPO


def one_device():
    return jax.devices()[:1]


def corrupt(step_dir):
    """Truncates every file of a checkpoint step to half its size."""
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            size = os.path.getsize(path)
            with open(path, "r+b") as f:
                f.truncate(size // 2)


def test_corrupted_latest_checkpoint_falls_back_to_previous(smoke_config, tmp_path, caplog):
    whole = train_and_evaluate(smoke_config, tmp_path / "whole", devices=one_device())
    run = tmp_path / "run"
    train_and_evaluate(smoke_config, run, devices=one_device())
    corrupt(run / "checkpoints" / "6")
    with caplog.at_level(logging.WARNING):
        again = train_and_evaluate(smoke_config, run, devices=one_device())
    assert "checkpoint at step 6 is unreadable" in caplog.text
    assert again == whole  # steps 4..6 were retrained from step 3, identically
    _, a = checkpoint.load(tmp_path / "whole" / "checkpoints")
    _, b = checkpoint.load(run / "checkpoints")
    jax.tree.map(np.testing.assert_array_equal, a["state"]["params"], b["state"]["params"])


def test_no_readable_checkpoint_stops_unless_told_to_start_fresh(smoke_config, tmp_path):
    train_and_evaluate(smoke_config, tmp_path, devices=one_device())
    for step in ("3", "6"):
        corrupt(tmp_path / "checkpoints" / step)
    with pytest.raises(checkpoint.NoValidCheckpointError, match="step 6.*\n.*step 3"):
        train_and_evaluate(smoke_config, tmp_path, devices=one_device())
    results = train_and_evaluate(smoke_config, tmp_path, devices=one_device(), fresh_if_unreadable=True)
    assert 0 <= results["test"]["accuracy"] <= 1


def test_workdir_with_another_config_is_refused(smoke_config, tmp_path):
    train_and_evaluate(smoke_config, tmp_path, devices=one_device(), stop_at=3)
    smoke_config.optim.lr = 0.5
    with pytest.raises(ConfigMismatchError, match=r"optim.lr: 0.002 -> 0.5"):
        train_and_evaluate(smoke_config, tmp_path, devices=one_device())
    assert json.loads((tmp_path / "config.json").read_text())["optim"]["lr"] == 0.002
    train_and_evaluate(smoke_config, tmp_path, devices=one_device(), allow_config_change=True)
    assert json.loads((tmp_path / "config.json").read_text())["optim"]["lr"] == 0.5


def test_nonfinite_loss_stops_naming_step_and_keeps_last_good_checkpoint(smoke_config, tmp_path):
    smoke_config.optim.name, smoke_config.optim.lr, smoke_config.optim.schedule = "sgd", 1e12, "constant"
    smoke_config.train.log_every = smoke_config.train.checkpoint_every = 1
    with pytest.raises(FloatingPointError, match=r"non-finite (loss|gradient) at step (\d+)") as info:
        train_and_evaluate(smoke_config, tmp_path, devices=one_device())
    steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
    _, item = checkpoint.load(tmp_path / "checkpoints")
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(item["state"]["params"]))
    import re

    bad_step = int(re.search(r"at step (\d+)", str(info.value)).group(1))
    assert steps and max(steps) < bad_step


def test_skip_nonfinite_skips_and_counts(smoke_config, tmp_path):
    smoke_config.train.class_weights = (float("nan"),) + (1.0,) * 9
    smoke_config.train.skip_nonfinite = True
    train_and_evaluate(smoke_config, tmp_path, devices=one_device())
    records = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["skipped_nonfinite"] for r in train] == [3.0, 6.0]  # every batch has a class-0 image


def test_sigterm_checkpoints_current_step_and_exits_nonzero(tmp_path, tfds_dir):
    workdir = tmp_path / "run"
    cmd = [
        sys.executable, "-m", "jaxclf.main",
        f"--config={os.path.join(REPO, 'configs', 'lenet5_digits.py')}",
        f"--workdir={workdir}", f"--config.dataset.data_dir={tfds_dir}",
        "--config.train.progress=False", "--config.eval.report=False",  # plots: checked elsewhere
        "--config.train.num_steps=100000",
        "--config.train.log_every=10", "--config.train.checkpoint_every=100000",
        "--config.train.eval_every=100000",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics_file = workdir / "metrics.jsonl"
    deadline = time.time() + 240
    while not (metrics_file.exists() and metrics_file.read_text()) and time.time() < deadline:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-2000:]
    assert "stopped by SIGTERM at step" in err and "Traceback" not in err
    step = checkpoint.load(workdir / "checkpoints")[0]
    assert step >= 10
    resumed = subprocess.run(
        [*cmd[:-4], f"--config.train.num_steps={step + 2}", "--allow_config_change"],
        capture_output=True, text=True, timeout=240,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"from step {step}" in resumed.stderr


def test_same_config_and_seed_give_identical_runs(smoke_config, tmp_path):
    a = train_and_evaluate(smoke_config, tmp_path / "a", devices=one_device())
    b = train_and_evaluate(smoke_config, tmp_path / "b", devices=one_device())
    assert a == b
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()
    _, pa = checkpoint.load(tmp_path / "a" / "checkpoints")
    _, pb = checkpoint.load(tmp_path / "b" / "checkpoints")
    jax.tree.map(np.testing.assert_array_equal, pa["state"], pb["state"])


def test_checkpoint_from_another_model_is_refused_and_kept(smoke_config, tmp_path):
    train_and_evaluate(smoke_config, tmp_path, devices=one_device())
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    smoke_config.model.name = "mlp"
    with pytest.raises(ConfigMismatchError, match="model.name: 'lenet5' -> 'mlp'"):
        train_and_evaluate(smoke_config, tmp_path, devices=one_device())
    with pytest.raises(checkpoint.NoValidCheckpointError, match="could be restored"):
        train_and_evaluate(smoke_config, tmp_path, devices=one_device(), allow_config_change=True)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == before  # nothing moved or lost


def test_input_shape_the_model_cannot_take_is_a_clear_error(smoke_config, tmp_path):
    smoke_config.dataset.resize = (8, 8)  # LeNet-5's two 5x5 valid convolutions need at least 16x16
    with pytest.raises(ValueError, match=r"model 'lenet5' cannot take inputs of shape \(8, 8, 1\)"):
        train_and_evaluate(smoke_config, tmp_path, devices=one_device())


def test_config_keys_added_later_with_default_values_are_no_change():
    from jaxclf.train.workdir import config_diff

    old = {"optim": {"lr": 0.1}}
    assert config_diff(old, {"optim": {"lr": 0.1, "b1": 0.9}}, {"optim": {"b1": 0.9}}) == []
    assert config_diff(old, {"optim": {"lr": 0.1, "b1": 0.5}}, {"optim": {"b1": 0.9}}) == ["optim.b1: '<absent>' -> 0.5"]


def test_checkpoints_written_with_orbax_standard_handler_still_restore(tmp_path):
    """Steps saved by Orbax's own StandardSave (with a sharding file per array, as jaxclf
    wrote them before) restore through jaxclf's manager and ``load``; jaxclf's own steps have
    no sharding files, and restore onto the target's sharding."""
    import orbax.checkpoint as ocp

    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    item = {"w": jax.device_put(np.arange(6.0, dtype=np.float32).reshape(2, 3), device),
            "n": jax.device_put(np.int32(7), device)}
    with ocp.CheckpointManager(tmp_path / "old") as old:
        old.save(3, args=ocp.args.StandardSave(item))
    assert list((tmp_path / "old" / "3").rglob("_sharding"))
    step, restored = checkpoint.restore_latest(checkpoint.manager(tmp_path / "old", 2), item)
    assert step == 3
    jax.tree.map(np.testing.assert_array_equal, restored, item)
    step, loaded = checkpoint.load(tmp_path / "old")  # without a target, as tools read it
    assert step == 3
    jax.tree.map(np.testing.assert_array_equal, loaded, item)

    mngr = checkpoint.manager(tmp_path / "new", 2)
    checkpoint.save(mngr, 5, item)
    mngr.wait_until_finished()
    assert not list((tmp_path / "new" / "5").rglob("_sharding"))
    step, restored = checkpoint.restore_latest(mngr, item)
    assert step == 5 and restored["w"].sharding == device
    jax.tree.map(np.testing.assert_array_equal, restored, item)
    step, loaded = checkpoint.load(tmp_path / "new")
    assert step == 5 and loaded["w"].sharding == device
    jax.tree.map(np.testing.assert_array_equal, loaded, item)
