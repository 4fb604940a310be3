"""Every way a run ends, as the real command: exit code, message, and how long the process
takes to end once the message is out (where a run with steps in flight used to hang).

Faults that a command line cannot cause (a data pipeline, a checkpoint save, a writer or
the report raising) are injected by a few lines that patch one function and then run
``jaxclf.main`` as ``python -m`` would.
"""

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import REPO

CONFIG = os.path.join(REPO, "configs", "lenet5_digits.py")
QUIET = ["--config.train.progress=False", "--config.eval.report=False", "--config.train.batch_size=32",
         "--config.train.eval_batch_size=64"]
# From the message to the end of the process (interpreter finalization): 5-12 s measured with
# the load average at 20-28 on 2 cores; the hang this guards against lasted forever.
EXIT_SECONDS = 45
TIMEOUT = 300


@dataclasses.dataclass
class Ended:
    code: int
    stderr: str
    after_message: float  # seconds from the line holding the message to the process's end


def run(args, message: str, *, inject: str = "", signal_after: str = "", signum=signal.SIGTERM, env=None) -> Ended:
    """Runs ``python -m jaxclf.main ARGS`` (or, with ``inject``, that code first), reading
    stderr as it comes; sends ``signum`` once a stderr/metrics line contains ``signal_after``."""
    if inject:
        code = inject + "\nimport runpy, sys\nsys.argv[0] = 'jaxclf.main'\nrunpy.run_module('jaxclf.main', run_name='__main__')\n"
        cmd = [sys.executable, "-c", code, *args]
    else:
        cmd = [sys.executable, "-m", "jaxclf.main", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines, seen = [], {}

    def read():
        for line in proc.stderr:
            lines.append(line)
            if message in line and "message" not in seen:
                seen["message"] = time.monotonic()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if signal_after:
        workdir = next(a.split("=", 1)[1] for a in args if a.startswith("--workdir="))
        metrics = os.path.join(workdir, "metrics.jsonl")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if os.path.exists(metrics) and signal_after in open(metrics).read():
                break
            time.sleep(0.2)
        proc.send_signal(signum)
    try:
        proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"still running after {TIMEOUT} s; stderr tail:\n{''.join(lines)[-3000:]}")
    end = time.monotonic()
    reader.join(10)
    stderr = "".join(lines)
    assert "message" in seen, f"{message!r} not in stderr (exit {proc.returncode}):\n{stderr[-3000:]}"
    return Ended(proc.returncode, stderr, end - seen["message"])


def train_args(workdir, tfds_dir, *extra):
    return [f"--config={CONFIG}", f"--workdir={workdir}", f"--config.dataset.data_dir={tfds_dir}", *QUIET, *extra]


def assert_ended(ended: Ended, code: int):
    assert ended.code == code, ended.stderr[-3000:]
    assert ended.after_message < EXIT_SECONDS, f"{ended.after_message:.1f} s from the message to the exit"


# --- endings mid-training -----------------------------------------------------------------

# Ten steps per call, logged every ten: when the first log shows the non-finite loss, the next
# ten steps (oneDNN convolutions, Python callbacks) are still running.
DIVERGING = ["--config.optim.schedule=constant", "--config.train.num_steps=200", "--config.train.steps_per_call=10",
             "--config.train.log_every=10", "--config.train.checkpoint_every=1000", "--config.train.eval_every=1000"]


@pytest.mark.parametrize("lr", ["1e30", "nan"])
def test_nonfinite_loss_exits_1_with_its_message(tmp_path, tfds_dir, lr):
    ended = run(train_args(tmp_path, tfds_dir, f"--config.optim.lr={lr}", "--config.train.allow_unusual=True", *DIVERGING),
                "non-finite loss at step")
    assert_ended(ended, 1)
    assert "Traceback" not in ended.stderr
    assert "Lower the learning rate" in ended.stderr
    assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")


