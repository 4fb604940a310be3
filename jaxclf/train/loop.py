"""The training loop: config -> data + model + optimizer -> jitted steps on a mesh ->
metrics, checkpoints, results.

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
import functools
import logging
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxclf import config as config_lib
from jaxclf import cpu, data, metrics, models, report, transfer
from jaxclf.train import checkpoint, mesh as mesh_lib, optim, preemption, steps as steps_lib, workdir as workdir_lib
from jaxclf.train.writers import MetricWriter

_BAD_KINDS = {1: "loss", 2: "gradient"}


def build_model(config, num_classes: int):
    """The configured model; binary tasks get one output logit."""
    outputs = 1 if config.task == "binary" else num_classes
    classes = {"num_classes": outputs} if "num_classes" in models.describe(config.model.name) else {}
    return models.create(config.model.name, **classes, **config_lib.model_kwargs(config))


def _check_batch_sizes(config, num_devices: int) -> None:
    for key in ("batch_size", "eval_batch_size"):
        if config.train[key] % num_devices:
            raise ValueError(f"train.{key}={config.train[key]} is not divisible by the {num_devices} devices")


def _check_labels(ds: data.Dataset) -> None:
    for name, split in ds.splits.items():
        bad = (split.labels < 0) | (split.labels >= ds.num_classes)
        if bad.any():
            raise ValueError(
                f"split {name!r} has {int(bad.sum())} labels outside [0, {ds.num_classes}), "
                f"e.g. {split.labels[bad][:5].tolist()}"
            )


def gather(arrays, indices, mask):
    """A batch from device arrays: inputs, labels (and lengths) at ``indices``, with ``mask``."""
    return {**{k: v[indices] for k, v in arrays.items()}, "mask": mask}


def empty_train_stats(metric_set, params, layer_norms: bool = False) -> dict:
    """Statistics summed between two logs (per-layer gradient norms only if ``layer_norms``),
    and non-finite bookkeeping for the whole run."""
    stats = {
        "metrics": metric_set.empty(),
        "grad_norm_sum": jnp.zeros((), jnp.float32),
        "steps": jnp.zeros((), jnp.int32),
        "nonfinite_steps": jnp.zeros((), jnp.int32),
        "first_bad_step": jnp.full((), -1, jnp.int32),
        "first_bad_kind": jnp.zeros((), jnp.int32),
    }
    if layer_norms:
        stats["layer_grad_norm_sum"] = jax.tree.map(jnp.zeros_like, steps_lib.per_layer_norms(params))
    return stats


def _accumulate(acc, stats, step, metric_set) -> dict:
    bad = ~(stats["loss_finite"] & stats["grads_finite"])
    first = bad & (acc["first_bad_step"] < 0)
    out = {
        "metrics": metric_set.merge(acc["metrics"], stats["metrics"]),
        "grad_norm_sum": acc["grad_norm_sum"] + jnp.where(bad, 0.0, stats["grad_norm"]),
        "steps": acc["steps"] + 1,
        "nonfinite_steps": acc["nonfinite_steps"] + bad.astype(jnp.int32),
        "first_bad_step": jnp.where(first, step + 1, acc["first_bad_step"]),
        "first_bad_kind": jnp.where(first, jnp.where(stats["loss_finite"], 2, 1), acc["first_bad_kind"]),
    }
    if "layer_grad_norm_sum" in acc:
        out["layer_grad_norm_sum"] = jax.tree.map(
            lambda a, g: a + jnp.where(bad, 0.0, g), acc["layer_grad_norm_sum"], stats["layer_grad_norms"]
        )
    return out


def _window_summary(acc, metric_set) -> dict:
    """All a log reads from the statistics, in one device computation: the window's metrics
    and mean gradient norms, and the run's non-finite bookkeeping."""
    steps = jnp.maximum(acc["steps"], 1).astype(jnp.float32)
    out = {
        "metrics": metric_set.compute(acc["metrics"]),
        "grad_norm": acc["grad_norm_sum"] / steps,
        **{k: acc[k] for k in ("nonfinite_steps", "first_bad_step", "first_bad_kind")},
    }
    if "layer_grad_norm_sum" in acc:
        out["layer_grad_norms"] = jax.tree.map(lambda total: total / steps, acc["layer_grad_norm_sum"])
    return out


