"""The streaming input path (dataset.in_memory=False): ArrayRecord random access, grain worker
processes, batches that are a pure function of (seed, step), each process reading only its
rows, uint8 to the devices, exact resume, exact eval, and failures that stop the run cleanly."""

import collections
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import psutil
import pytest
import tensorflow_datasets as tfds

from jaxclf import config as config_lib, data
from jaxclf.data import stream
from jaxclf.run import train_and_evaluate
from jaxclf.train import checkpoint, loop, mesh as mesh_lib
from conftest import REPO
from test_multiprocess import env, free_port


@pytest.fixture(scope="module")
def array_record_dir(tmp_path_factory):
    """The bundled digits prepared as ArrayRecord (random access) in a data_dir of its own."""
    path = str(tmp_path_factory.mktemp("tfds_array_record"))
    tfds.builder("digits", data_dir=path, file_format="array_record").download_and_prepare()
    return path


def stream_config(data_dir, **dataset):
    c = config_lib.load(os.path.join(REPO, "configs", "lenet5_digits.py"), "smoke")
    c.dataset.data_dir = data_dir
    c.dataset.in_memory = False
    c.dataset.resize = (32, 32)
    c.dataset.stream.eval_resize = 32
    c.dataset.mean, c.dataset.std = (0.3,), (0.4,)
    c.dataset.augment = ("random_resized_crop", "flip")
    c.dataset.stream.num_workers = 1
    # streaming does not carve a validation split: evaluate on test during training
    c.dataset.validation_fraction, c.dataset.test_splits, c.dataset.eval_splits = 0.0, (), ("test",)
    for k, v in dataset.items():  # eval_resize, num_workers: the stream sub-section's
        (c.dataset.stream if k in c.dataset.stream else c.dataset)[k] = v
    c.train.progress = False
    c.train.batch_size, c.train.eval_batch_size = 16, 64
    c.train.num_steps, c.train.steps_per_call = 6, 2
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 3
    c.eval.report = False
    return c


def params_of(workdir):
    return checkpoint.load(os.path.join(workdir, "checkpoints"))[1]["state"]["params"]


def test_random_resized_crop_is_deterministic_and_in_bounds():
    for seed in range(300):
        h, w = [(375, 500), (500, 333), (64, 64), (8, 8)][seed % 4]
        box = stream.random_resized_crop_box(np.random.default_rng(seed), h, w)
        assert box == stream.random_resized_crop_box(np.random.default_rng(seed), h, w)
        top, left, ch, cw = box
        assert 0 < ch and 0 < cw and 0 <= top and top + ch <= h and 0 <= left and left + cw <= w
        if (ch, cw) != (h, w):  # not the fallback: the area and aspect ratio are in range
            assert ch * cw <= h * w
            assert 3 / 4 - 0.2 <= cw / ch <= 4 / 3 + 0.2  # rounding to whole pixels
    # A 1x100 strip admits no crop in ten tries: torchvision's fallback, a centred 1x1.
    assert stream.random_resized_crop_box(np.random.default_rng(0), 1, 100) == (0, 49, 1, 1)
    image = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    out = stream.preprocess_train(image, np.random.default_rng(5), (24, 24))
    np.testing.assert_array_equal(out, stream.preprocess_train(image, np.random.default_rng(5), (24, 24)))
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8


def test_eval_resizes_the_shorter_side_then_center_crops():
    image = np.random.default_rng(0).integers(0, 256, (300, 500, 3), dtype=np.uint8)
    assert stream.preprocess_eval(image, (224, 224), 256).shape == (224, 224, 3)
    assert stream.preprocess_eval(image, (64, 64), 0).shape == (64, 64, 3)  # whole image resized
    # No resize needed: the crop is the exact centre of the image.
    square = image[:256, :256]
    np.testing.assert_array_equal(stream.preprocess_eval(square, (224, 224), 256), square[16:240, 16:240])
    assert stream.center_crop_box(256, 341, (224, 224)) == (16, 58, 224, 224)


def digits_records(data_dir, split="train"):
    """The split's raw records (encoded PNG bytes, labels) read without jaxclf."""
    source = tfds.data_source("digits", split=split, data_dir=data_dir, decoders={"image": tfds.decode.SkipDecoding()},
                              builder_kwargs={"file_format": "array_record"})
    return [source[i] for i in range(len(source))]