@pytest.mark.parametrize("signum", [signal.SIGINT])  # SIGTERM, and resuming: test_reliability.py
def test_signal_mid_training_checkpoints_and_exits_75(tmp_path, tfds_dir, signum):
    args = train_args(tmp_path, tfds_dir, "--config.train.num_steps=100000", "--config.train.log_every=10",
                      "--config.train.checkpoint_every=100000", "--config.train.eval_every=100000")
    ended = run(args, f"stopped by {signal.Signals(signum).name} at step", signal_after='"step": 10,', signum=signum)
    assert_ended(ended, 75)
    assert "Traceback" not in ended.stderr
    assert os.listdir(tmp_path / "checkpoints")


# Ten steps per call: each fault finds up to ten steps still running.
STEPS = ["--config.train.num_steps=60", "--config.train.steps_per_call=10", "--config.train.log_every=10",
         "--config.train.checkpoint_every=20", "--config.train.eval_every=30"]

DATA_ERROR = """
from jaxclf.train import loop
one_ahead = loop._one_ahead
def failing(chunks):
    def chunks_then_error():
        for i, chunk in enumerate(chunks):
            if i == 3:
                raise RuntimeError("injected: the data pipeline failed")
            yield chunk
    return one_ahead(chunks_then_error())
loop._one_ahead = failing
"""

SAVE_ERROR = """
from jaxclf.train import checkpoint
save, calls = checkpoint.save, []
def failing(mngr, step, item):
    calls.append(step)
    if len(calls) == 2:
        raise OSError(28, "injected: No space left on device")
    save(mngr, step, item)
checkpoint.save = failing
"""

WRITER_ERROR = """
from jaxclf.train import writers
write = writers.MetricWriter.write
def failing(self, step, split, scalars):
    if split != "train":
        raise RuntimeError("injected: the writer failed")
    write(self, step, split, scalars)
writers.MetricWriter.write = failing
"""

REPORT_ERROR = """
from jaxclf import report
def failing(*args, **kwargs):
    raise RuntimeError("injected: the report failed")
report.write = failing
"""


@pytest.mark.parametrize("inject,message", [
    (DATA_ERROR, "injected: the data pipeline failed"),
    (SAVE_ERROR, "injected: No space left on device"),
    (WRITER_ERROR, "injected: the writer failed"),
    (REPORT_ERROR, "injected: the report failed"),
], ids=["data", "save", "writer", "report"])
def test_an_error_mid_run_ends_the_process(tmp_path, tfds_dir, inject, message):
    report = ["--config.eval.report=True"] if inject is REPORT_ERROR else []
    ended = run(train_args(tmp_path, tfds_dir, *STEPS, *report), message, inject=inject)
    assert_ended(ended, 1)
    assert not (tmp_path / "results.json").exists() or inject is REPORT_ERROR


# --- bad input: one line, before any compute, nothing a later run could take for a run ------


def one_line(cmd, workdir, env=None, timeout=120):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert out.returncode in (1, 2), out.stderr[-3000:]
    # (a catalog dataset prepared on first use logs its progress before: not an error)
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert not os.path.exists(workdir) or not os.listdir(workdir)  # no config.json, nothing
    return errors[0]


def main_cmd(workdir, tfds_dir, *args, config=CONFIG):
    return [sys.executable, "-m", "jaxclf.main", f"--config={config}", f"--workdir={workdir}",
            f"--config.dataset.data_dir={tfds_dir}", "--config.train.progress=False", *args]


@pytest.mark.parametrize("args,expected", [
    (["--config.optim.lrr=0.01"], "--config.optim.lrr: unknown config key 'lrr'; did you mean \"lr\""),
    (["--config.model.name=lenet6"], "unknown model 'lenet6'; valid models: "),
    (["--config.optim.name=adamx"], "unknown optimizer 'adamx'; valid: sgd"),
    (["--config.train.batch_size=0"], "train.batch_size must be positive, got 0"),
    (["--config.train.num_steps=0"], "train.num_steps must be positive, got 0"),
    (["--config.optim.lr=-0.01"], "optim.lr=-0.01 is negative (gradient ascent); set train.allow_unusual=True"),
    (["--config.optim.lr=nan"], "optim.lr=nan is not finite; set train.allow_unusual=True"),
    (["--config.train.batch_size=5000"], "train.batch_size=5000 is larger than the train split"),
    (["--config.dataset.keep_classes=(3,)"], "has 1 class: nothing to classify; set train.allow_unusual=True"),
])
def test_bad_config_value_is_one_line(tmp_path, tfds_dir, args, expected):
    assert expected in one_line(main_cmd(tmp_path / "run", tfds_dir, *args), tmp_path / "run")


