"""The benchmark suite (``make bench``): every comparison in one run, one process tree.

    python -m benchmarks.run [--quick] [--sweep] [--out-dir benchmarks]

1. ``bench_train``: jaxclf's jitted train step vs PyTorch eager, per model (+ compile times,
   memory); target jax/torch >= 1.0.
2. ``bench_conv``: single convolution layers (forward, input and kernel gradients) vs
   PyTorch, and the kernel gradient inside a scan body; no targets (they explain 1.).
3. ``bench_loop``: the full training loop vs its bare jitted step; target loop/bare >= 0.95.
3b. ``bench_input``: images/s of the streaming input pipeline on ImageNet-like JPEGs (0, 1, 2
   worker processes) and the host cores one H200 would need; no target.
4. ``bench_metrics.py`` (jaxclf.metrics vs scikit-learn), run as a subprocess from a scratch
   copy so that its own ``results_metrics.json`` is left as committed.
5. ``bench_sweep.py``: takes ~15 minutes on its own, so by default its last committed
   ``results_sweep.json`` is folded in (marked as not re-run); ``--sweep`` re-runs it with
   100 steps per point and 200 loop steps.

Writes ``RESULTS.md`` (machine, medians, ratios, targets met or not) and ``results.json``
(one entry per comparison with both throughputs, the ratio, units, date and git commit) to
``--out-dir``. ``--quick`` is a smoke run: short repeats, no ResNet-50, no memory probes,
no metrics/sweep.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MiB = 2**20


# ----------------------------------------------------------------------------- provenance


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def git_commit() -> str:
    """HEAD's hash, with '+dirty' when tracked files differ from it (numbers then describe
    the working tree, not the commit)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "") if head else "unknown"
    except OSError:
        return "unknown"


def machine() -> dict:
    import jax

    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "jax_backend": jax.default_backend(), "jax_devices": len(jax.devices()),
        "versions": {m: _version(m) for m in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "scikit-learn")},
        "load_avg_start": list(os.getloadavg()),
    }


# ----------------------------------------------------------------------------- other benchmarks


