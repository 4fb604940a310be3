"""TensorFlow is not needed to train, evaluate, report, log or predict, nor to import the models
and metrics (TFDS neither). Each check runs in a fresh interpreter: this session's other tests
import TensorFlow (TFDS mock data, TensorFlow's event reader as the reference)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TENSORFLOW = ("tensorflow", "tensorflow_datasets")


def run_python(code: str, *args: str, timeout: int = 300) -> str:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_models_and_metrics_import_neither_tensorflow_nor_tfds():
    out = run_python(
        "import sys, jaxclf.models, jaxclf.metrics, jaxclf.ops.render\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TENSORFLOW!r}))"
    )
    assert out.strip() == "[]"


RUN = """
import runpy, sys

workdir, data_dir, image = sys.argv[1:]
sys.argv = ["jaxclf.main", "--config=configs/lenet5_digits.py:smoke", f"--workdir={workdir}",
            f"--config.dataset.data_dir={data_dir}", "--config.train.progress=False"]
try:
    runpy.run_module("jaxclf.main", run_name="__main__", alter_sys=True)
except SystemExit as e:
    assert not e.code, f"jaxclf.main exited with {e.code}"
from jaxclf import predict

assert predict.main(["--workdir", workdir, image]) == 0
print("TENSORFLOW", "tensorflow" in sys.modules)
"""


@pytest.mark.slow
def test_training_run_never_imports_tensorflow(tmp_path):
    """A whole run (preparing the bundled digits, training, evaluation, TensorBoard events, the
    report) and a prediction, in an interpreter where TensorFlow is installed: never imported."""
    image = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8), np.uint8)).save(image)
    workdir = tmp_path / "run"
    out = run_python(RUN, str(workdir), str(tmp_path / "tfds"), str(image))
    assert "TENSORFLOW False" in out, out
    assert list((tmp_path / "tfds" / "digits").glob("*/digits-train.array_record*"))
    assert list((workdir / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    assert (workdir / "report" / "report.md").exists()
    assert "digit.png" in out  # the prediction line
