"""The benchmark suite's code path in a tiny mode, without PyTorch: the JAX side is measured
for real (LeNet-5, batch 8, a few steps) against a pluggable fake baseline, and the report
files are written and read back. ``make bench`` runs the real thing."""

import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `benchmarks` is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_conv, bench_loop, bench_train, run  # noqa: E402

LENET = next(c for c in bench_train.CASES if c.model == "lenet5")
LENET_PARAMS = 44_426  # 28x28x1 input, 'valid' convs: 16 * 4 * 4 features into fc 120


def fake_baseline(num_params: int, seconds_per_step: float):
    """A baseline whose step takes a known time, standing in for the PyTorch twin."""

    def make(case, batch):
        return bench_train.Runner(lambda: time.sleep(seconds_per_step), lambda: None, num_params, {"fake": True})

    return make


@pytest.fixture(scope="module")
def lenet_entry():
    return bench_train.compare_case(LENET, fake_baseline(LENET_PARAMS, 0.002), batch=8, repeats=3, block_s=0.02)


def test_compare_case_measures_jax_and_baseline(lenet_entry):
    e = lenet_entry
    assert e["params"] == LENET_PARAMS and e["kind"] == "train_step" and e["units"] == "examples/s"
    assert len(e["samples"]["ours"]) == len(e["samples"]["theirs"]) == 3
    assert e["ours"] == statistics.median(e["samples"]["ours"]) > 0
    assert e["theirs"] == statistics.median(e["samples"]["theirs"])
    assert 8 / 0.002 / 3 < e["theirs"] < 8 / 0.002 * 1.01  # the fake baseline's known speed
    pairs = [a / b for a, b in zip(e["samples"]["ours"], e["samples"]["theirs"])]
    assert e["ratio"] == pytest.approx(statistics.median(pairs))
    assert e["ratio_of_medians"] == pytest.approx(e["ours"] / e["theirs"])
    assert e["met"] == (e["ratio"] >= 1.0)
    assert e["jax"]["compile_s"] > 0 and e["jax"]["memory"]["peak_bytes"] > 0


def test_parameter_counts_must_match():
    with pytest.raises(AssertionError, match="parameters"):
        bench_train.compare_case(LENET, fake_baseline(LENET_PARAMS + 1, 0.0), batch=8, repeats=1, block_s=0.01)


def test_comparison_arithmetic():
    # per-repeat ratios 2, 0.75, 2: the ratio is their median; the medians' ratio is kept beside it
    e = bench_train.comparison("m", [100.0, 300.0, 200.0], [50.0, 400.0, 100.0], target=0.95)
    assert (e["ours"], e["theirs"], e["ratio"], e["ratio_of_medians"], e["met"]) == (200.0, 100.0, 2.0, 2.0, True)
    # drift: both sides twice as fast in the second repeat; the paired ratio sees 0.9 each time
    e = bench_train.comparison("m", [90.0, 180.0], [100.0, 200.0], target=0.95)
    assert e["ratio"] == pytest.approx(0.9) and e["ratio_of_medians"] == pytest.approx(0.9) and not e["met"]
    e = bench_train.comparison("m", [90.0, 180.0, 400.0], [100.0, 200.0, 100.0], target=0.95)
    assert e["ratio"] == pytest.approx(0.9) and e["ratio_of_medians"] == pytest.approx(1.8)
    assert bench_train.comparison("m", [1.0], None, target=1.0)["ratio"] is None
    with pytest.raises(ValueError, match="pair up"):
        bench_train.comparison("m", [1.0, 2.0], [1.0], target=1.0)


