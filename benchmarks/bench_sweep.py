"""Sweep strategies and steps-per-call on this machine: where does the wall time go?

    nice python benchmarks/bench_sweep.py [--steps=300] [--points=4]

1. A 4-point sweep (lr x seed) of LeNet-5 on digits, end to end through the command line
   (``python -m jaxclf.sweep``, so process start-up, data loading and compilation count):
   one point after another, 2 points at a time (``--parallel=2``), all in one vmapped
   program (``--vmap``). Every point uses ``train.steps_per_call=50``.
2. The loop alone (in this process, 1 device): ``train.steps_per_call`` K=1 vs K=50.

Prints a markdown table with ratios and writes ``benchmarks/results_sweep.json``. The
machine may be shared: the numbers are wall times of single runs, so they are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE.parent / "configs" / "sweep_lenet5_digits.py"


def sweep_seconds(root: Path, data_dir: str, steps: int, *extra: str) -> float:
    """Wall time of one ``python -m jaxclf.sweep`` command over the 2x2 lr x seed sweep."""
    argv = [
        sys.executable, "-m", "jaxclf.sweep", f"--config={CONFIG}:smoke", f"--workdir={root}",
        # the :smoke sweep: optim.lr in (0.001, 0.003) x seed in (0, 1)
        f"--config.dataset.data_dir={data_dir}", f"--config.train.num_steps={steps}",
        "--config.train.steps_per_call=50", "--config.train.log_every=50",
        f"--config.train.eval_every={steps}", f"--config.train.checkpoint_every={steps}",
        "--config.train.progress=False", "--config.eval.report=False", *extra,
    ]
    start = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    if out.returncode:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-3000:])
    return time.perf_counter() - start


def loop_seconds(workdir: Path, data_dir: str, steps: int, k: int) -> float:
    """Wall time of ``train_and_evaluate`` (compile included) with K steps per call."""
    import jax

    from jaxclf import config as config_lib
    from jaxclf.run import train_and_evaluate
    c = config_lib.load(str(CONFIG))
    c.dataset.data_dir = data_dir
    t = c.train
    t.num_steps, t.steps_per_call, t.log_every, t.eval_every, t.checkpoint_every = steps, k, 100, steps, steps
    t.progress, c.eval.report = False, False
    start = time.perf_counter()
    train_and_evaluate(c, workdir, devices=jax.devices()[:1])
    return time.perf_counter() - start


def table(rows: list[tuple[str, float, str]]) -> str:
    lines = ["| what | wall time (s) | ratio |", "|---|---|---|"]
    lines += [f"| {name} | {sec:.1f} | {ratio} |" for name, sec, ratio in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per sweep point")
    parser.add_argument("--loop_steps", type=int, default=500, help="training steps of the K=1 vs K=50 runs")
    parser.add_argument("--out", default=str(HERE / "results_sweep.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data_dir = str(tmp / "tfds")
        loop_seconds(tmp / "warmup", data_dir, 2, 1)  # builds the dataset once, outside the timings
        seq = sweep_seconds(tmp / "seq", data_dir, args.steps)
        par = sweep_seconds(tmp / "par", data_dir, args.steps, "--parallel=2")
        vm = sweep_seconds(tmp / "vmap", data_dir, args.steps, "--vmap")
        k1 = loop_seconds(tmp / "k1", data_dir, args.loop_steps, 1)
        k50 = loop_seconds(tmp / "k50", data_dir, args.loop_steps, 50)
    rows = [
        (f"sweep, 4 points x {args.steps} steps: sequential processes", seq, "1.00x"),
        ("sweep: 2 parallel processes", par, f"{seq / par:.2f}x speed-up"),
        ("sweep: one vmapped program", vm, f"{seq / vm:.2f}x speed-up"),
        (f"loop, {args.loop_steps} steps, steps_per_call=1", k1, "1.00x"),
        ("loop: steps_per_call=50", k50, f"{k1 / k50:.2f}x speed-up"),
    ]
    print(table(rows))
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg()},
        "sweep_points": 4, "sweep_steps": args.steps, "loop_steps": args.loop_steps,
        "seconds": {"sequential": seq, "parallel_2": par, "vmap": vm, "loop_k1": k1, "loop_k50": k50},
        "speedup": {"parallel_2": seq / par, "vmap": seq / vm, "steps_per_call_50": k1 / k50},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
