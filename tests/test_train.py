"""End to end: workdir files, deterministic resume, exact evaluation, data parallelism."""

import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxclf import data, models
from jaxclf.run import train_and_evaluate
from jaxclf.train import checkpoint, losses
from jaxclf.train.workdir import WorkdirError



def one_device():
    return jax.devices()[:1]


def params_of(workdir):
    _, item = checkpoint.load(os.path.join(workdir, "checkpoints"))
    return item["state"]["params"]


def read(workdir, name):
    with open(os.path.join(workdir, name)) as f:
        return f.read()


def test_run_writes_every_workdir_file(smoke_config, tmp_path):
    smoke_config.eval.report = True
    results = train_and_evaluate(smoke_config, tmp_path, devices=one_device())
    assert set(os.listdir(tmp_path)) >= {"config.json", "metrics.jsonl", "results.json", "checkpoints", "tensorboard", "report"}
    assert (tmp_path / "report" / "report.md").exists()
    assert json.loads(read(tmp_path, "results.json")) == results
    assert set(results) == {"validation", "test"}  # evaluated while training / once at the end
    assert set(results["test"]) == set(results["validation"]) == {"accuracy", "loss"}
    assert json.loads(read(tmp_path, "config.json"))["model"]["name"] == "lenet5"
    records = [json.loads(line) for line in read(tmp_path, "metrics.jsonl").splitlines()]
    assert [(r["step"], r["split"]) for r in records] == [(3, "train"), (3, "validation"), (6, "train"), (6, "validation")]
    assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [3, 6]
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "tensorboard" / "train"))