def test_bad_config_files_are_one_line(tmp_path, tfds_dir):
    workdir = tmp_path / "run"
    line = one_line(main_cmd(workdir, tfds_dir, config=str(tmp_path / "nope.py")), workdir)
    assert "cannot load the config file" in line and "nope.py" in line
    (tmp_path / "noget.py").write_text("x = 1\n")
    assert "defines no get_config" in one_line(main_cmd(workdir, tfds_dir, config=str(tmp_path / "noget.py")), workdir)
    assert "unknown variant 'smok'; valid: smoke" in one_line(main_cmd(workdir, tfds_dir, config=CONFIG + ":smok"), workdir)


def test_batch_not_divisible_by_the_devices_is_one_line(tmp_path, tfds_dir):
    env = {**os.environ, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"}
    line = one_line(main_cmd(tmp_path / "run", tfds_dir, "--config.train.batch_size=30"), tmp_path / "run", env=env)
    assert "train.batch_size=30 is not divisible by the 4 devices" in line


def test_traceback_only_when_asked_for(tmp_path, tfds_dir):
    out = subprocess.run(main_cmd(tmp_path / "run", tfds_dir, "--config.optim.lr=-1", "--verbosity=1"),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback (most recent call last)" in out.stderr


def test_sweep_bad_input_is_one_line(tmp_path, tfds_dir):
    config = os.path.join(REPO, "configs", "sweep_lenet5_digits.py") + ":smoke"
    base = [sys.executable, "-m", "jaxclf.sweep", f"--config={config}", f"--workdir={tmp_path / 's'}"]
    assert "unknown config key 'lrr'" in one_line([*base, "--config.optim.lrr=0.01"], tmp_path / "s")
    assert "unknown config key 'optim.lrr'" in one_line([*base, "--sweep=optim.lrr=0.1,0.2"], tmp_path / "s")
    assert "optim.lr=-0.1 is negative" in one_line([*base, "--sweep=optim.lr=-0.1"], tmp_path / "s")


def test_predict_on_a_run_that_never_started_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    out = subprocess.run([sys.executable, "-m", "jaxclf.predict", f"--workdir={tmp_path / 'run'}", "x.png"],
                         capture_output=True, text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr[-3000:]
    assert "not a jaxclf run directory, or its run stopped before it was built" in lines[0]


def test_summary_with_an_input_the_model_cannot_take_is_one_line():
    out = subprocess.run([sys.executable, "-m", "jaxclf.summary", "--model=lenet5", "--input=28,28"],
                         capture_output=True, text=True, timeout=120)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr[-3000:]
    assert "model 'lenet5' cannot take one example of shape (28, 28)" in lines[0]


LEFT_RUNNING = """
import jax, jax.numpy as jnp
from jaxclf import cpu, models
model = models.create("lenet5", num_classes=10)
x = jnp.ones((512, 32, 32, 1))
params = model.init(jax.random.key(0), x[:1], train=False)
@jax.jit
@cpu.optimize  # oneDNN convolutions on one CPU device
def forward(params, x):
    for _ in range(8):
        x = x + 1e-3 * model.apply(params, x, train=False).mean()
    return x
forward(params, x).block_until_ready()
outputs = [forward(params, x) for _ in range(30)]  # still running when the script ends
print("exiting", flush=True)
"""


def test_a_script_that_exits_with_convolutions_still_running_ends():
    """Library use: the oneDNN module's exit hook waits for the dispatched work before the
    interpreter finalizes (without it this script hung, 2 of 2 tries)."""
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-c", LEFT_RUNNING], capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0 and "exiting" in out.stdout, out.stderr[-3000:]
    assert time.monotonic() - start < TIMEOUT