def reference_batch(records, seed, step, batch_size, size):
    """The contract, written out: indices from train_indices, example p of step s cropped and
    flipped by a generator seeded with (seed, s, p), uint8."""
    indices = data.train_indices(seed, step, batch_size, len(records))
    images = [stream.preprocess_train(records[i]["image"], np.random.default_rng((seed, step, p)), size, channels=1)
              for p, i in enumerate(indices)]
    return np.stack(images), np.asarray([records[i]["label"] for i in indices], np.int32)


def steps_of(split, batch_size, steps, workers, rows=None):
    rows = np.arange(batch_size) if rows is None else np.asarray(rows)
    return list(stream.stream(stream.TrainRows(split, batch_size, rows), steps, workers, what="test batches"))


def test_batch_of_step_depends_only_on_seed_and_step_not_on_workers_or_resume(array_record_dir):
    """Steps 0-3 read here, by two worker processes, and from step 2 on (a resumed run) by
    one: each step's batch is the reference batch of (seed, step)."""
    cfg = stream_config(array_record_dir).dataset
    split = stream.StreamSplit(cfg, "train", True, seed=3)
    records = digits_records(array_record_dir)
    expected = [reference_batch(records, 3, s, 16, (32, 32)) for s in range(4)]
    runs = {"here": steps_of(split, 16, range(4), 0), "2 workers": steps_of(split, 16, range(4), 2),
            "resumed, 1 worker": [None, None] + steps_of(split, 16, range(2, 4), 1)}
    for name, batches in runs.items():
        for step, batch in enumerate(batches):
            if batch is None:
                continue
            assert batch["inputs"].dtype == np.uint8 and batch["inputs"].shape == (16, 32, 32, 1), name
            np.testing.assert_array_equal(batch["inputs"], expected[step][0], err_msg=f"{name}, step {step}")
            np.testing.assert_array_equal(batch["labels"], expected[step][1], err_msg=f"{name}, step {step}")
    assert not np.array_equal(expected[0][0], reference_batch(records, 4, 0, 16, (32, 32))[0])  # the seed matters


class CountingSource:
    """A data source that records every index it is asked for (in this process)."""

    def __init__(self, source):
        self.source, self.reads = source, []

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        self.reads.append(int(index))
        return self.source[index]


def test_a_process_reads_only_its_rows_and_never_the_padding(array_record_dir):
    cfg = stream_config(array_record_dir).dataset
    train = stream.StreamSplit(cfg, "train", True, seed=3)
    counting = CountingSource(train.source)
    part = stream.StreamSplit(cfg, "train", True, seed=3, source=counting)
    rows = np.array([1, 4, 5, 11])  # e.g. the rows of this process's devices
    whole, mine = steps_of(train, 16, [7], 0)[0], steps_of(part, 16, [7], 0, rows)[0]
    np.testing.assert_array_equal(mine["inputs"], whole["inputs"][rows])  # crops seeded by global position
    np.testing.assert_array_equal(mine["labels"], whole["labels"][rows])
    assert counting.reads == data.train_indices(3, 7, 16, train.num_examples)[rows].tolist()

    test = stream.StreamSplit(cfg, "test", False, source=CountingSource(stream.open_source(cfg, "test")))
    n = test.num_examples  # 450: the last 64-example batch holds 2 examples and 62 padding rows
    last = list(data.eval_batches(n, 64))[-1]
    rows = np.arange(32, 64)  # the second of two processes holds only padding there
    out = stream.EvalRows(test, rows)(last)
    assert test.source.reads == [] and not out["mask"].any() and not out["inputs"].any()
    out = stream.EvalRows(test, np.arange(64))(last)
    assert test.source.reads == [448, 449] and out["mask"].tolist() == [1.0] * 2 + [0.0] * 62
    records = digits_records(array_record_dir, "test")
    np.testing.assert_array_equal(out["inputs"][1], stream.preprocess_eval(records[449]["image"], (32, 32), 32, channels=1))
    assert out["labels"][1] == records[449]["label"]


