"""The training loop: config -> data + model + optimizer -> jitted steps on a mesh ->
metrics, checkpoints, results.

Everything the loop does per step is dispatched asynchronously; the host waits on the
device only when it logs, evaluates or checkpoints.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxclf import config as config_lib
from jaxclf import data, metrics, models
from jaxclf.train import checkpoint, mesh as mesh_lib, optim, state as state_lib, workdir as workdir_lib
from jaxclf.train.writers import MetricWriter


def build_model(config, num_classes: int):
    """The configured model; binary tasks get one output logit."""
    outputs = 1 if config.task == "binary" else num_classes
    return models.create(config.model.name, num_classes=outputs, **config_lib.model_kwargs(config))


def _check_batch_sizes(config, num_devices: int) -> None:
    for key in ("batch_size", "eval_batch_size"):
        if config.train[key] % num_devices:
            raise ValueError(
                f"train.{key}={config.train[key]} is not divisible by the {num_devices} devices"
            )


def _device_split(split: data.Split, sharding) -> dict[str, jax.Array]:
    return {
        "inputs": mesh_lib.global_array(split.inputs, sharding),
        "labels": mesh_lib.global_array(split.labels, sharding),
    }


def _gather(arrays, indices, mask):
    return {"inputs": arrays["inputs"][indices], "labels": arrays["labels"][indices], "mask": mask}


def _check_labels(ds: data.Dataset, num_classes: int) -> None:
    for name, split in ds.splits.items():
        bad = (split.labels < 0) | (split.labels >= num_classes)
        if bad.any():
            raise ValueError(
                f"split {name!r} has {int(bad.sum())} labels outside [0, {num_classes}), "
                f"e.g. {split.labels[bad][:5].tolist()}"
            )


def train_and_evaluate(
    config, workdir, *, devices: Sequence[jax.Device] | None = None, stop_at: int | None = None
) -> dict:
    """Trains (or resumes) the configured run in ``workdir``; returns final metrics per split.

    ``devices`` defaults to all devices of all processes. ``stop_at`` ends this call early at
    that step with a checkpoint (for time-sliced jobs); the same call without it continues.
    """
    config_lib.validate(config)
    workdir = workdir_lib.prepare(workdir)
    mesh = mesh_lib.make_mesh(devices)
    _check_batch_sizes(config, mesh.size)
    if jax.process_index() == 0:
        workdir_lib.write_json(workdir / "config.json", config.to_dict())

    ds = data.load(config.dataset)
    _check_labels(ds, ds.num_classes)
    model = build_model(config, ds.num_classes)
    num_steps = config.train.num_steps
    tx = optim.optimizer(config.optim, num_steps)
    metric_set = metrics.collection(
        config.metrics, num_classes=ds.num_classes, task=config.task, threshold=config.train.threshold
    )
    key = jax.random.key(config.seed)
    init_key, step_key = jax.random.split(key)
    train_step, eval_step = state_lib.make_steps(
        model,
        tx,
        metric_set,
        task=config.task,
        key=step_key,
        label_smoothing=config.train.label_smoothing,
        class_weights=config.train.class_weights,
        aux_weight=config.train.aux_loss_weight,
    )

    repl, sharded = mesh_lib.replicated(mesh), mesh_lib.batch_sharded(mesh)
    example = jnp.zeros((1, *ds.input_shape), jnp.float32)
    empty_metrics = jax.jit(metric_set.empty, out_shardings=repl)
    state = jax.jit(state_lib.init_state, static_argnums=(0, 1), out_shardings=repl)(model, tx, example, init_key)
    train_metrics = empty_metrics()

    ckpt = checkpoint.manager(workdir / "checkpoints", config.train.keep_checkpoints)
    restored = checkpoint.restore_latest(ckpt, {"state": state, "train_metrics": train_metrics})
    if restored is not None:
        start, item = restored
        state, train_metrics = item["state"], item["train_metrics"]
        logging.warning("resumed %s from step %d", workdir, start)
    else:
        start = 0
    writer = MetricWriter(workdir, resume_step=start)

    train_data = _device_split(ds.splits[config.dataset.train_split], repl)
    augmentations = tuple(config.dataset.augment)
    aug_key = jax.random.fold_in(key, 1)

    @jax.jit
    def train_fn(state, acc, arrays, indices):
        batch = _gather(arrays, indices, jnp.ones(indices.shape, jnp.float32))
        if augmentations:
            k = jax.random.fold_in(aug_key, state.step)
            batch["inputs"] = augment_fn(batch["inputs"], k)
        batch = jax.lax.with_sharding_constraint(batch, sharded)
        state, m = train_step(state, batch)
        return state, metric_set.merge(acc, m)

    def augment_fn(images, k):
        return data.augment(images, k, augmentations, config.dataset.crop_padding)

    @jax.jit
    def eval_fn(state, acc, arrays, indices, mask):
        batch = jax.lax.with_sharding_constraint(_gather(arrays, indices, mask), sharded)
        return metric_set.merge(acc, eval_step(state, batch))

    def evaluate(state) -> dict[str, dict[str, float]]:
        out = {}
        for split in config.dataset.eval_splits:
            arrays = _device_split(ds.splits[split], repl) if split not in eval_cache else eval_cache[split]
            eval_cache[split] = arrays
            acc = empty_metrics()
            n = ds.splits[split].num_examples
            for idx, mask in data.eval_batches(n, config.train.eval_batch_size):
                acc = eval_fn(state, acc, arrays, mesh_lib.global_array(idx, sharded), mesh_lib.global_array(mask, sharded))
            out[split] = {k: float(v) for k, v in jax.device_get(metric_set.compute(acc)).items()}
        return out

    eval_cache: dict = {}
    n_train = ds.splits[config.dataset.train_split].num_examples
    t = config.train
    bar = tqdm(total=num_steps, initial=start, disable=not t.progress or jax.process_index() != 0, unit="step")
    results = {}
    end = num_steps if stop_at is None else min(stop_at, num_steps)
    for step in range(start, end):
        idx = data.train_indices(config.seed, step, t.batch_size, n_train)
        state, train_metrics = train_fn(state, train_metrics, train_data, mesh_lib.global_array(idx, sharded))
        done = step + 1
        bar.update(1)
        if done % t.log_every == 0 or done == num_steps:
            scalars = {k: float(v) for k, v in jax.device_get(metric_set.compute(train_metrics)).items()}
            if not np.isfinite(scalars["loss"]):
                raise FloatingPointError(f"non-finite training loss {scalars['loss']} at step {done}")
            writer.write(done, "train", scalars)
            bar.set_postfix(loss=f"{scalars['loss']:.4f}")
            train_metrics = empty_metrics()
        if done % t.eval_every == 0 or done == num_steps:
            results = evaluate(state)
            for split, scalars in results.items():
                writer.write(done, split, scalars)
        if done % t.checkpoint_every == 0 or done in (num_steps, end):
            checkpoint.save(ckpt, done, {"state": state, "train_metrics": train_metrics})
    bar.close()
    if end < num_steps:
        ckpt.wait_until_finished()
        ckpt.close()
        writer.close()
        return {}
    if not results:  # resumed a finished run: evaluate its final state again
        results = evaluate(state)
    ckpt.wait_until_finished()
    ckpt.close()
    writer.close()
    if jax.process_index() == 0:
        workdir_lib.write_json(workdir / "results.json", results)
    return results