def test_sketch_batch_has_end_rows():
    case = next(c for c in bench_train.CASES if c.kind == "sketch")
    x = bench_train.example_batch(case, 4)["inputs"]
    from jaxclf.data.strokes import stroke5_length

    lengths = stroke5_length(x)
    assert ((lengths >= case.input_shape[0] // 2) & (lengths < case.input_shape[0])).all()
    assert (x[..., 2:].sum(-1) == 1).all()  # every row is one pen state or an end row


def test_covered_counts_overlaps_once():
    assert bench_loop.covered([(1, 3), (2, 4), (10, 12)], 0, 11) == pytest.approx(4.0)
    assert bench_loop.covered([], 0, 5) == 0.0


def test_reports_are_written(lenet_entry, tmp_path):
    loop_entry = bench_train.comparison(
        "LeNet-5 digits", [900.0], [1000.0], target=0.95, baseline="bare_jit_step", kind="loop", num_steps=10,
        intervals={"steps_per_call": 1, "log_every": 5, "eval_every": 10, "checkpoint_every": 10},
        timings=[{"compile_s": 1.0, "eval_s": 0.5}],
    )
    metrics = run.metrics_entries({"results": [{"metric": "roc_auc", "n": 10**6, "jaxclf_s": 0.1, "sklearn_s": 0.4, "speedup": 4.0}]})
    report = {"command": "test", "date": "2026-01-01T00:00:00Z", "commit": "abc", "duration_s": 1.0,
              "machine": {"cpu": "cpu", "cores": 2, "platform": "p", "python": "3.11", "jax_backend": "cpu",
                          "jax_devices": 1, "versions": {"jax": "x", "torch": None}, "load_avg_start": [1.0, 1.0, 1.0]},
              "entries": [lenet_entry, loop_entry, *metrics]}
    json_path, md_path = run.write_outputs(report, tmp_path)
    data = json.loads(json_path.read_text())
    assert [e["name"] for e in data["entries"]] == [LENET.name, "LeNet-5 digits", "roc_auc, n=1e+06"]
    for e in data["entries"]:
        assert {"name", "ours", "theirs", "ratio", "units", "date", "commit"} <= set(e)
        assert e["date"] == "2026-01-01T00:00:00Z" and e["commit"] == "abc"
    assert data["entries"][1]["ratio"] == pytest.approx(0.9) and data["entries"][1]["met"] is False
    assert data["entries"][2]["ours"] == pytest.approx(1e7) and data["entries"][2]["ratio"] == 4.0
    md = md_path.read_text()
    assert f"| {LENET.name} | 44,426 |" in md
    assert "| LeNet-5 digits | 10 | 1, 5, 10, 10 | 900 | 1,000 | 0.90 | **not met** | 1.0 + 0.5 |" in md
    assert "torch (not installed)" in md and "## Targets" in md


def test_conv_parts_time_onednn_and_xla():
    """The two jaxclf columns time different programs (the setting is read while lowering)."""
    layer = bench_conv.Layer("tiny, 6x6, 4->8", 6, 4, 8)
    for setting, on_onednn in (("auto", True), ("xla", False)):
        for part, (compiled, _) in bench_conv.compiled_parts(layer, 2, setting).items():
            assert ("jaxclf_onednn" in compiled.as_text()) == on_onednn, (setting, part)


def test_conv_layer_entries_and_their_section():
    """bench_conv's JAX side on a tiny layer (no PyTorch): three parts, the scan-body entry,
    and the markdown they produce."""
    layer = bench_conv.Layer("tiny, 6x6, 4->8, stride 2", 6, 4, 8, 2)
    entries = bench_conv.layer_entries(layer, baseline=False, repeats=1, block_s=0.001, batch=2)
    assert [e["part"] for e in entries] == list(bench_conv.PARTS)
    assert all(e["ours"] > 0 and e["xla"] > 0 and e["theirs"] is None and e["met"] is None for e in entries)
    scan = bench_conv.scan_entry(layer, length=2, repeats=1, batch=2)
    assert scan["jax_grad_in_scan_ms"] > 0 and scan["jaxclf_grad_in_scan_ms"] > 0
    assert scan["ratio"] == pytest.approx(scan["jax_grad_in_scan_ms"] / scan["jaxclf_grad_in_scan_ms"])
    md = "\n".join(run._conv_section(entries, [scan]))
    ms = [f"{1e3 / entries[2][k]:.2f}" for k in ("ours", "xla")]
    assert f"| tiny, 6x6, 4->8, stride 2 | kernel gradient | {ms[0]} | {ms[1]} | - | - |" in md
    assert "inside a `lax.scan` body (tiny, 6x6, 4->8, stride 2, 2 iterations)" in md


def test_input_section_reports_rates_and_cores():
    """bench_input's entries in RESULTS.md: one row per worker count, and cores = target / per-core rate."""
    rows = [{"name": f"stream, {w} workers", "kind": "input", "ours": 200.0 + 100 * w, "first_batch_s": 0.5 + w,
             "load_avg_1min": 2.0, "images": 256, "batch": 64, "jpeg_bytes_mean": 110e3} for w in range(3)]
    rows[0]["cores_needed"] = {"target_img_s": 6800.0, "img_s_per_core": 200.0, "cores": 34.0}
    md = "\n".join(run._input_section(rows))
    assert "| stream, 2 workers | 400 | 2.5 | 2.0 |" in md
    assert "One core decodes and crops 200 img/s (images per second of CPU time" in md and "needs about 34 such cores" in md
    assert run._input_section([]) == []


def test_gpu_benchmark_dry_run_writes_its_report(tmp_path):
    """``benchmarks.gpu --quick`` (the dry run ``make bench-gpu`` offers off a GPU) measures the
    jaxclf side for real, PyTorch eager on the CPU if installed (else marked unavailable), and
    writes both report files, which say they hold no GPU figures."""
    from benchmarks import gpu

    with pytest.raises(ValueError, match="unknown case.*valid: resnet50"):
        gpu.run(quick=True, cases=["resnet51"], loop=False, out=tmp_path)
    gpu.main(["--quick", "--cases", "lstm", "--no-loop", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "results_gpu.json").read_text())
    assert results["quick"] is True and results["environment"]["versions"]["jax"]
    assert results["matmul"]["n"] == 256 and results["matmul"]["tflops"] > 0
    (entry,) = results["cases"]
    assert entry["key"] == "lstm" and entry["batch"] == 2 and entry["flops_per_step"] > 0
    ours = entry["sides"]["jaxclf"]
    assert ours["examples_per_s"] > 0 and len(ours["samples"]) >= 2
    assert ours["info"]["compile_s"] > 0 and ours["info"]["memory"]["peak_bytes"] > 0
    assert ours["tflops"] * 1e12 == pytest.approx(entry["flops_per_step"] * ours["examples_per_s"] / entry["batch"])
    assert ours["fraction_of_matmul_peak"] == pytest.approx(ours["tflops"] / results["matmul"]["tflops"])
    if importlib.util.find_spec("torch"):  # the bench extra; the test extras do not install torch
        assert "torch.compile is measured on CUDA only" in entry["unavailable"]["torch_compile"]
    else:
        assert entry["unavailable"]["torch_compile"].startswith("torch is not installed")
        assert "torch_eager" not in entry["sides"]
    if "torch_eager" in entry["sides"]:  # paired ratio of the same blocks
        eager = entry["sides"]["torch_eager"]["samples"]
        assert entry["ratios"]["torch_eager"]["ratio"] == statistics.median(a / b for a, b in zip(ours["samples"], eager))
    else:
        assert "torch" in entry["unavailable"]["torch_eager"]
    assert results["loop"] == [{"kind": "loop", "skipped": "not requested (--no-loop)"}]
    report = (tmp_path / "RESULTS_gpu.md").read_text()
    assert "not GPU figures" in report and "| LSTM 128, 5 steps | 2 |" in report