def test_normalize_on_the_device_is_bitwise_the_host_float_path():
    images = np.random.default_rng(0).integers(0, 256, (4, 5, 5, 3), dtype=np.uint8)
    images[0, 0, :3, 0] = [0, 1, 255]
    mean, std = np.asarray([0.485, 0.456, 0.406], np.float32), np.asarray([0.229, 0.224, 0.225], np.float32)
    out = jax.jit(stream.normalize)(images, stream.normalization_table(mean, std))
    assert out.dtype == jnp.float32 and out.shape == images.shape
    np.testing.assert_array_equal(out, (images.astype(np.float32) / 255.0 - mean) / std)


def test_the_host_sends_uint8_batches_split_over_the_devices(array_record_dir):
    c = stream_config(array_record_dir, num_workers=0)
    m = mesh_lib.make_mesh(jax.devices()[:2])
    program = loop.compile_run(c, m)
    chunks = program.inputs.chunks([(0, 2), (2, 3)])
    _, first = next(chunks)
    chunks.close()
    inputs = first["inputs"]
    assert inputs.dtype == jnp.uint8 and inputs.shape == (2, 16, 32, 32, 1)  # 2 steps of 16 uint8 images
    assert inputs.sharding.is_equivalent_to(mesh_lib.batch_sharded(m, batch_axis=1), inputs.ndim)
    assert [s.data.shape for s in inputs.addressable_shards] == [(2, 8, 32, 32, 1)] * 2
    records = digits_records(array_record_dir)
    for step in range(2):
        np.testing.assert_array_equal(np.asarray(inputs[step]), reference_batch(records, c.seed, step, 16, (32, 32))[0])


class FailingSource(CountingSource):
    """Raises (``how='raise'``) or kills its worker process (``how='exit'``) at ``bad``."""

    def __init__(self, source, bad, how):
        super().__init__(source)
        self.bad, self.how = bad, how

    def __getitem__(self, index):
        if int(index) == self.bad:
            if self.how == "exit":
                os._exit(3)
            raise OSError(f"unreadable record {index}")
        return self.source[index]


def children():
    """Child processes, without multiprocessing's resource tracker: one per process, started
    by the first shared-memory use and ended with the process (not a worker)."""
    def tracker(p):
        try:
            return "multiprocessing.resource_tracker" in " ".join(p.cmdline())
        except psutil.Error:
            return False

    return {p.pid for p in psutil.Process().children(recursive=True) if not tracker(p)}


@pytest.mark.parametrize("how", ["raise", "exit"])
def test_a_failing_worker_stops_the_run_with_a_clear_error_and_leaves_no_process(array_record_dir, tmp_path, how):
    """A record that cannot be read (an exception in a worker) and a worker that dies: the
    run raises StreamError promptly, naming the problem, and every worker is gone."""
    c = stream_config(array_record_dir, num_workers=1)
    bad = int(data.train_indices(c.seed, 5, 16, 1347)[5])  # read at step 5, after a checkpoint and an evaluation
    open_source = stream.open_source
    before = children()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stream, "open_source", lambda cfg, split: FailingSource(open_source(cfg, split), bad if split == "train" else -1, how))
        t0 = time.monotonic()
        expected = f"example {bad} \\(step 5\\).*unreadable record {bad}" if how == "raise" else "terminated unexpectedly"
        with pytest.raises(stream.StreamError, match=expected):
            train_and_evaluate(c, tmp_path / how, devices=jax.devices()[:1])
    assert time.monotonic() - t0 < 120
    if how == "raise":  # the steps before the failure are kept (a dead worker may lose what it had sent)
        assert checkpoint.load(tmp_path / how / "checkpoints")[0] == 3
    deadline = time.monotonic() + 10
    while children() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not children() - before, "worker processes left behind"


def test_streaming_resume_is_bitwise_identical(array_record_dir, tmp_path):
    c = stream_config(array_record_dir, num_workers=0)  # resuming a worker's stream: test_batch_of_step_...
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    expected = train_and_evaluate(c, whole, devices=jax.devices()[:1])
    assert train_and_evaluate(c, parts, devices=jax.devices()[:1], stop_at=4) == {}
    assert train_and_evaluate(c, parts, devices=jax.devices()[:1]) == expected
    jax.tree.map(np.testing.assert_array_equal, params_of(whole), params_of(parts))
    assert (whole / "metrics.jsonl").read_text() == (parts / "metrics.jsonl").read_text()