def _reset_window(acc, metric_set) -> dict:
    """Starts a new logging window; the non-finite bookkeeping carries over."""
    zeros = jax.tree.map(jnp.zeros_like, acc)
    window = ("grad_norm_sum", "layer_grad_norm_sum", "steps")
    return {**acc, "metrics": metric_set.empty(), **{k: zeros[k] for k in window if k in acc}}


def metric_sets(config, num_classes: int):
    """(training metrics: the config's list; evaluation metrics: the list and the report's).
    Task 'generative': means of the scalars the model family's loss returns."""
    if config.task == "generative":
        means = metrics.means(config.metrics)
        return means, means
    options = dict(threshold=config.train.threshold, num_bins=config.eval.num_bins, calibration_bins=config.eval.calibration_bins)
    task = config_lib.metrics_task(config.task)  # 'sequence': token-level multiclass metrics
    train_set = metrics.collection(("loss", *config.metrics), num_classes=num_classes, task=task, **options)
    eval_names = tuple(dict.fromkeys(("loss", *config.metrics, *report.report_metrics(task, num_classes))))
    return train_set, metrics.collection(eval_names, num_classes=num_classes, task=task, **options)


@dataclasses.dataclass
class _Program:
    """Everything built once from the config: data on the devices and the jitted functions."""

    ds: data.Dataset | data.stream.StreamDataset
    model: Any
    metric_set: Any  # training metrics (the config's list)
    eval_set: Any  # evaluation metrics: the config's list and the report's
    init: Callable  # () -> (state, train_stats)
    train: Callable  # (state, acc, inputs, num_steps) -> (state, acc); inputs from train_inputs
    train_inputs: Callable  # [(start, stop), ...] -> iterator of each chunk's global inputs
    evaluate: Callable  # (state, splits=eval_splits) -> {split: metric state}
    summarize: Callable  # acc -> the window's summary (on the device)
    reset: Callable  # acc -> acc

    def logged(self, config, states) -> dict[str, dict[str, float]]:
        """The scalars a run logs per split: its metrics (binary: + best thresholds)."""
        keep = set(self.metric_set.metric_names)
        if config.task == "binary":
            keep |= {"best_f1_threshold", "best_youden_threshold"}
        out = {}
        for split, st in states.items():
            values = jax.device_get(self.eval_set.compute(st))
            out[split] = {k: float(v) for k, v in values.items() if k in keep}
        return out