def test_interrupted_and_resumed_run_is_bitwise_identical(smoke_config, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    expected = train_and_evaluate(smoke_config, whole, devices=one_device())
    assert train_and_evaluate(smoke_config, parts, devices=one_device(), stop_at=4) == {}
    assert checkpoint.load(parts / "checkpoints")[0] == 4
    assert train_and_evaluate(smoke_config, parts, devices=one_device()) == expected
    jax.tree.map(np.testing.assert_array_equal, params_of(whole), params_of(parts))
    assert read(whole, "metrics.jsonl") == read(parts, "metrics.jsonl")
    # Re-running a finished run does no training and reports the same results.
    assert train_and_evaluate(smoke_config, parts, devices=one_device()) == expected


def tensorboard_scalars(workdir) -> list[tuple]:
    """(split, step, tag, value) of every scalar event under ``workdir/tensorboard``."""
    import tensorflow as tf

    out = []
    for path in sorted((workdir / "tensorboard").glob("*/events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            out += [(path.parent.name, event.step, v.tag, float(tf.make_ndarray(v.tensor)) if v.HasField("tensor") else v.simple_value)
                    for v in event.summary.value]  # tf.summary writes tensors, tensorboardX simple values
    return sorted(out)


def test_resume_drops_what_was_logged_after_the_restored_step(smoke_config, tmp_path):
    """A run that logged steps 4 and 5 and then lost its step-5 checkpoint resumes from step
    3: its metrics.jsonl and TensorBoard events then read as an uninterrupted run's."""
    smoke_config.train.log_every = 1
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train_and_evaluate(smoke_config, whole, devices=one_device())
    train_and_evaluate(smoke_config, parts, devices=one_device(), stop_at=5)
    shutil.rmtree(parts / "checkpoints" / "5")
    assert len(tensorboard_scalars(parts)) > len([s for s in tensorboard_scalars(whole) if s[1] <= 3])
    train_and_evaluate(smoke_config, parts, devices=one_device())
    assert read(whole, "metrics.jsonl") == read(parts, "metrics.jsonl")
    assert tensorboard_scalars(parts) == tensorboard_scalars(whole)
    assert {s[:3] for s in tensorboard_scalars(whole)} >= {("train", 6, "loss"), ("validation", 6, "accuracy")}


def test_truncating_events_keeps_complete_records_up_to_the_step(tmp_path):
    """A record cut short by a killed process is dropped with the events after the step."""
    import tensorflow as tf

    from jaxclf.train import writers

    with tf.summary.create_file_writer(str(tmp_path / "tensorboard" / "train")).as_default():
        for step in range(1, 6):
            tf.summary.scalar("loss", 1.0 / step, step=step)
    (path,) = (tmp_path / "tensorboard" / "train").glob("events.out.tfevents.*")
    path.write_bytes(path.read_bytes()[:-7])  # the step-5 record loses its tail
    writers.truncate_events_after(tmp_path / "tensorboard", 5)
    assert tensorboard_scalars(tmp_path) == [("train", s, "loss", pytest.approx(1.0 / s)) for s in range(1, 5)]
    writers.truncate_events_after(tmp_path / "tensorboard", 2)
    assert tensorboard_scalars(tmp_path) == [("train", s, "loss", pytest.approx(1.0 / s)) for s in range(1, 3)]
    assert [p.name for p in (tmp_path / "tensorboard" / "train").iterdir()] == [path.name]


def test_evaluation_counts_every_example_once(smoke_config, tmp_path):
    """450 test images in batches of 64: the padded last batch is masked, not dropped."""
    results = train_and_evaluate(smoke_config, tmp_path, devices=one_device())
    ds = data.load(smoke_config.dataset)
    test = ds.splits["test"]
    model = models.from_config(smoke_config, ds.num_classes)
    logits = np.asarray(model.apply({"params": params_of(tmp_path)}, jnp.asarray(test.inputs), train=False))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, test.labels)
    assert results["test"]["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == test.labels), abs=1e-7)
    assert results["test"]["loss"] == pytest.approx(float(np.mean(loss)), rel=1e-5)


def test_four_devices_match_one(smoke_config, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXCLF_CONV", "xla")  # one device would run oneDNN's convolutions: other sums
    one = train_and_evaluate(smoke_config, tmp_path / "one", devices=jax.devices()[:1])
    four = train_and_evaluate(smoke_config, tmp_path / "four", devices=jax.devices()[:4])
    assert len(jax.devices()) >= 4
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0),
        params_of(tmp_path / "one"),
        params_of(tmp_path / "four"),
    )
    assert one["test"]["accuracy"] == pytest.approx(four["test"]["accuracy"], abs=1e-6)


def test_batch_not_divisible_by_devices_is_rejected(smoke_config, tmp_path):
    smoke_config.train.batch_size = 30
    with pytest.raises(ValueError, match="batch_size=30 is not divisible by the 4 devices"):
        train_and_evaluate(smoke_config, tmp_path, devices=jax.devices()[:4])


@pytest.mark.parametrize("make_path", [lambda t: t / "file" / "run", lambda t: "/proc/jaxclf-run"])
def test_unusable_workdir_is_a_clear_error(smoke_config, tmp_path, make_path):
    (tmp_path / "file").write_text("in the way")
    path = make_path(tmp_path)
    with pytest.raises(WorkdirError, match="workdir .* is not usable"):
        train_and_evaluate(smoke_config, path, devices=one_device())


def test_one_vs_rest_trains_k_binary_classifiers():
    logits = jnp.array([[2.0, -1.0, 0.5]])
    labels = jnp.array([0])
    expected = -np.log(jax.nn.sigmoid(2.0)) - np.log(1 - jax.nn.sigmoid(-1.0)) - np.log(1 - jax.nn.sigmoid(0.5))
    got = losses.per_example_loss(logits, labels, task="multiclass", one_vs_rest=True)
    np.testing.assert_allclose(got, [expected], rtol=1e-6)


def test_class_weights_and_label_smoothing():
    logits = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    labels = jnp.array([0, 1])
    plain = losses.per_example_loss(logits, labels, task="multiclass")
    weighted = losses.per_example_loss(logits, labels, task="multiclass", class_weights=(1.0, 3.0))
    np.testing.assert_allclose(weighted, plain * jnp.array([1.0, 3.0]), rtol=1e-6)
    smooth = losses.per_example_loss(logits, labels, task="multiclass", label_smoothing=0.2)
    logp = jax.nn.log_softmax(logits)
    np.testing.assert_allclose(smooth, -(0.9 * logp[[0, 1], [0, 1]] + 0.1 * logp[[0, 1], [1, 0]]), rtol=1e-6)


def test_binary_loss_is_sigmoid_cross_entropy():
    logits = jnp.array([[0.3], [-2.0]])
    labels = jnp.array([1, 0])
    expected = [-np.log(jax.nn.sigmoid(0.3)), -np.log(1 - jax.nn.sigmoid(-2.0))]
    np.testing.assert_allclose(losses.per_example_loss(logits, labels, task="binary"), expected, rtol=1e-6)


def test_several_steps_per_call_match_single_steps(smoke_config, tmp_path):
    """K steps in one lax.scan call give the single-step run (chunks stop at log/eval/save):
    bitwise between scans of any length; within float32 rounding of single steps (K = 1 calls
    the step directly, which XLA fuses differently from a loop body)."""
    single = train_and_evaluate(smoke_config, tmp_path / "k1", devices=one_device())
    t = smoke_config.train
    t.log_every = t.eval_every = t.checkpoint_every = 6
    t.steps_per_call = 4  # 6 steps, acting only at step 6: chunks of 4 and 2
    scanned = train_and_evaluate(smoke_config, tmp_path / "k4", devices=one_device())
    t.steps_per_call = 3  # chunks of 3 and 3
    train_and_evaluate(smoke_config, tmp_path / "k3", devices=one_device())
    jax.tree.map(np.testing.assert_array_equal, params_of(tmp_path / "k3"), params_of(tmp_path / "k4"))
    # Rounding in a sum scales with its terms, not its result: near-zero entries get a few
    # float32 ulps of their layer's largest entry (Adam's 1/sqrt(v) then carries them on).
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max()),
                 params_of(tmp_path / "k1"), params_of(tmp_path / "k4"))
    assert scanned["test"]["accuracy"] == pytest.approx(single["test"]["accuracy"], abs=1e-6)