def test_streaming_and_in_memory_agree_without_augmentation(array_record_dir, tfds_dir, tmp_path):
    """Same data, native 8x8 size (so no resampling: PIL rounds resized images to uint8, the
    in-memory path resizes float arrays), no augmentation: the same eval metrics, every one of
    the 450 test images counted once (64-image batches, the last one padded and masked)."""
    c = stream_config(array_record_dir, resize=(8, 8), eval_resize=8, augment=(), num_workers=0)
    c.model.name = "mlp"
    mem = c.copy_and_resolve_references()
    mem.dataset.data_dir, mem.dataset.in_memory, mem.dataset.stream.eval_resize, mem.dataset.resize = tfds_dir, True, 0, None
    streamed = train_and_evaluate(c, tmp_path / "stream", devices=jax.devices()[:1])
    in_memory = train_and_evaluate(mem, tmp_path / "memory", devices=jax.devices()[:1])
    assert streamed == in_memory
    jax.tree.map(np.testing.assert_array_equal, params_of(tmp_path / "stream"), params_of(tmp_path / "memory"))


def test_tfrecord_dataset_and_missing_stats_are_clear_errors(tmp_path):
    tfds.builder("digits", data_dir=str(tmp_path)).download_and_prepare()  # tfrecord, TFDS's default
    c = stream_config(str(tmp_path))
    with pytest.raises(ValueError, match="file_format='array_record'"):
        stream.StreamSplit(c.dataset, "train", True)
    c.dataset.mean = None
    with pytest.raises(ValueError, match="dataset.mean and dataset.std"):
        config_lib.validate(c)
    c = stream_config(str(tmp_path), augment=("random_crop",))
    with pytest.raises(ValueError, match="random_resized_crop"):
        config_lib.validate(c)


# One process of a streamed run (python -c DRIVER ARGS): every record read -- here or in a grain
# worker, which receives the source pickled -- is logged as "process split index".
DRIVER = """
import json, sys
args = json.loads(sys.argv[1])
import jax
if args["num_processes"] > 1:
    jax.distributed.initialize(args["coordinator"], args["num_processes"], args["process_id"])
from jaxclf import config as config_lib
from jaxclf.data import stream
from jaxclf.run import train_and_evaluate
class LoggedSource:
    def __init__(self, source, log, tag):
        self.source, self.log, self.tag = source, log, tag

    def __len__(self):
        return len(self.source)

    def __getitem__(self, index):
        with open(self.log, "a") as f:
            f.write(f"{self.tag} {int(index)}\\n")
        return self.source[index]


open_source = stream.open_source
stream.open_source = lambda cfg, split: LoggedSource(open_source(cfg, split), args["log"], f"{args['process_id']} {split}")
config = config_lib.load(args["config"], "smoke")
for key, value in args["overrides"].items():
    node, name = config, key.split(".")
    for part in name[:-1]:
        node = node[part]
    node[name[-1]] = tuple(value) if isinstance(value, list) else value
train_and_evaluate(config, args["workdir"])
"""


def run_driver(workdir, data_dir, log, num_processes):
    c = stream_config(data_dir)
    overrides = {f"dataset.{k}": c.dataset[k] for k in ("data_dir", "in_memory", "resize", "mean", "std", "augment",
                                                          "validation_fraction", "test_splits", "eval_splits")}
    overrides |= {f"dataset.stream.{k}": c.dataset.stream[k] for k in ("eval_resize", "num_workers")}
    overrides |= {f"train.{k}": c.train[k] for k in ("progress", "batch_size", "eval_batch_size", "num_steps",
                                                      "steps_per_call", "log_every", "eval_every", "checkpoint_every")}
    overrides["eval.report"] = False
    overrides["train.eval_every"] = 6  # one evaluation: each costs every process a worker start-up
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps({
        "num_processes": num_processes, "process_id": i, "coordinator": f"127.0.0.1:{port}", "log": str(log),
        "workdir": str(workdir), "config": os.path.join(REPO, "configs", "lenet5_digits.py"), "overrides": overrides})],
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(num_processes)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    reads = collections.defaultdict(list)
    for line in log.read_text().split("\n")[:-1]:
        process, split, index = line.split()
        reads[int(process), split].append(int(index))
    return reads