def _build(config, mesh) -> _Program:
    """In memory (default), a train step gathers its batch from device arrays at indices it
    computes from its step number and a device-resident table of epoch permutations, so a
    step needs nothing from the host; with ``dataset.in_memory=False`` the host streams
    preprocessed batches (jaxclf.data.stream). Both feed one scan body; only the batch
    source (``fetch``) differs. A chunk's inputs are (shared by its steps, one per step)."""
    in_memory = config.dataset.in_memory
    if in_memory:
        ds = data.load(config.dataset)
        _check_labels(ds)
    else:
        ds = data.stream.load(config.dataset, seed=config.seed)
    config_lib.check_unusual(config, ds.num_classes, ds.splits[config.dataset.train_split].num_examples if in_memory
                             else ds.train.num_examples)
    model = build_model(config, ds.num_classes)
    if mesh.devices.flat[0].platform == "cpu":
        model = cpu.tune(model)
    if config.transfer.freeze_batch_stats:
        model = transfer.freeze_batch_norm(model)
    tx = transfer.make_optimizer(
        optim.optimizer(config.optim, config.train.num_steps), freeze=config.transfer.freeze or None,
        backbone_lr_factor=config.transfer.backbone_lr_factor, unfreeze_after=config.transfer.unfreeze_after,
    )
    metric_set, eval_set = metric_sets(config, ds.num_classes)
    family_loss = None
    if config.task == "generative":
        family_loss = models.loss(config.model.name, model, **config.loss)
    key = jax.random.key(config.seed)
    init_key, step_key, aug_key = jax.random.split(key, 3)
    steps = functools.partial(
        steps_lib.make_steps, model, tx, task=config.task, key=step_key, label_smoothing=config.train.label_smoothing,
        class_weights=config.train.class_weights, aux_weight=config.train.aux_loss_weight, family_loss=family_loss,
    )
    train_step, _ = steps(metric_set, skip_nonfinite=config.train.skip_nonfinite, layer_norms=config.train.log_grad_norms)
    _, eval_step = steps(eval_set)
    repl, sharded = mesh_lib.replicated(mesh), mesh_lib.batch_sharded(mesh)
    steps_sharded = mesh_lib.batch_sharded(mesh, batch_axis=1)
    batch_size = config.train.batch_size
    if in_memory:
        device_data = {
            name: {k: mesh_lib.global_array(v, repl) for k, v in s.arrays().items()} for name, s in ds.splits.items()
        }
        train_arrays = device_data[config.dataset.train_split]
        n_train = ds.splits[config.dataset.train_split].num_examples
        augmentations = tuple(config.dataset.augment)  # applied on the device, inside the step

        def fetch(table, _batch, step):
            indices = data.table_indices(table, step, batch_size, n_train)
            indices = jax.lax.with_sharding_constraint(indices, sharded)  # each device gathers its part
            return gather(train_arrays, indices, jnp.ones(indices.shape, jnp.float32))

        def train_inputs(ranges):
            host = device = None
            for table in data.index_tables(config.seed, ranges, batch_size, n_train):
                if table is not host:  # sent once, used until the steps leave its epochs
                    host, device = table, {k: mesh_lib.global_array(v, repl) for k, v in table.items()}
                yield device, None
    else:
        augmentations = ()  # applied on the host by the stream
        train_rows = mesh_lib.process_rows(sharded, batch_size)  # this process reads only these
        norm_table = data.stream.normalization_table(ds.mean, ds.std)

        def fetch(_table, batch, _step):  # uint8 from the host, normalised here on the device
            inputs = data.stream.normalize(batch["inputs"], norm_table)
            return {**batch, "inputs": inputs, "mask": jnp.ones(batch["labels"].shape, jnp.float32)}

        def train_inputs(ranges):
            if not ranges:
                return
            make = data.stream.TrainRows(ds.train, batch_size, train_rows)
            steps = range(ranges[0][0], ranges[-1][1])
            batches = data.stream.stream(make, steps, ds.train.num_workers, what=f"{ds.name} training batches")
            try:
                for start, stop in ranges:
                    chunk = [next(batches) for _ in range(stop - start)]
                    host = {k: chunk[0][k][None] if len(chunk) == 1 else np.stack([b[k] for b in chunk]) for k in chunk[0]}
                    yield None, {k: mesh_lib.global_array_from_rows(v, train_rows, steps_sharded, batch_size, 1)
                                 for k, v in host.items()}
            finally:
                batches.close()
    example = jnp.zeros((1, *ds.input_shape), ds.input_dtype)
    if config.task == "sequence":  # per-step targets, which teacher-forced models read
        example = {"inputs": example, "labels": jnp.zeros((1, *ds.label_shape), jnp.int32)}

    @jax.jit
    def init():
        try:
            state = steps_lib.init_state(model, tx, example, init_key)
        except Exception as e:  # flax raises shape errors from deep inside the model
            raise ValueError(
                f"model {config.model.name!r} cannot take inputs of shape {ds.input_shape} "
                f"from dataset {ds.name!r}: {e}"
            ) from e
        return state, empty_train_stats(metric_set, state.params, config.train.log_grad_norms)

    def one_step(shared, carry, step_inputs):
        state, acc = carry
        batch = fetch(shared, step_inputs, state.step)
        if augmentations:
            batch = data.augment_batch(batch, jax.random.fold_in(aug_key, state.step), augmentations, config.dataset)
        batch = jax.lax.with_sharding_constraint(batch, sharded)
        step = state.step
        state, stats = train_step(state, batch)
        return (state, _accumulate(acc, stats, step, metric_set)), None

    @functools.partial(jax.jit, donate_argnums=(0, 1), static_argnames="num_steps")
    @cpu.optimize
    def train(state, acc, inputs, num_steps: int):
        """``num_steps`` steps in one call. ``inputs`` = (shared, per_step): in memory the index
        table and None, streaming None and stacked batches {'inputs': (K, batch, ...), ...}.
        A lax.scan (``train.scan_unroll`` steps unrolled per iteration), or the step itself
        when K = 1, with no loop around it. (Decided by K, not by each chunk's length: the two
        compile to float32-rounding-different programs, and a resumed run must repeat an
        uninterrupted one bitwise.)"""
        shared, per_step = inputs
        body = functools.partial(one_step, shared)
        if config.train.steps_per_call == 1:
            return body((state, acc), jax.tree.map(lambda a: a[0], per_step))[0]
        return jax.lax.scan(body, (state, acc), per_step, length=num_steps, unroll=config.train.scan_unroll)[0]

    @functools.partial(jax.jit, out_shardings=repl)
    @cpu.optimize
    def eval_batch(state, acc, arrays, indices, mask):
        batch = jax.lax.with_sharding_constraint(gather(arrays, indices, mask), sharded)
        return eval_set.merge(acc, eval_step(state, batch))

    @functools.partial(jax.jit, out_shardings=repl)
    @cpu.optimize
    def eval_host_batch(state, acc, batch):
        batch = {**batch, "inputs": data.stream.normalize(batch["inputs"], norm_table)}
        return eval_set.merge(acc, eval_step(state, jax.lax.with_sharding_constraint(batch, sharded)))

    empty_eval = jax.jit(eval_set.empty, out_shardings=repl)

    def evaluate(state, splits=None):
        out = {}
        for split in config.dataset.eval_splits if splits is None else splits:
            acc = empty_eval()
            batches = data.eval_batches(ds.splits[split].num_examples, config.train.eval_batch_size)
            if in_memory:
                for idx, mask in batches:
                    idx, mask = mesh_lib.global_array(idx, sharded), mesh_lib.global_array(mask, sharded)
                    acc = eval_batch(state, acc, device_data[split], idx, mask)
            else:
                size = config.train.eval_batch_size
                rows = mesh_lib.process_rows(sharded, size)
                make = data.stream.EvalRows(ds.splits[split], rows)
                stream = data.stream.stream(make, list(batches), ds.splits[split].num_workers, what=f"{ds.name} {split}")
                try:
                    for host in stream:
                        acc = eval_host_batch(state, acc, {k: mesh_lib.global_array_from_rows(v, rows, sharded, size)
                                                           for k, v in host.items()})
                finally:
                    stream.close()
            out[split] = acc
        return out

    init_sharded = jax.jit(init, out_shardings=repl)
    summarize = jax.jit(lambda acc: _window_summary(acc, metric_set), out_shardings=repl)
    reset = jax.jit(lambda acc: _reset_window(acc, metric_set), out_shardings=repl)
    return _Program(ds, model, metric_set, eval_set, init_sharded, train, train_inputs, evaluate, summarize, reset)


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


