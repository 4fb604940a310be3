"""Sweep points that differ only in seed and optimizer hyper-parameters, trained together.

One jitted program trains all P points: parameters and optimizer states are stacked along a
leading axis and the pure train step (:func:`jaxclf.train.steps.make_steps`) is vmapped over
it. The optimizer is the config's, rebuilt under ``optax.inject_hyperparams`` so that the
learning rate, weight decay and momentum live in the optimizer state (one value per point)
instead of being baked into the program.

A per-point seed changes everything the loop derives from it: the initialisation, the dropout
and augmentation keys and the batch order (each point gathers its own batch of step s,
``data.train_indices(seed, s, ...)``, computed on the device from its own index table as the
loop does), so every point reproduces its one-by-one run (tested to 1e-5). Each point is then
written as a normal run directory: config.json, metrics.jsonl, results.json and a final
checkpoint in the loop's layout, so ``jaxclf.main`` can re-evaluate or extend it. Not
supported here (use the process-per-point sweep): transfer learning, mid-run checkpoints (an
interrupted vmapped sweep restarts its unfinished points), the evaluation report, and the
binary best-threshold metrics.
"""

from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxclf import cpu, data, metrics
from jaxclf.train import checkpoint, loop, optim, steps as steps_lib, workdir as workdir_lib
from jaxclf.train.writers import MetricWriter

VMAPPABLE = ("seed", "optim.lr", "optim.weight_decay", "optim.momentum")
_HYPER = {"optim.lr": "learning_rate", "optim.weight_decay": "weight_decay", "optim.momentum": "momentum"}


def check_vmappable(keys: Sequence[str]) -> None:
    """Raises naming the first key that would change the program (not just its inputs)."""
    for key in keys:
        if key not in VMAPPABLE:
            raise ValueError(
                f"--vmap cannot sweep {key!r}: vmapped points may differ only in {', '.join(VMAPPABLE)}; "
                "run this sweep without --vmap"
            )


def _flat(tree: dict, prefix: str = "") -> dict:
    """{'optim': {'lr': 1}} -> {'optim.lr': 1}."""
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def differing_keys(configs) -> list[str]:
    """The dotted keys whose values are not the same in every config."""
    flats = [_flat(c.to_dict()) for c in configs]
    return sorted(k for k in flats[0] if any(f.get(k) != flats[0][k] for f in flats[1:]))


def hyper_optimizer(cfg, num_steps: int, *, decay: bool) -> optax.GradientTransformation:
    """``optim.optimizer(cfg)`` with lr, weight decay and momentum injected as state.

    The schedule is the config's at lr=1 times the injected lr (every schedule is linear in
    lr). ``decay`` fixes the chain's structure: whether any point uses coupled weight decay.
    """
    unit_cfg = copy.deepcopy(cfg)
    unit_cfg.lr = 1.0
    unit = optim.schedule(unit_cfg, num_steps)

    def make(learning_rate, weight_decay, momentum):
        return optim.chain(cfg, lambda step: learning_rate * unit(step), weight_decay=weight_decay,
                           momentum=momentum, coupled_decay=decay)

    return optax.inject_hyperparams(make)(learning_rate=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum)


def _loop_opt_state(config, params, opt_state):
    """The injected optimizer state in the layout of the loop's optimizer for this config."""
    target = optim.optimizer(config.optim, config.train.num_steps).init(params)
    leaves, treedef = jax.tree.leaves(opt_state.inner_state), jax.tree.structure(target)
    if len(leaves) != treedef.num_leaves:
        raise ValueError("vmapped optimizer state does not match the loop's layout")
    return jax.tree.unflatten(treedef, leaves)


def _check(configs) -> None:
    check_vmappable(differing_keys(configs))
    c = configs[0]
    if c.transfer.init_from or c.transfer.freeze:
        raise ValueError("--vmap does not support transfer learning (transfer.init_from/freeze); run without --vmap")
    if c.task == "generative":
        raise ValueError("--vmap trains classifiers; task 'generative' (a model's own loss) runs without --vmap")