def run_metrics(scratch: Path, log=print) -> dict | None:
    """bench_metrics.py from a copy in ``scratch`` (it writes its JSON next to itself)."""
    script = scratch / "bench_metrics.py"
    shutil.copy(HERE / "bench_metrics.py", script)
    log("[metrics] bench_metrics.py --repeats 3 ...")
    out = subprocess.run([sys.executable, str(script), "--repeats", "3"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        log(f"[metrics] failed: {out.stderr[-1000:]}")
        return None
    return json.loads((scratch / "results_metrics.json").read_text())


def run_sweep(scratch: Path, log=print) -> dict | None:
    log("[sweep] bench_sweep.py --steps 100 --loop_steps 200 ...")
    out_file = scratch / "results_sweep.json"
    cmd = [sys.executable, str(HERE / "bench_sweep.py"), "--steps", "100", "--loop_steps", "200", "--out", str(out_file)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode:
        log(f"[sweep] failed: {out.stderr[-1000:]}")
        return None
    return json.loads(out_file.read_text())


def committed_sweep() -> dict | None:
    path = HERE / "results_sweep.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    data["reused_from"] = f"benchmarks/results_sweep.json (not re-run; file date {time.strftime('%Y-%m-%d', time.gmtime(path.stat().st_mtime))})"
    return data


def metrics_entries(data: dict) -> list[dict]:
    """bench_metrics rows as comparisons: elements per second, jaxclf vs scikit-learn."""
    return [{"name": f"{r['metric']}, n={r['n']:.0e}", "kind": "metrics", "units": "elements/s", "baseline": "scikit-learn",
             "ours": r["n"] / r["jaxclf_s"], "theirs": r["n"] / r["sklearn_s"], "ratio": r["speedup"],
             "target": None, "met": None} for r in data["results"]]


def sweep_entries(data: dict) -> list[dict]:
    """bench_sweep's wall times as comparisons: runs per hour, each strategy vs its reference."""
    s, pts, steps = data["seconds"], data["sweep_points"], data["sweep_steps"]
    per_hour = lambda sec: 3600.0 / sec  # noqa: E731
    rows = [(f"sweep {pts}x{steps} steps: 2 parallel processes vs sequential", "parallel_2", "sequential"),
            (f"sweep {pts}x{steps} steps: one vmapped program vs sequential", "vmap", "sequential"),
            (f"loop {data['loop_steps']} steps: steps_per_call=50 vs 1", "loop_k50", "loop_k1")]
    note = data.get("reused_from")
    return [{"name": name, "kind": "sweep", "units": "runs/hour", "baseline": ref, "ours": per_hour(s[a]),
             "theirs": per_hour(s[ref]), "ratio": s[ref] / s[a], "target": None, "met": None,
             **({"note": note} if note else {})} for name, a, ref in rows]


# ----------------------------------------------------------------------------- outputs


def stamp(entries: list[dict], *, date: str, commit: str) -> list[dict]:
    return [{**e, "date": date, "commit": commit} for e in entries]


def _num(x, fmt="{:,.0f}") -> str:
    return "-" if x is None else fmt.format(x)


def _met(e: dict) -> str:
    return "-" if e.get("met") is None else ("met" if e["met"] else "**not met**")


def _mib(nbytes) -> str:
    return "-" if nbytes is None else f"{nbytes / MiB:,.0f}"


TRAIN_NOTES = (
    "- Parameter counts are asserted equal. jaxclf's step (`steps.make_steps`) also computes the batch's "
    "metric state and the global gradient norm; PyTorch's is `zero_grad`, `loss.backward()`, `SGD.step()`.",
    "- VGG-11: no CIFAR-size VGG is registered; `vgg11` with `hidden=()`, `pool_size=1`, `dropout_rate=0` "
    "(the head of `configs/vgg16_bn_cifar10.py`: 1x1x512 features -> 10).",
    "- LSTM: registry `lstm` (hidden 128, last state); PyTorch's fused `nn.LSTM` without biases reading "
    "`[x, 1]`, which is jaxclf's one bias per gate. GRU: `rnn_classifier` with `cell='gru_reset_after'` "
    "(PyTorch's convention) vs `nn.GRU`. Both read (40, 1) sequences (MNIST-1D's shape).",
    "- Sketch-RNN: the loop's step for task 'generative' (`make_steps` with the model's own loss, "
    "`jaxclf.models.sketch_rnn.loss_fn`); PyTorch implements the same equations "
    "(fused LSTMs as above, lengths from the end rows).",
)


def _threads(train: list[dict]) -> str:
    info = next((e["baseline_info"] for e in train if e.get("baseline_info")), None) or {}
    if "threads" not in info:
        return ""
    return (f"PyTorch: {info['threads']} intra-op threads, OMP_WAIT_POLICY={info.get('OMP_WAIT_POLICY')}; "
            "XLA: its CPU thread pool (one thread per core); jaxclf's convolutions: oneDNN's OpenMP threads "
            "(one per core, passive wait; `jaxclf.cpu.onednn`).")


def _conv_section(layers: list[dict], scans: list[dict]) -> list[str]:
    """Per-layer times (ms per call) explaining the CNN rows, and the scan-body check."""
    if not layers and not scans:
        return []
    lines = ["## Convolution layers: jaxclf vs PyTorch eager", "",
             "One 3x3 convolution at batch 128, each part timed alone: a convolution through `jaxclf.cpu.optimize` "
             "(jit) as it runs on one CPU device (oneDNN, `jaxclf.cpu.onednn`) and on XLA's convolutions "
             "(`JAXCLF_CONV=xla`, as on several devices; channels-last gradients, `jaxclf.cpu.conv`) vs `conv2d` / "
             "`aten.convolution_backward` with one output; median ms per call. These explain the CNN train-step rows "
             "(no target of their own).", "",
             "| layer | part | jaxclf (oneDNN) ms | jaxclf (XLA) ms | PyTorch ms | jaxclf (oneDNN)/PyTorch (speed) |",
             "|---|---|---:|---:|---:|---:|"]
    for e in layers:
        ms = lambda per_s: "-" if not per_s else f"{1e3 / per_s:.2f}"  # noqa: E731
        lines.append(f"| {e['name'].split(': ')[0]} | {e['part']} | {ms(e['ours'])} | {ms(e.get('xla'))} | "
                     f"{ms(e['theirs'])} | {_num(e['ratio'], '{:.2f}')} |")
    for e in scans:
        lines += ["", f"Kernel gradient inside a `lax.scan` body ({e['name'].split(': ')[0]}, {e['scan_length']} "
                  f"iterations): JAX's own gradient {e['jax_grad_in_scan_ms']:,.1f} ms, jaxclf's "
                  f"{e['jaxclf_grad_in_scan_ms']:.1f} ms ({e['ratio']:.0f}x faster), the same at top level "
                  f"{e['jaxclf_grad_top_level_ms']:.1f} ms. XLA:CPU runs JAX's gradient convolutions in a loop body "
                  "as naive loops (jax#12868); jaxclf's XLA path writes them in the layout it runs fast everywhere "
                  "(oneDNN's kernels have no such problem)."]
    return lines + [""]


# Measured by hand (not by this suite: it needs a fresh clone and a fresh .venv each), on this 2-core
# machine while others used it; issue #20, TensorFlow made the `prepare` extra.
INSTALL_NOTES = (
    "Fresh `.venv` from `make install` (`pip install -e .`, no extras), `du -sb`: **2.79 GB before "
    "(TensorFlow 1.35 GB of it), 1.36 GB after** (-51%); `python -c 'import tensorflow'` now fails there.",
    "",
    "`git clone` + `time make demo` (install from the local package mirror + LeNet-5 digits, 1,000 steps + report): "
    "before 1 min 17 s wall (58.5 s user + 13.1 s sys); after 2 min 27 s wall (55.5 s user + 7.6 s sys) "
    "with the load average at 9 on 2 cores: the wall times measure the neighbours, the CPU time fell 12%. "
    "Test accuracy 98.67% both times (the bundled datasets are bitwise the same arrays, in the same order).",
    "",
    "A run's data start (import `jaxclf.data` and the writers, load the prepared digits, write one "
    "TensorBoard scalar), 3 alternating runs: 5.2, 5.2, 4.9 s CPU before (TensorFlow imported) vs "
    "2.1, 2.0, 1.9 s after (not imported).",
)


def _input_section(rows: list[dict]) -> list[str]:
    """The streaming pipeline's images/s per worker count, and the cores one H200 would need."""
    if not rows:
        return []
    first = rows[0]
    lines = ["## Streaming input pipeline (bench_input.py)", "",
             f"{first['images']} JPEGs of 500x375 made locally (mean {first['jpeg_bytes_mean'] / 1e3:.0f} KB), read from "
             "TFDS ArrayRecord files with `tfds.data_source` and `jaxclf.data.stream` as a training run reads them: "
             f"batches of {first['batch']}, PIL decode, random-resized crop to 224 + flip, uint8; images/s after the "
             "first batch (worker start-up apart).", "",
             "| pipeline | images/s | first batch s | load (1 min) |", "|---|---:|---:|---:|"]
    lines += [f"| {e['name']} | {_num(e['ours'])} | {e['first_batch_s']:.1f} | {e['load_avg_1min']:.1f} |" for e in rows]
    need = next((e["cores_needed"] for e in rows if e.get("cores_needed")), None)
    if need:
        lines += ["", f"One core decodes and crops {need['img_s_per_core']:,.0f} img/s (images per second of CPU time in "
                  f"the in-process run), so one H200 training ResNet-50 at {need['target_img_s']:,.0f} img/s needs about "
                  f"{need['cores']:,.0f} such cores for its input pipeline (the rate divided by the rate per core; "
                  "decoding is per image and independent, so it scales with cores until memory bandwidth binds)."]
    return lines + [""]


def markdown(report: dict) -> str:
    """RESULTS.md from the report dict (``machine``, ``entries``, ``command``, ...)."""
    m, entries = report["machine"], report["entries"]
    by_kind = lambda k: [e for e in entries if e.get("kind") == k]  # noqa: E731
    v = m["versions"]
    lines = [
        "# jaxclf benchmarks", "",
        f"Written by `{report['command']}` on {report['date']} at commit `{report['commit']}` "
        f"({report['duration_s'] / 60:.1f} min). Regenerate with `make bench`; do not edit by hand.", "",
        "## Machine", "",
        f"- CPU: {m['cpu']}, {m['cores']} cores; {m['platform']}; Python {m['python']}",
        f"- jax {v.get('jax')}, jaxlib {v.get('jaxlib')}, flax {v.get('flax')}, optax {v.get('optax')}, "
        f"torch {v.get('torch') or '(not installed)'}, scikit-learn {v.get('scikit-learn')}, numpy {v.get('numpy')}",
        f"- JAX backend: {m['jax_backend']} ({m['jax_devices']} device); load average (1, 5, 15 min) at start "
        f"{', '.join(f'{x:.1f}' for x in m['load_avg_start'])}, at end "
        f"{', '.join(f'{x:.1f}' for x in m.get('load_avg_end', m['load_avg_start']))}",
        "", "The machine may be shared: absolute numbers are noisy, ratios are measured side by side "
        "(alternating blocks in one process); each ratio is the median of the per-repeat ratios, which cancels "
        "the machine's drift between repeats.", "",
    ]
    train = by_kind("train_step")
    if train:
        lines += ["## Train step: jaxclf (jit) vs PyTorch eager", "",
                  "Forward + backward + SGD momentum 0.9, batch 128, median examples/s over repeats after warm-up; "
                  "target jaxclf/PyTorch >= 1.0. " + _threads(train), "",
                  "| model | params | jaxclf ex/s | PyTorch ex/s | jaxclf/PyTorch | target >= 1.0 | load (1 min) before, after |",
                  "|---|---:|---:|---:|---:|---|---|"]
        for e in train:
            load = e.get("load_avg_1min")
            lines.append(f"| {e['name']} | {e['params']:,} | {_num(e['ours'])} | {_num(e['theirs'])} | "
                         f"{_num(e['ratio'], '{:.2f}')} | {_met(e)} | {'-' if not load else f'{load[0]:.1f}, {load[1]:.1f}'} |")
        lines += ["", *TRAIN_NOTES, ""]
    compiled = [e for e in entries if e.get("kind") in ("train_step", "compile_only")]
    if compiled:
        lines += ["## Compile time and memory", "",
                  "JAX: `jit(step).lower(...)` and `.compile()` wall times; XLA peak = the compiled step's "
                  "`memory_analysis()`: arguments + outputs - donated aliases + temporaries. PyTorch: growth of "
                  "the process's peak RSS (VmHWM, reset after the first step) during 3 more steps over its RSS "
                  "before building the model, in a fresh process (parameters, gradients, momentum, activations, "
                  "allocator slack).", "",
                  "| model | batch | lower s | compile s | XLA peak MiB (of which temporaries) | PyTorch peak RSS growth MiB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for e in compiled:
            j, mem = e["jax"], e["jax"].get("memory") or {}
            rss = (e.get("torch_rss") or {}).get("peak_growth_bytes")
            lines.append(f"| {e['name']} | {e['batch']} | {j['lower_s']:.1f} | {j['compile_s']:.1f} | "
                         f"{_mib(mem.get('peak_bytes'))} ({_mib(mem.get('temp'))}) | {_mib(rss)} |")
        lines.append("")
    lines += _conv_section(by_kind("conv_layer"), by_kind("conv_scan"))
    loops = by_kind("loop")
    if loops:
        lines += ["## Full training loop vs its bare jitted step", "",
                  "Loop time: from the first call of the compiled train function to the return of "
                  "`train_and_evaluate`, minus every JAX compilation span and every evaluation in that window "
                  "(union, so overlaps count once); logging, checkpoints and host-device traffic stay in. Bare: "
                  "the same step function the loop builds, jitted alone, one fixed batch, the same number of steps. "
                  f"Loop and bare alternate {len(loops[0]['samples']['ours'])} times (medians); one untimed loop run "
                  "up to the first evaluation "
                  "precedes them, as the bare step's compiling call does (one-time costs: first checkpoint save, "
                  "first TensorBoard writer). Target loop/bare >= 0.95.", "",
                  "| config | steps | K, log, eval, ckpt every | loop ex/s | bare ex/s | loop/bare | target >= 0.95 | excluded compile + eval s |",
                  "|---|---:|---|---:|---:|---:|---|---|"]
        for e in loops:
            iv = e["intervals"]
            excluded = ", ".join(f"{t['compile_s']:.1f} + {t['eval_s']:.1f}" for t in e["timings"])
            lines.append(f"| {e['name']} | {e['num_steps']} | {iv['steps_per_call']}, {iv['log_every']}, "
                         f"{iv['eval_every']}, {iv['checkpoint_every']} | {_num(e['ours'])} | {_num(e['theirs'])} | "
                         f"{_num(e['ratio'], '{:.2f}')} | {_met(e)} | {excluded} |")
        lines.append("")
    lines += _input_section(by_kind("input"))
    metrics = by_kind("metrics")
    lines += ["## Metrics: jaxclf.metrics (jit) vs scikit-learn", ""]
    if metrics:
        lines += ["| metric | jaxclf elements/s | scikit-learn elements/s | speed-up |", "|---|---:|---:|---:|"]
        lines += [f"| {e['name']} | {_num(e['ours'])} | {_num(e['theirs'])} | {e['ratio']:.1f}x |" for e in metrics]
    else:
        lines.append("Not run (`--quick`, or it failed; see the log).")
    lines.append("")
    sweeps = by_kind("sweep")
    lines += ["## Sweeps and steps per call (bench_sweep.py)", ""]
    if sweeps:
        note = sweeps[0].get("note")
        lines += [f"From {note}." if note else "Re-run in this suite (`--sweep`).", "",
                  "| comparison | runs/hour | reference runs/hour | speed-up |", "|---|---:|---:|---:|"]
        lines += [f"| {e['name']} | {e['ours']:.1f} | {e['theirs']:.1f} | {e['ratio']:.2f}x |" for e in sweeps]
    else:
        lines.append("Not included (`--quick`, or no results file).")
    lines.append("")
    lines += ["## Install size and make demo", "", *INSTALL_NOTES, ""]
    targets = [e for e in entries if e.get("met") is not None]
    met = sum(e["met"] for e in targets)
    lines += ["## Targets", "", f"{met} of {len(targets)} targets met.", ""]
    lines += [f"- {'met' if e['met'] else 'NOT met'}: {e['name']} ({e['ratio']:.2f} vs {e['target']})" for e in targets]
    lines.append("")
    return "\n".join(lines)


def write_outputs(report: dict, out_dir: Path) -> tuple[Path, Path]:
    """``results.json`` (entries stamped with date and commit) and ``RESULTS.md``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {**report, "entries": stamp(report["entries"], date=report["date"], commit=report["commit"])}
    json_path, md_path = out_dir / "results.json", out_dir / "RESULTS.md"
    json_path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path


# ----------------------------------------------------------------------------- entry


def suite(*, quick: bool, sweep: bool, baseline: Callable | None = "torch", models: list[str] | None = None,
          loop: bool = True, conv: bool = True, input_pipeline: bool = True, external: bool = True, log=print) -> dict:
    """Runs the comparisons and returns the report dict (not yet written)."""
    from benchmarks import bench_conv, bench_input, bench_loop, bench_train

    t0 = time.time()
    report = {"command": "python -m benchmarks.run" + (" --quick" if quick else "") + (" --sweep" if sweep else ""),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "commit": git_commit(), "machine": machine()}
    baseline = bench_train.torch_runner if baseline == "torch" else baseline
    entries = bench_train.run(quick=quick, models=models, baseline=baseline, memory=not quick, log=log)
    if conv:
        entries += bench_conv.run(quick=quick, baseline=baseline is bench_train.torch_runner, log=log)
    if loop:
        entries += bench_loop.run(quick=quick, log=log)
    if input_pipeline:
        entries += bench_input.run(quick=quick, log=log)
    if external and not quick:
        with tempfile.TemporaryDirectory(prefix="jaxclf-bench-") as scratch:
            metrics = run_metrics(Path(scratch), log)
            sweep_data = run_sweep(Path(scratch), log) if sweep else committed_sweep()
        entries += metrics_entries(metrics) if metrics else []
        entries += sweep_entries(sweep_data) if sweep_data else []
    report["machine"]["load_avg_end"] = list(os.getloadavg())
    report["duration_s"] = time.time() - t0
    report["entries"] = entries
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: short repeats, no ResNet-50/metrics/sweep")
    parser.add_argument("--sweep", action="store_true", help="re-run bench_sweep.py (shortened) instead of reusing its JSON")
    parser.add_argument("--out-dir", default=str(HERE))
    args = parser.parse_args()
    report = suite(quick=args.quick, sweep=args.sweep)
    json_path, md_path = write_outputs(report, Path(args.out_dir))
    print(md_path.read_text())
    print(f"wrote {md_path} and {json_path}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