def _wait_for_devices() -> None:
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


def _end_run(inputs, bar, ckpt, writer, *, failing: bool) -> None:
    """Ends a run on every path: waits for the dispatched device work, then stops the input
    stream, finishes the asynchronous checkpoint save and closes the manager and the writers.
    When the run is ``failing`` their own errors are logged, so the error that ended the run
    is the one reported; otherwise the first one is raised once all have run."""
    _wait_for_devices()
    steps = [
        inputs.close if inputs is not None else None,
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


def _check_finite(stats, *, skip: bool, last_checkpoint: int | None) -> int:
    """Raises FloatingPointError on a non-finite step unless skipping; returns the count.
    ``stats``: the train statistics or a window summary (both hold the bookkeeping)."""
    count = int(stats["nonfinite_steps"])
    if count and not skip:
        kind = _BAD_KINDS[int(stats["first_bad_kind"])]
        kept = f"the last checkpoint (step {last_checkpoint}) is kept" if last_checkpoint else "no checkpoint was written"
        raise FloatingPointError(
            f"non-finite {kind} at step {int(stats['first_bad_step'])}; {kept}. "
            "Lower the learning rate, clip gradients (optim.clip_norm), or set train.skip_nonfinite=True"
        )
    return count


def _train_scalars(summary, skipped: int) -> dict[str, float]:
    """The logged scalars of a window summary fetched to the host."""
    scalars = {k: float(v) for k, v in summary["metrics"].items()}
    scalars["grad_norm"] = float(summary["grad_norm"])
    for layer, value in summary.get("layer_grad_norms", {}).items():
        scalars[f"grad_norm/{layer}"] = float(value)
    if skipped:
        scalars["skipped_nonfinite"] = float(skipped)
    return scalars


def train_and_evaluate(
    config,
    workdir,
    *,
    devices: Sequence[jax.Device] | None = None,
    stop_at: int | None = None,
    allow_config_change: bool = False,
    fresh_if_unreadable: bool = False,
) -> dict:
    """Trains (or resumes) the configured run in ``workdir``; returns final metrics per split.

    ``devices`` defaults to all devices of all processes. ``stop_at`` ends this call early at
    that step with a checkpoint (for time-sliced jobs); the same call without it continues.
    A workdir holding a different config is refused unless ``allow_config_change``; when its
    checkpoints are all unreadable the run stops unless ``fresh_if_unreadable``.
    """
    config_lib.validate(config)
    workdir = workdir_lib.prepare(workdir)
    mesh = mesh_lib.make_mesh(devices)
    _check_batch_sizes(config, mesh.size)
    if jax.process_index() == 0:  # refused before any compute; written once the run is built
        workdir_lib.check_config(workdir, config.to_dict(), allow_change=allow_config_change)

    program = _build(config, mesh)
    ckpt = checkpoint.manager(workdir / "checkpoints", config.train.keep_checkpoints)
    t = config.train
    end = t.num_steps if stop_at is None else min(stop_at, t.num_steps)
    pending = None  # (step, summary on the device) of a log not yet written
    writer = bar = inputs = None  # what the ending closes
    eval_states = {}
    try:
        state, acc = program.init()
        try:
            restored = checkpoint.restore_latest(ckpt, {"state": state, "train": acc})
        except checkpoint.NoValidCheckpointError:
            if not fresh_if_unreadable:
                raise
            logging.warning("no readable checkpoint in %s: starting from scratch as asked", workdir)
            restored = None
        start, last_saved = 0, None
        if restored is not None:
            start, item = restored
            state, acc, last_saved = item["state"], item["train"], start
            logging.warning("resumed %s from step %d", workdir, start)
        elif config.transfer.init_from:
            state = transfer.initialize(state, config.transfer.init_from, exclude=config.transfer.exclude or None)
        if jax.process_index() == 0:
            ds = program.ds
            workdir_lib.record_config(workdir, config.to_dict(), allow_change=allow_config_change)
            workdir_lib.write_json(workdir / data.input_pipeline.PREPROCESSING_FILE, data.dataset_record(ds, config.dataset.pad))

        writer = MetricWriter(workdir, resume_step=start)
        bar = tqdm(total=t.num_steps, initial=start, disable=not t.progress or jax.process_index() != 0, unit="step")

        def write_pending():
            """Writes the pending log. Called after the next chunk is dispatched, so the device
            keeps running while the host fetches and writes; and before evaluating or saving, so
            lines stay in step order and a non-finite run stops before its state is saved."""
            nonlocal pending
            if pending is not None:
                step, summary = pending[0], jax.device_get(pending[1])
                pending = None
                skipped = _check_finite(summary, skip=t.skip_nonfinite, last_checkpoint=last_saved)
                scalars = _train_scalars(summary, skipped)
                writer.write(step, "train", scalars)
                bar.set_postfix(loss=f"{scalars['loss']:.4f}")

        def save(step):
            nonlocal last_saved
            write_pending()
            _check_finite(acc, skip=t.skip_nonfinite, last_checkpoint=last_saved)
            checkpoint.save(ckpt, step, {"state": state, "train": acc})
            last_saved = step

        def chunk_end(step):
            """The next step at which the host must act (log, eval, save, stop), at most K away."""
            periods = (t.log_every, t.eval_every, t.checkpoint_every)
            return min([step + t.steps_per_call, end] + [(step // p + 1) * p for p in periods])

        ranges, s = [], start  # every chunk of steps up front: a stream can prepare the next one early
        while s < end:
            ranges.append((s, chunk_end(s)))
            s = ranges[-1][1]
        inputs = _one_ahead(program.train_inputs(ranges))
        with preemption.catch_signals() as stop:
            done = start
            for _, stop_step in ranges:
                with jax.transfer_guard("disallow"):  # no hidden host sync between dispatches
                    state, acc = program.train(state, acc, next(inputs), num_steps=stop_step - done)
                write_pending()
                bar.update(stop_step - done)
                done = stop_step
                if done % t.log_every == 0 or done == t.num_steps:
                    pending = (done, program.summarize(acc))  # not awaited: written after the next dispatch
                    acc = program.reset(acc)
                if done % t.eval_every == 0 or done == t.num_steps:
                    write_pending()
                    eval_states = program.evaluate(state)
                    for split, scalars in program.logged(config, eval_states).items():
                        writer.write(done, split, scalars)
                if done % t.checkpoint_every == 0 or done == end:
                    save(done)
                if stop and done < end:
                    save(done)
                    raise preemption.Preempted(done, stop.signum)
    except BaseException:
        _end_run(inputs, bar, ckpt, writer, failing=True)
        raise
    _end_run(inputs, bar, ckpt, writer, failing=False)
    if end < t.num_steps:
        return {}
    try:
        return _finish(workdir, config, program, state, eval_states)
    except BaseException:
        _wait_for_devices()
        raise


def _finish(workdir, config, program: _Program, state, eval_states) -> dict:
    """The final evaluation (the eval splits' last one and the test splits) -> results.json,
    the decision threshold and the report."""
    if not eval_states:  # a finished run re-run: evaluate its final state again
        eval_states = program.evaluate(state)
    final = [s for s in config.dataset.test_splits if s not in eval_states]  # evaluated once, now
    eval_states = {**eval_states, **program.evaluate(state, final)}
    results = program.logged(config, eval_states)
    if jax.process_index() == 0:
        workdir_lib.write_json(workdir / "results.json", results)
        if config.task == "binary":
            workdir_lib.write_json(workdir / "decision.json", _decision(config, program, eval_states))
        if config.eval.report and config.task == "generative":
            _draw(workdir, config, program, state)
        elif config.eval.report:
            _write_report(workdir, config, program, eval_states)
    return results


THRESHOLD_RULES = {"fixed": None, "best_f1": "best_f1_threshold", "best_youden": "best_youden_threshold"}


def _decision(config, program: _Program, eval_states) -> dict:
    """The binary decision threshold stored with the run (``jaxclf.predict`` uses it):
    ``train.threshold`` ('fixed'), or the one maximising F1 or Youden's J on
    ``train.threshold_split`` (use a validation split, e.g. eval_splits=('train[80%:]', 'test'))."""
    rule = config.train.threshold_rule
    if THRESHOLD_RULES[rule] is None:
        return {"threshold": float(config.train.threshold), "rule": rule}
    split = config.train.threshold_split or config.dataset.eval_splits[0]
    values = jax.device_get(program.eval_set.compute(eval_states[split]))
    return {"threshold": float(values[THRESHOLD_RULES[rule]]), "rule": rule, "split": split}


def _write_report(workdir, config, program: _Program, eval_states) -> None:
    meta = {
        "task": config_lib.metrics_task(config.task),
        "num_classes": program.ds.num_classes,
        "model": config.model.name,
        "metric_names": list(program.eval_set.metric_names),
        "options": {"threshold": config.train.threshold, "num_bins": config.eval.num_bins,
                    "calibration_bins": config.eval.calibration_bins},
        "class_names": program.ds.class_names,
    }
    report.save_states(workdir / "report", jax.device_get(eval_states), meta)
    report.write(workdir)


def _draw(workdir, config, program: _Program, state) -> None:
    """A generative model's figures (e.g. samples, reconstructions) from the first eval split."""
    split = program.ds.splits[config.dataset.eval_splits[0]]
    params = jax.device_get(state.params)
    models.figures(config.model.name)(
        workdir / "report", program.model, params, split.inputs, split.labels, program.ds.class_names, seed=config.seed
    )
