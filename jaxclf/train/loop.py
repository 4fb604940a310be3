"""The training loop: a run compiled from its config (``jaxclf.train.compiled``) driven step
chunk by step chunk, with logs, evaluations, checkpoints and preemption.

Every step is dispatched asynchronously; the host waits for the devices only when it
evaluates or checkpoints. A log's scalars are computed on the device and fetched once the next
chunk of steps is dispatched, so logging does not stall the devices. What the loop guarantees:

* resume: the checkpoint holds the train state and the running train statistics, and the
  batch of step s depends only on (seed, s), so an interrupted and resumed run ends bitwise
  equal to an uninterrupted one;
* preemption: SIGTERM/SIGINT checkpoint the current step and raise ``Preempted``;
* non-finite values: counted on the device every step, checked at each log (one chunk
  later) and before each checkpoint, so a non-finite state is never saved; the run stops
  naming the first bad step and whether the loss or the gradient went non-finite (or, with
  ``train.skip_nonfinite``, such updates are skipped and counted).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Iterator, Sequence

import jax
from tqdm.auto import tqdm

from jaxclf import config as config_lib
from jaxclf import data, transfer
from jaxclf.train import checkpoint, mesh as mesh_lib, preemption, train_stats, workdir as workdir_lib
from jaxclf.train.compiled import CompiledRun, compile_run
from jaxclf.train.writers import MetricWriter


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """What training leaves for the final evaluation (``jaxclf.results.write``)."""

    workdir: Path
    run: CompiledRun
    state: Any  # the final train state
    eval_states: dict  # {split: metric state} of the last evaluation in this process ({} if none)


def train(
    config,
    workdir,
    *,
    devices: Sequence[jax.Device] | None = None,
    stop_at: int | None = None,
    allow_config_change: bool = False,
    fresh_if_unreadable: bool = False,
) -> TrainedRun | None:
    """Trains (or resumes) the configured run in ``workdir``; None when it stops early.

    ``devices`` defaults to all devices of all processes. ``stop_at`` ends this call early at
    that step with a checkpoint (for time-sliced jobs); the same call without it continues.
    A workdir holding a different config is refused unless ``allow_config_change``; when its
    checkpoints are all unreadable the run stops unless ``fresh_if_unreadable``.
    """
    config_lib.validate(config)
    workdir = workdir_lib.prepare(workdir)
    mesh = mesh_lib.make_mesh(devices)
    _check_batch_sizes(config, mesh.size)
    defaults = config_lib.base_config().to_dict()  # keys an older workdir's config lacks
    if jax.process_index() == 0:  # refused before any compute; written once the run is built
        workdir_lib.check_config(workdir, config.to_dict(), defaults=defaults, allow_change=allow_config_change)

    run = compile_run(config, mesh)
    ckpt = checkpoint.manager(workdir / "checkpoints", config.train.keep_checkpoints)
    t = config.train
    end = t.num_steps if stop_at is None else min(stop_at, t.num_steps)
    writer = bar = chunks = None  # what the ending closes
    try:
        # ---------------------------------------------------------------- start or resume
        state, stats, start = _start(run, ckpt, workdir, fresh_if_unreadable)
        last_saved = start or None
        if jax.process_index() == 0:
            workdir_lib.record_config(workdir, config.to_dict(), defaults=defaults, allow_change=allow_config_change)
            workdir_lib.write_json(workdir / data.input_pipeline.PREPROCESSING_FILE,
                                   data.dataset_record(run.dataset, config.dataset.pad))
        writer = MetricWriter(workdir, resume_step=start)
        bar = tqdm(total=t.num_steps, initial=start, disable=not t.progress or jax.process_index() != 0, unit="step")
        log = _DeferredLog(writer, bar, skip_nonfinite=t.skip_nonfinite)

        # ---------------------------------------------------------------- train
        ranges = chunk_ranges(t, start, end)
        chunks = _one_ahead(run.inputs.chunks(ranges))
        eval_states, done = {}, start
        with preemption.catch_signals() as stop:
            for _, stop_step in ranges:
                with jax.transfer_guard("disallow"):  # no hidden host sync between dispatches
                    state, stats = run.train(state, stats, next(chunks), num_steps=stop_step - done)
                log.write(last_saved)  # the previous log, fetched while this chunk runs
                bar.update(stop_step - done)
                done = stop_step
                if done % t.log_every == 0 or done == t.num_steps:
                    log.defer(done, run.summarize(stats))
                    stats = run.reset(stats)
                if done % t.eval_every == 0 or done == t.num_steps:
                    log.write(last_saved)
                    eval_states = run.evaluate(state)
                    for split, scalars in run.logged(eval_states).items():
                        writer.write(done, split, scalars)
                if done % t.checkpoint_every == 0 or done == end or (stop and done < end):
                    log.write(last_saved)  # a non-finite run stops before its state is saved
                    train_stats.check_finite(stats, skip=t.skip_nonfinite, last_checkpoint=last_saved)
                    checkpoint.save(ckpt, done, {"state": state, "train": stats})
                    last_saved = done
                if stop and done < end:
                    raise preemption.Preempted(done, stop.signum)
    except BaseException:
        _end_run(chunks, bar, ckpt, writer, failing=True)
        raise
    _end_run(chunks, bar, ckpt, writer, failing=False)
    return TrainedRun(workdir, run, state, eval_states) if end == t.num_steps else None


def _start(run: CompiledRun, ckpt, workdir, fresh_if_unreadable: bool):
    """(state, train statistics, first step): the latest checkpoint's, else a new state
    (with ``transfer.init_from``'s weights when set)."""
    state, stats = run.init()
    try:
        restored = checkpoint.restore_latest(ckpt, {"state": state, "train": stats})
    except checkpoint.NoValidCheckpointError:
        if not fresh_if_unreadable:
            raise
        logging.warning("no readable checkpoint in %s: starting from scratch as asked", workdir)
        restored = None
    if restored is not None:
        start, item = restored
        logging.warning("resumed %s from step %d", workdir, start)
        return item["state"], item["train"], start
    t = run.config.transfer
    if t.init_from:
        state = transfer.initialize(state, checkpoint.load_params(t.init_from), exclude=t.exclude or None, source=t.init_from)
    return state, stats, 0


def chunk_ranges(t, start: int, end: int) -> list[tuple[int, int]]:
    """The run's chunks of steps, ``[(first, stop), ...]``: each ends where the host must act
    (log, evaluate, save, stop), at most ``t.steps_per_call`` long. Known up front, so a stream
    can prepare the next chunk early."""
    ranges, s = [], start
    periods = (t.log_every, t.eval_every, t.checkpoint_every)
    while s < end:
        ranges.append((s, min([s + t.steps_per_call, end] + [(s // p + 1) * p for p in periods])))
        s = ranges[-1][1]
    return ranges


class _DeferredLog:
    """A log whose summary is computed on the device and written later: after the next chunk
    is dispatched (the device keeps running while the host fetches and writes), and before
    evaluating or saving (lines stay in step order; a non-finite run stops before saving)."""

    def __init__(self, writer, bar, *, skip_nonfinite: bool):
        self.writer, self.bar, self.skip, self.pending = writer, bar, skip_nonfinite, None

    def defer(self, step: int, summary) -> None:
        self.pending = (step, summary)

    def write(self, last_checkpoint: int | None) -> None:
        if self.pending is None:
            return
        step, summary = self.pending[0], jax.device_get(self.pending[1])
        self.pending = None
        skipped = train_stats.check_finite(summary, skip=self.skip, last_checkpoint=last_checkpoint)
        scalars = train_stats.scalars(summary, skipped)
        self.writer.write(step, "train", scalars)
        self.bar.set_postfix(loss=f"{scalars['loss']:.4f}")


def _check_batch_sizes(config, num_devices: int) -> None:
    for key in ("batch_size", "eval_batch_size"):
        if config.train[key] % num_devices:
            raise ValueError(f"train.{key}={config.train[key]} is not divisible by the {num_devices} devices")


def _one_ahead(chunks: Iterator) -> Iterator:
    """Device prefetch: the next chunk's inputs are sent before the current one is consumed,
    so their transfer overlaps the running steps even when the host then blocks (to log,
    evaluate or save). ``close()`` closes ``chunks`` (stops a streaming reader)."""
    try:
        pending = next(chunks, None)
        while pending is not None:
            current, pending = pending, next(chunks, None)
            yield current
    finally:
        chunks.close()


def wait_for_devices() -> None:
    """Blocks until every computation producing a live array has finished (donated arrays
    are skipped; a computation's own error is not this call's to raise).

    Why every ending waits: a Python exception leaves the steps it dispatched running. If the
    interpreter then exits, an XLA:CPU worker thread that reaches a Python callback (the
    oneDNN convolutions are ctypes callbacks) calls PyGILState_Ensure while the interpreter is
    finalizing and is ended there by pthread_exit; XLA's thread pool then waits forever for
    it when the CPU client is destroyed (a hang; an abort, SIGABRT, when that forced unwinding
    crosses a frame that may not throw)."""
    for array in jax.live_arrays():
        if not array.is_deleted():
            try:
                array.block_until_ready()
            except Exception:  # noqa: BLE001
                pass


def _end_run(chunks, bar, ckpt, writer, *, failing: bool) -> None:
    """Ends a run on every path: waits for the dispatched device work, then stops the input
    stream, finishes the asynchronous checkpoint save and closes the manager and the writers.
    When the run is ``failing`` their own errors are logged, so the error that ended the run
    is the one reported; otherwise the first one is raised once all have run."""
    wait_for_devices()
    steps = [
        chunks.close if chunks is not None else None,
        bar.close if bar is not None else None,
        ckpt.wait_until_finished,
        ckpt.close,
        writer.close if writer is not None else None,
    ]
    first = None
    for step in filter(None, steps):
        try:
            step()
        except Exception as e:  # noqa: BLE001
            if failing:
                logging.warning("while ending the run: %s: %s", type(e).__name__, e)
            elif first is None:
                first = e
    if first is not None:
        raise first
