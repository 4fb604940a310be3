"""Sweep points that differ only in seed and optimizer hyper-parameters, trained together.

One jitted program trains all P points: parameters, optimizer states and train statistics
are stacked along a leading axis and the loop's own step (:func:`jaxclf.train.compiled.make_step`:
batch, augmentation, train step, statistics) is vmapped over it. The optimizer is the config's, rebuilt under ``optax.inject_hyperparams`` so that the
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

from jaxclf import config as config_lib
from jaxclf import cpu, data, models
from jaxclf.train import checkpoint, compiled, inputs as inputs_lib, mesh as mesh_lib, optim, steps as steps_lib, train_stats
from jaxclf.train import workdir as workdir_lib
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
    """Trains the points together; returns (inputs, metric set, stacked final state, stacked
    train statistics, logs).

    ``logs`` is a list of (step, [per-point train scalars]) at every ``train.log_every``.
    """
    _check(configs)
    base, t = configs[0], configs[0].train
    mesh = mesh_lib.make_mesh([device or jax.local_devices()[0]])
    inputs = inputs_lib.for_config(base, mesh)
    ds = inputs.ds
    model = models.from_config(base, ds.num_classes)
    model = cpu.tune(model) if mesh.devices.flat[0].platform == "cpu" else model
    tx = hyper_optimizer(base.optim, t.num_steps, decay=any(c.optim.weight_decay for c in configs))
    metric_set, _ = compiled.metric_sets(base, ds.num_classes)
    step = compiled.make_step(base, model, tx, metric_set, inputs)  # the loop's step, vmapped below
    keys = jnp.stack([compiled.run_keys(c.seed) for c in configs])  # per point: init, step, augmentation
    hypers = {name: jnp.asarray([c.optim[k.split(".")[1]] for c in configs], jnp.float32) for k, name in _HYPER.items()}
    example = compiled.example_batch(base, ds)

    def init_one(key, hyper):
        s = steps_lib.init_state(model, tx, example, key[0])
        s = s.replace(opt_state=s.opt_state._replace(hyperparams={**s.opt_state.hyperparams, **hyper}))
        return s, compiled.empty_train_stats(base, metric_set, s.params)

    def step_one(key, table, carry):
        return step((key[1], key[2]), table, carry, None)[0]

    @functools.partial(jax.jit, static_argnames="num_steps")
    @cpu.optimize
    def run_chunk(carry, tables, num_steps: int):  # tables: each point's, stacked
        body = lambda carry, _: (jax.vmap(step_one)(keys, tables, carry), None)  # noqa: E731
        return jax.lax.scan(body, carry, None, length=num_steps)[0]

    summarize = jax.jit(jax.vmap(lambda s: train_stats.summarize(s, metric_set)))
    reset = jax.jit(jax.vmap(lambda s: train_stats.reset(s, metric_set)))
    state, stats = jax.jit(jax.vmap(init_one))(keys, hypers)
    ranges, logs = list(_chunks(t)), []
    point_tables = zip(*(data.index_tables(c.seed, ranges, t.batch_size, inputs.num_train) for c in configs))
    host = None
    for (start, end), tables in zip(ranges, point_tables):
        if host is None or any(a is not b for a, b in zip(tables, host)):  # sent when the epochs move on
            host, stacked = tables, jax.device_put(jax.tree.map(lambda *a: np.stack(a), *tables), mesh.devices.flat[0])
        state, stats = run_chunk((state, stats), stacked, num_steps=end - start)
        if end % t.log_every == 0 or end == t.num_steps:
            summaries = jax.device_get(summarize(stats))
            _raise_if_nonfinite(configs, summaries["nonfinite_steps"], t.skip_nonfinite)
            logs.append((end, [_point_scalars(summaries, i) for i in range(len(configs))]))
            stats = reset(stats)
    return inputs, metric_set, state, stats, logs


def _raise_if_nonfinite(configs, counts, skip: bool) -> None:
    if np.any(counts) and not skip:
        worst = [f"seed={c.seed}, lr={c.optim.lr}" for c, k in zip(configs, counts) if k]
        raise FloatingPointError(f"non-finite loss or gradient in point(s) {worst}; set train.skip_nonfinite=True or lower lr")


def _point_scalars(summaries, i: int) -> dict[str, float]:
    one = jax.tree.map(lambda x: x[i], summaries)
    return train_stats.scalars(one, int(one["nonfinite_steps"]))


def evaluate(configs, inputs, metric_set, state) -> list[dict]:
    """Exact (masked) evaluation of every point on every eval split: [{split: {metric: v}}],
    with the loop's eval step vmapped over the points."""
    base = configs[0]
    model = models.from_config(base, inputs.ds.num_classes)
    _, eval_step = compiled.make_steps(base, model, optax.identity(), metric_set)

    @jax.jit
    @cpu.optimize
    def eval_batch(state, metric_state, batch_inputs):
        batch = inputs.eval_batch(batch_inputs)
        return jax.vmap(metric_set.merge)(metric_state, jax.vmap(eval_step, in_axes=(0, None))(state, batch))

    empty = jax.jit(jax.vmap(lambda _: metric_set.empty()))
    results = [{} for _ in configs]
    for split in dict.fromkeys((*base.dataset.eval_splits, *base.dataset.test_splits)):  # one final evaluation
        metric_state = empty(jnp.arange(len(configs)))
        for batch_inputs in inputs.eval_inputs(split):
            metric_state = eval_batch(state, metric_state, batch_inputs)
        values = jax.device_get(jax.vmap(metric_set.compute)(metric_state))
        for i in range(len(configs)):
            results[i][split] = {k: float(v[i]) for k, v in values.items()}
    return results


def write_point(config, workdir: Path, ds, state, stats, logs_i, results) -> None:
    """One point as a normal run directory (the loop's files and checkpoint layout)."""
    workdir = workdir_lib.prepare(workdir)
    workdir_lib.record_config(workdir, config.to_dict(), defaults=config_lib.base_config().to_dict())
    state = state.replace(opt_state=_loop_opt_state(config, state.params, state.opt_state))
    ckpt = checkpoint.manager(workdir / "checkpoints", config.train.keep_checkpoints)
    try:
        checkpoint.save(ckpt, config.train.num_steps, {"state": state, "train": stats})
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
    inputs, metric_set, state, stats, logs = train(configs, device=device)
    results = evaluate(configs, inputs, metric_set, state)
    for i, (config, workdir) in enumerate(zip(configs, workdirs)):
        one_state, one_stats = jax.tree.map(lambda x: x[i], (state, stats))
        write_point(config, Path(workdir), inputs.ds, one_state, one_stats, [(s, per[i]) for s, per in logs], results[i])
    logging.info("vmapped %d points", len(configs))
    return results