def test_training_chunks_are_dispatched_under_a_transfer_guard(smoke_config, tmp_path, monkeypatch):
    """A hidden transfer between step dispatches (here the step's index table handed to the
    jitted call as a host array) stops the run instead of silently serialising host and
    device. (On CPU only host-to-device transfers can be caught: device memory is host memory.)"""
    from jaxclf.train import loop

    build = loop.compile_run

    def leaky_build(config, mesh):
        program = build(config, mesh)
        train = program.train
        return dataclasses.replace(program, train=lambda state, stats, chunk, num_steps: train(
            state, stats, jax.tree.map(np.asarray, chunk), num_steps=num_steps))

    monkeypatch.setattr(loop, "compile_run", leaky_build)
    with pytest.raises(Exception, match="Disallowed host-to-device transfer"):
        train_and_evaluate(smoke_config, tmp_path, devices=one_device())


def test_a_log_is_written_after_the_next_chunk_is_dispatched(smoke_config, tmp_path, monkeypatch):
    """Logging does not drain the device queue: step s's scalars are fetched and written once
    step s+1 is dispatched; evaluation and checkpoints write the pending log first, so lines
    stay in step order."""
    from jaxclf.train import loop, writers

    events, build, write = [], loop.compile_run, writers.MetricWriter.write

    def recording_build(config, mesh):
        program = build(config, mesh)
        train = program.train

        def recorded(state, stats, chunk, num_steps):
            out = train(state, stats, chunk, num_steps=num_steps)
            events.append(("train", int(out[0].step)))  # (a host sync, after the dispatch)
            return out

        return dataclasses.replace(program, train=recorded)

    def recording_write(self, step, split, scalars):
        events.append((split, step))
        return write(self, step, split, scalars)

    monkeypatch.setattr(loop, "compile_run", recording_build)
    monkeypatch.setattr(writers.MetricWriter, "write", recording_write)
    smoke_config.train.log_every = 1
    train_and_evaluate(smoke_config, tmp_path, devices=one_device())
    assert events == [("train", 1), ("train", 2), ("train", 1), ("train", 3), ("train", 2), ("train", 3), ("validation", 3),
                      ("train", 4), ("train", 5), ("train", 4), ("train", 6), ("train", 5), ("train", 6), ("validation", 6)]
    records = [json.loads(line) for line in read(tmp_path, "metrics.jsonl").splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 3, 4, 5, 6, 6]


def test_window_summary_matches_the_statistics_computed_on_the_host(smoke_config):
    """The jitted summary a log fetches = the metrics computed eagerly and the norm sums
    divided by the step count in float64."""
    from jaxclf.train import compiled, train_stats

    metric_set, _ = compiled.metric_sets(smoke_config, 10)
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(40, 10)).astype(np.float32), rng.integers(0, 10, 40)
    loss = rng.uniform(size=40).astype(np.float32)
    update = metric_set.update(metric_set.empty(), logits=jnp.asarray(logits), labels=jnp.asarray(labels),
                               loss=jnp.asarray(loss), mask=jnp.ones(40))
    stats = {"metrics": update, "grad_norm_sum": jnp.float32(7.3), "steps": jnp.int32(3), "nonfinite_steps": jnp.int32(1),
           "first_bad_step": jnp.int32(2), "first_bad_kind": jnp.int32(2),
           "layer_grad_norm_sum": {"conv": jnp.float32(1.1), "head": jnp.float32(0.4)}}
    summary = jax.device_get(jax.jit(lambda a: train_stats.summarize(a, metric_set))(stats))
    eager = jax.device_get(metric_set.compute(update))
    assert summary["metrics"]["accuracy"] == pytest.approx(np.mean(logits.argmax(-1) == labels), abs=1e-7)
    assert summary["metrics"]["loss"] == pytest.approx(loss.astype(np.float64).mean(), rel=1e-6)
    for name in eager:
        assert summary["metrics"][name] == pytest.approx(eager[name], rel=1e-6)
    assert summary["grad_norm"] == pytest.approx(7.3 / 3, rel=1e-6)
    assert summary["layer_grad_norms"] == pytest.approx({"conv": 1.1 / 3, "head": 0.4 / 3}, rel=1e-6)
    assert (summary["nonfinite_steps"], summary["first_bad_step"], summary["first_bad_kind"]) == (1, 2, 2)
    with pytest.raises(FloatingPointError, match="non-finite gradient at step 2"):
        train_stats.check_finite(summary, skip=False, last_checkpoint=None)
