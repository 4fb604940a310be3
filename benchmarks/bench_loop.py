"""jaxclf's full training loop vs its bare jitted train step: the cost of everything around
the step (data pipeline, metric accumulation, logging, checkpoints, dispatch).

    python -m benchmarks.bench_loop [--quick]

Loop: ``jaxclf.run.train_and_evaluate`` on a config (its own log/eval/checkpoint
intervals and steps_per_call; one device; progress bar and report off). Its training time is
the wall time from the first call of the compiled train function to the return of
``train_and_evaluate``, minus the union of (a) every JAX compilation span inside that window
(tracing, lowering, XLA compile; from ``jax.monitoring`` time-span events) and (b) every
evaluation call (timed from the moment the pending train steps have finished to the moment
its metric states are ready). So dataset loading, model init and first compilation, and
evaluation are excluded; logging, checkpoints (including the final save and the wait for it)
and host-device traffic are included.

Bare: the very train step the loop builds (captured from ``steps.make_steps``), jitted with
the state donated, on one fixed batch of the same dataset, the same number of steps
dispatched back to back, timed after a compiling warm-up call, ending at
``block_until_ready``. Loop and bare alternate ``repeats`` times; the ratio is the median of
the per-repeat loop/bare ratios.

Warm-up: before the timed runs, one untimed loop run of the same config up to its first
evaluation (``stop_at``), in its own workdir. Like the bare step's compiling call, it keeps
one-time process costs out of the loop's time: the first checkpoint save (Orbax's thread
pools and imports), the first TensorBoard writer, the first eager metric computations.
Measured without it, the first of several loop runs in a process was ~0.5 s slower than the
rest (LeNet-5, K = 1).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from benchmarks.bench_train import comparison
from jaxclf.run import train_and_evaluate

ROOT = Path(__file__).resolve().parent.parent
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@dataclasses.dataclass(frozen=True)
class LoopCase:
    name: str
    config: str  # path relative to the repository, optionally ':variant'
    num_steps: int
    quick_steps: int
    overrides: tuple = ()  # (dotted key, value) pairs


# Runs of a few seconds vary by 10-30% on a shared machine. LeNet-5 at K = 1 over 15 pairs:
# per-pair ratios from 0.80 to 1.12, median 0.979; in bootstrap resamples of those pairs, 9
# repeats put the median under 0.95 6% of the time, 5 repeats 12%.
REPEATS = 9

# LeNet-5 runs its config's whole schedule (1,000 steps: checkpoints at 500 and 1,000, so the
# fixed cost of the final save and its wait counts as often as in the real run); the GRU half
# of its 6,000. Each covers several logs, evaluations and the final checkpoint (save + wait).
CASES = (
    LoopCase("LeNet-5 digits (lenet5_digits.py, steps_per_call=1)", "configs/lenet5_digits.py", 1000, 50),
    LoopCase("LeNet-5 digits, steps_per_call=50", "configs/lenet5_digits.py", 1000, 100, (("train.steps_per_call", 50),)),
    LoopCase("bi-GRU 6 units MNIST-1D (mnist1d_gru.py, steps_per_call=250)", "configs/mnist1d_gru.py", 3000, 500),
)


def covered(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Seconds of [lo, hi] covered by the union of ``intervals`` (overlaps counted once)."""
    total, reach = 0.0, lo
    for a, b in sorted(intervals):
        a, b = max(a, reach), min(b, hi)
        if b > a:
            total += b - a
            reach = b
    return total


def scaled_config(case: LoopCase, num_steps: int):
    """The case's config run for ``num_steps`` steps with its own log/eval/checkpoint
    intervals and steps_per_call (shortening them would change what is measured: every
    distinct chunk length is another compilation); progress bar and report off."""
    from jaxclf import config as config_lib

    path, _, arg = case.config.partition(":")
    c = config_lib.load(str(ROOT / path), arg or None)
    for key, value in case.overrides:
        section, name = key.split(".")
        c[section][name] = value
    c.train.num_steps, c.train.progress, c.eval.report = num_steps, False, False
    return c