def _chunks(t, start: int = 0):
    """Step ranges between the points where the host logs: at most steps_per_call long."""
    done = start
    while done < t.num_steps:
        end = min(done + t.steps_per_call, t.num_steps, (done // t.log_every + 1) * t.log_every)
        yield done, end
        done = end


def train(configs, *, device=None):
    """Trains the points together; returns (dataset, metric set, stacked final state, logs).

    ``logs`` is a list of (step, [per-point train scalars]) at every ``train.log_every``.
    """
    _check(configs)
    base, t = configs[0], configs[0].train
    device = device or jax.local_devices()[0]
    ds = data.load(base.dataset)
    model = loop.build_model(base, ds.num_classes)
    model = cpu.tune(model) if device.platform == "cpu" else model
    decay = any(c.optim.weight_decay for c in configs)
    tx = hyper_optimizer(base.optim, t.num_steps, decay=decay)
    options = dict(threshold=t.threshold, num_bins=base.eval.num_bins, calibration_bins=base.eval.calibration_bins)
    metric_set = metrics.collection(("loss", *base.metrics), num_classes=ds.num_classes, task=base.task, **options)
    train_step, _ = steps_lib.make_steps(
        model, tx, metric_set, task=base.task, key=jax.random.key(0), label_smoothing=t.label_smoothing,
        class_weights=t.class_weights, aux_weight=t.aux_loss_weight, skip_nonfinite=t.skip_nonfinite,
    )
    # The loop's key derivation, per point: init, step (dropout), augmentation.
    keys = jnp.stack([jax.random.split(jax.random.key(c.seed), 3) for c in configs])
    hypers = {name: jnp.asarray([c.optim[k.split(".")[1]] for c in configs], jnp.float32) for k, name in _HYPER.items()}
    split = ds.splits[base.dataset.train_split]
    arrays = jax.device_put(split.arrays(), device)
    n = split.num_examples
    example = jnp.zeros((1, *ds.input_shape), ds.input_dtype)
    augmentations = tuple(base.dataset.augment)

    def init_one(key, hyper):
        s = steps_lib.init_state(model, tx, example, key[0])
        return s.replace(opt_state=s.opt_state._replace(hyperparams={**s.opt_state.hyperparams, **hyper}))

    def step_one(state, key, table):
        indices = data.table_indices(table, state.step, t.batch_size, n)
        batch = loop.gather(arrays, indices, jnp.ones(indices.shape, jnp.float32))
        if augmentations:
            batch = data.augment_batch(batch, jax.random.fold_in(key[2], state.step), augmentations, base.dataset)
        state, stats = train_step(state, batch, key=key[1])
        return state, (stats["metrics"], ~(stats["loss_finite"] & stats["grads_finite"]))

    @functools.partial(jax.jit, static_argnames="num_steps")
    @cpu.optimize
    def run_chunk(state, acc, bad, tables, num_steps: int):  # tables: each point's, stacked
        def body(carry, _):
            state, acc, bad = carry
            state, (m, b) = jax.vmap(step_one)(state, keys, tables)
            return (state, jax.vmap(metric_set.merge)(acc, m), bad + b), None

        return jax.lax.scan(body, (state, acc, bad), None, length=num_steps)[0]

    empty = jax.jit(jax.vmap(lambda _: metric_set.empty()))
    state = jax.jit(jax.vmap(init_one))(keys, hypers)
    acc, bad, logs = empty(jnp.arange(len(configs))), jnp.zeros(len(configs), jnp.int32), []
    ranges = list(_chunks(t))
    point_tables = zip(*(data.index_tables(c.seed, ranges, t.batch_size, n) for c in configs))
    host = None
    for (start, end), tables in zip(ranges, point_tables):
        if host is None or any(a is not b for a, b in zip(tables, host)):  # sent when the epochs move on
            host, stacked = tables, jax.device_put(jax.tree.map(lambda *a: np.stack(a), *tables), device)
        state, acc, bad = run_chunk(state, acc, bad, stacked, num_steps=end - start)
        if end % t.log_every == 0 or end == t.num_steps:
            _raise_if_nonfinite(configs, bad, t.skip_nonfinite)
            logs.append((end, [_scalars(metric_set, acc, i) for i in range(len(configs))]))
            acc = empty(jnp.arange(len(configs)))
    return ds, metric_set, state, logs


def _raise_if_nonfinite(configs, bad, skip: bool) -> None:
    counts = np.asarray(bad)
    if counts.any() and not skip:
        worst = [f"seed={c.seed}, lr={c.optim.lr}" for c, k in zip(configs, counts) if k]
        raise FloatingPointError(f"non-finite loss or gradient in point(s) {worst}; set train.skip_nonfinite=True or lower lr")


def _scalars(metric_set, stacked, i: int) -> dict[str, float]:
    one = jax.tree.map(lambda x: x[i], stacked)
    return {k: float(v) for k, v in jax.device_get(metric_set.compute(one)).items()}


def evaluate(configs, ds, metric_set, state, *, device=None) -> list[dict]:
    """Exact (masked) evaluation of every point on every eval split: [{split: {metric: v}}]."""
    base = configs[0]
    model = loop.build_model(base, ds.num_classes)
    _, eval_step = steps_lib.make_steps(model, optax.identity(), metric_set, task=base.task, key=jax.random.key(0),
                                        label_smoothing=base.train.label_smoothing, class_weights=base.train.class_weights)
    device = device or jax.local_devices()[0]

    @jax.jit
    @cpu.optimize
    def eval_batch(state, acc, arrays, indices, mask):
        batch = loop.gather(arrays, indices, mask)
        return jax.vmap(metric_set.merge)(acc, jax.vmap(eval_step, in_axes=(0, None))(state, batch))

    results = [{} for _ in configs]
    for split in dict.fromkeys((*base.dataset.eval_splits, *base.dataset.test_splits)):  # one final evaluation
        s = ds.splits[split]
        arrays = jax.device_put(s.arrays(), device)
        acc = jax.jit(jax.vmap(lambda _: metric_set.empty()))(jnp.arange(len(configs)))
        for idx, mask in data.eval_batches(s.num_examples, base.train.eval_batch_size):
            acc = eval_batch(state, acc, arrays, jnp.asarray(idx), jnp.asarray(mask))
        for i in range(len(configs)):
            results[i][split] = _scalars(metric_set, acc, i)
    return results


def write_point(config, workdir: Path, ds, metric_set, state, logs_i, results) -> None:
    """One point as a normal run directory (the loop's files and checkpoint layout)."""
    workdir = workdir_lib.prepare(workdir)
    workdir_lib.record_config(workdir, config.to_dict())
    state = state.replace(opt_state=_loop_opt_state(config, state.params, state.opt_state))
    ckpt = checkpoint.manager(workdir / "checkpoints", config.train.keep_checkpoints)
    try:
        checkpoint.save(ckpt, config.train.num_steps, {"state": state, "train": loop.empty_train_stats(metric_set, state.params, config.train.log_grad_norms)})
    finally:
        ckpt.wait_until_finished()
        ckpt.close()
    workdir_lib.write_json(workdir / data.input_pipeline.PREPROCESSING_FILE, data.dataset_record(ds, config.dataset.pad))
    writer = MetricWriter(workdir)
    try:
        for step, scalars in logs_i:
            writer.write(step, "train", scalars)
        for split, scalars in results.items():
            writer.write(config.train.num_steps, split, scalars)
    finally:
        writer.close()
    workdir_lib.write_json(workdir / "results.json", results)


def run(configs, workdirs: Sequence[Path], *, device=None) -> list[dict]:
    """Trains ``configs`` together and writes each to its workdir; returns their results."""
    configs = list(configs)
    ds, metric_set, state, logs = train(configs, device=device)
    results = evaluate(configs, ds, metric_set, state, device=device)
    for i, (config, workdir) in enumerate(zip(configs, workdirs)):
        one = jax.tree.map(lambda x: x[i], state)
        write_point(config, Path(workdir), ds, metric_set, one, [(s, per[i]) for s, per in logs], results[i])
    logging.info("vmapped %d points", len(configs))
    return results