def test_two_processes_read_half_each_and_train_like_one(array_record_dir, tmp_path):
    """Two processes (one device each, one grain worker each) against one: the same parameters,
    and each process read only its half of every training batch and its own evaluation rows."""
    one = run_driver(tmp_path / "one", array_record_dir, tmp_path / "one.log", 1)
    two = run_driver(tmp_path / "two", array_record_dir, tmp_path / "two.log", 2)
    (s1, p1), (s2, p2) = checkpoint.load(tmp_path / "one" / "checkpoints"), checkpoint.load(tmp_path / "two" / "checkpoints")
    assert s1 == s2 == 6
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=0), p1["state"]["params"], p2["state"]["params"])

    c = stream_config(array_record_dir)
    steps = [data.train_indices(c.seed, s, 16, 1347) for s in range(6)]
    assert one[0, "train"] == np.concatenate(steps).tolist()  # one process reads every batch whole
    assert two[0, "train"] == np.concatenate([s[:8] for s in steps]).tolist()  # the first process: rows 0-7
    assert two[1, "train"] == np.concatenate([s[8:] for s in steps]).tolist()  # the second: rows 8-15
    assert sorted(one[0, "test"]) == list(range(450))  # the evaluation reads each example once
    mine = [set(two[p, "test"]) for p in (0, 1)]
    assert not mine[0] & mine[1] and mine[0] | mine[1] == set(range(450))
    assert sorted(two[0, "test"] + two[1, "test"]) == sorted(one[0, "test"])


def started_workers(proc, timeout=120):
    """A running training process's children (its workers and multiprocessing's resource
    tracker), once its workers have started: left its process group."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        children = psutil.Process(proc.pid).children(recursive=True)
        workers = [p for p in children if "multiprocessing.spawn" in " ".join(p.cmdline())]
        if workers and all(os.getpgid(p.pid) != proc.pid for p in workers):
            return children
        time.sleep(0.2)
    raise AssertionError("no worker process started")


def gone(procs, timeout=30):
    """True once every process in ``procs`` has exited (a zombie counts: it runs nothing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in procs):
            return True
        time.sleep(0.2)
    return False


def test_ctrl_c_and_sigkill_leave_no_worker_behind(array_record_dir, tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stops a streamed run
    with a checkpoint and stops its workers; SIGKILL of the training process alone (no chance
    to clean up) still ends them: they watch their parent."""
    command = [sys.executable, "-m", "jaxclf.main", f"--config={os.path.join(REPO, 'configs', 'lenet5_digits.py')}:smoke",
               f"--workdir={tmp_path / 'run'}", f"--config.dataset.data_dir={array_record_dir}",
               "--config.dataset.in_memory=False", "--config.dataset.resize=(32, 32)", "--config.dataset.stream.eval_resize=32",
               "--config.dataset.mean=(0.3,)", "--config.dataset.std=(0.4,)", "--config.dataset.stream.num_workers=2",
               "--config.train.progress=False", "--config.train.num_steps=100000", "--config.train.batch_size=16",
               "--config.train.log_every=50", "--config.train.eval_every=100000", "--config.train.checkpoint_every=100000",
               "--config.eval.report=False", "--config.dataset.validation_fraction=0.0",
               "--config.dataset.test_splits=()", "--config.dataset.eval_splits=('test',)"]
    run = subprocess.Popen(command, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)  # its own process group, signalled as a terminal would
    workers = started_workers(run)  # (while a worker starts, it is in the group: SIGINT would kill it)
    os.killpg(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0 and "stopped by SIGINT" in err, err[-3000:]
    assert checkpoint.load(tmp_path / "run" / "checkpoints")[0] > 0
    assert gone(workers), "workers left behind after Ctrl-C"

    run = subprocess.Popen(command, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    workers = started_workers(run)
    run.kill()
    run.communicate(timeout=60)
    assert gone(workers, timeout=10), "workers outlived a SIGKILLed training process"