class _Recorder:
    """Patches the loop for one run: records compile spans, eval windows, the first train
    call, and captures the program and the train step the loop builds."""

    def __init__(self):
        self.compiles, self.evals, self.first_train, self.program, self.step = [], [], None, None, None

    def on_span(self, event, start_time, end_time, **_):
        if event in COMPILE_EVENTS:
            self.compiles.append((start_time, end_time))

    @contextlib.contextmanager
    def patched(self):
        from jaxclf.train import compiled, loop, steps as steps_lib

        build, make_steps, evaluate = loop.compile_run, steps_lib.make_steps, compiled.CompiledRun.evaluate

        def steps(*args, **kwargs):
            out = make_steps(*args, **kwargs)
            self.step = self.step or out[0]  # the first pair built is the training one
            return out

        def wrapped_build(*args, **kwargs):
            program = build(*args, **kwargs)
            train = program.train

            def timed_train(*a, **k):
                self.first_train = self.first_train or time.time()
                return train(*a, **k)

            self.program = dataclasses.replace(program, train=timed_train)
            return self.program

        def timed_evaluate(program, state, *args, **kwargs):
            jax.block_until_ready(state)  # pending train steps are not eval time
            t0 = time.time()
            out = jax.block_until_ready(evaluate(program, state, *args, **kwargs))
            self.evals.append((t0, time.time()))
            return out

        jax.monitoring.register_event_time_span_listener(self.on_span)
        loop.compile_run, steps_lib.make_steps, compiled.CompiledRun.evaluate = wrapped_build, steps, timed_evaluate
        try:
            yield self
        finally:
            loop.compile_run, steps_lib.make_steps, compiled.CompiledRun.evaluate = build, make_steps, evaluate
            jax.monitoring.unregister_event_time_span_listener(self.on_span)


def warm_up(config, workdir: Path) -> None:
    """An untimed run of ``config`` up to its first evaluation (see the module docstring)."""
    train_and_evaluate(config, workdir, devices=jax.devices()[:1], stop_at=config.train.eval_every)


def loop_run(config, workdir: Path) -> tuple[dict, _Recorder]:
    """One full run; returns its timing breakdown and the recorder (program, step)."""
    rec = _Recorder()
    with rec.patched():
        train_and_evaluate(config, workdir, devices=jax.devices()[:1])
        end = time.time()
    wall = end - rec.first_train
    excluded = covered(rec.compiles + rec.evals, rec.first_train, end)
    timing = {"wall_s": wall, "compile_s": covered(rec.compiles, rec.first_train, end),
              "eval_s": covered(rec.evals, rec.first_train, end), "excluded_s": excluded, "train_s": wall - excluded}
    return timing, rec


def first_batch(program, config) -> dict:
    """The batch of step 0 from the in-memory train split, as the loop would gather it."""
    from jaxclf import data

    split = program.dataset.splits[config.dataset.train_split]
    idx = data.train_indices(config.seed, 0, config.train.batch_size, split.num_examples)
    arrays = split.arrays() if hasattr(split, "arrays") else {"inputs": split.inputs, "labels": split.labels}
    batch = {k: np.asarray(v)[idx] for k, v in arrays.items()}
    batch["mask"] = np.ones(len(idx), np.float32)
    return jax.device_put(batch, jax.devices()[0])


def bare_seconds(program, step_fn, batch, num_steps: int) -> float:
    """``num_steps`` dispatches of the jitted step (state donated), after a compiling call;
    jitted as the loop jits it (``jaxclf.cpu.optimize``)."""
    from jaxclf import cpu
    from jaxclf.train import compiled

    step_key = compiled.run_keys(program.config.seed)[1]
    step = jax.jit(cpu.optimize(functools.partial(step_fn, key=step_key)), donate_argnums=0)
    state = program.init()[0]
    state, _ = step(state, batch)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(num_steps):
        state, _ = step(state, batch)
    jax.block_until_ready(state)
    return time.perf_counter() - t0


def compare_case(case: LoopCase, workroot: Path, *, quick: bool, repeats: int) -> dict:
    """Alternates full-loop runs (fresh workdirs) and bare-step runs; entry with the ratio."""
    n = case.quick_steps if quick else case.num_steps
    config = scaled_config(case, n)
    batch_size = config.train.batch_size
    loops, bares, timings = [], [], []
    name = CASES.index(case) if case in CASES else 0
    warm_up(config, workroot / f"{name}_warm")
    for r in range(repeats):
        timing, rec = loop_run(config, workroot / f"{name}_{r}")
        timings.append(timing)
        loops.append(n * batch_size / timing["train_s"])
        bares.append(n * batch_size / bare_seconds(rec.program, rec.step, first_batch(rec.program, config), n))
    t = config.train
    return comparison(case.name, loops, bares, target=0.95, baseline="bare_jit_step", kind="loop", config=case.config,
                      num_steps=n, batch=batch_size, intervals={k: t[k] for k in ("steps_per_call", "log_every",
                                                                                    "eval_every", "checkpoint_every")},
                      timings=timings)


def run(*, quick: bool = False, log=print) -> list[dict]:
    repeats = 1 if quick else REPEATS
    with tempfile.TemporaryDirectory(prefix="jaxclf-bench-loop-") as tmp:
        out = []
        for case in CASES:
            log(f"[loop] {case.name} ...")
            entry = compare_case(case, Path(tmp), quick=quick, repeats=repeats)
            log(f"[loop] {case.name}: loop {entry['ours']:.0f} vs bare {entry['theirs']:.0f} ex/s")
            out.append(entry)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=1, default=str))


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
