"""A run compiled from its config, once: its inputs, model, optimizer and metric sets, and
the jitted functions the loop calls (init, a chunk of train steps, evaluation, log summaries).

The per-step function (:func:`make_step`) takes its random keys as arguments, so the loop
binds the run's keys and a vmapped sweep (``jaxclf.train.vmap_sweep``) maps the very same
function over points that differ in seed and optimizer hyper-parameters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxclf import config as config_lib
from jaxclf import cpu, data, metrics, models, report, transfer
from jaxclf.train import inputs as inputs_lib, mesh as mesh_lib, optim, steps, train_stats


def metric_sets(config, num_classes: int):
    """(training metrics: the config's list; evaluation metrics: the list and the report's).
    Task 'generative': means of the scalars the model family's loss returns."""
    if config.task == "generative":
        means = metrics.means(config.metrics)
        return means, means
    options = dict(threshold=config.decision.threshold, num_bins=config.eval.num_bins, calibration_bins=config.eval.calibration_bins)
    task = config_lib.metrics_task(config.task)  # 'sequence': token-level multiclass metrics
    train_set = metrics.collection(("loss", *config.metrics), num_classes=num_classes, task=task, **options)
    eval_names = tuple(dict.fromkeys(("loss", *config.metrics, *report.report_metrics(task, num_classes))))
    return train_set, metrics.collection(eval_names, num_classes=num_classes, task=task, **options)


def example_batch(config, ds):
    """A one-example batch of zeros that initialises the model (shapes only matter); with
    per-step targets (task 'sequence') also labels, which teacher-forced models read."""
    example = jnp.zeros((1, *ds.input_shape), ds.input_dtype)
    if config.task == "sequence":
        return {"inputs": example, "labels": jnp.zeros((1, *ds.label_shape), jnp.int32)}
    return example


def make_optimizer(config):
    """The configured optax chain, wrapped for transfer learning's frozen or gated paths."""
    t = config.transfer
    return transfer.make_optimizer(optim.optimizer(config.optim, config.train.num_steps), freeze=t.freeze or None,
                                   backbone_lr_factor=t.backbone_lr_factor, unfreeze_after=t.unfreeze_after)


def run_keys(seed: int):
    """(init, step, augmentation) keys: everything random in a run derives from its seed."""
    return jax.random.split(jax.random.key(seed), 3)


def make_steps(config, model, tx, metric_set):
    """The pure (train_step, eval_step) of ``jaxclf.train.steps`` with the config's loss;
    the train step takes its dropout key at each call (``key=``)."""
    family_loss = models.loss(config.model.name, model, **config.loss) if config.task == "generative" else None
    t = config.train
    return steps.make_steps(
        model, tx, metric_set, task=config.task, label_smoothing=t.label_smoothing, class_weights=t.class_weights,
        aux_weight=t.aux_loss_weight, family_loss=family_loss, skip_nonfinite=t.skip_nonfinite,
        layer_norms=t.log_grad_norms,
    )


def empty_train_stats(config, metric_set, params) -> dict:
    """The train statistics before the first step (per-layer gradient norms if logged)."""
    layer_norms = steps.per_layer_norms(params) if config.train.log_grad_norms else None
    return train_stats.empty(metric_set, jax.tree.map(jnp.zeros_like, layer_norms))


def make_step(config, model, tx, metric_set, inputs) -> Callable:
    """``step(keys, shared, carry, per_step) -> (carry, None)``, a scan body: one train step on
    the batch ``inputs`` gives, for ``carry = (state, train statistics)``; ``keys`` are the
    run's (step, augmentation) keys."""
    train_step, _ = make_steps(config, model, tx, metric_set)

    def step(keys, shared, carry, per_step):
        step_key, aug_key = keys
        state, stats = carry
        batch = inputs.train_batch(shared, per_step, state.step)
        if inputs.augmentations:
            batch = data.augment_batch(batch, jax.random.fold_in(aug_key, state.step), inputs.augmentations, config.dataset)
        batch = jax.lax.with_sharding_constraint(batch, inputs.batch_sharding)
        new_state, step_stats = train_step(state, batch, key=step_key)
        return (new_state, train_stats.add(stats, step_stats, state.step, metric_set)), None

    return step


@dataclasses.dataclass(frozen=True)
class CompiledRun:
    """Everything a run builds once from its config; the loop only calls these."""

    config: Any
    inputs: inputs_lib.InMemoryInputs | inputs_lib.StreamedInputs
    model: Any
    train_metrics: Any  # the config's list
    eval_metrics: Any  # the config's list and the report's
    init: Callable  # () -> (state, train statistics)
    train: Callable  # (state, stats, chunk inputs, num_steps) -> (state, stats)
    eval_batch: Callable  # (state, metric state, eval inputs) -> metric state
    empty_eval: Callable  # () -> metric state
    summarize: Callable  # stats -> the window's summary (on the device)
    reset: Callable  # stats -> stats

    @property
    def dataset(self):
        return self.inputs.ds

    def evaluate(self, state, splits=None) -> dict:
        """{split: merged metric state} over every example of each split (default: the
        config's eval splits). A streamed split's workers stop as soon as it ends or fails."""
        out = {}
        for split in self.config.dataset.eval_splits if splits is None else splits:
            metric_state = self.empty_eval()
            with contextlib.closing(self.inputs.eval_inputs(split)) as batches:
                for batch_inputs in batches:
                    metric_state = self.eval_batch(state, metric_state, batch_inputs)
            out[split] = metric_state
        return out

    def logged(self, states) -> dict[str, dict[str, float]]:
        """The scalars a run logs per split: its metrics (binary: + best thresholds)."""
        keep = set(self.train_metrics.metric_names)
        if self.config.task == "binary":
            keep |= {"best_f1_threshold", "best_youden_threshold"}
        out = {}
        for split, metric_state in states.items():
            values = jax.device_get(self.eval_metrics.compute(metric_state))
            out[split] = {k: float(v) for k, v in values.items() if k in keep}
        return out


def compile_run(config, mesh) -> CompiledRun:
    """Loads the data, builds the model, optimizer and metrics, and jits the run's functions
    for ``mesh`` (compilation itself happens at their first call)."""
    inputs = inputs_lib.for_config(config, mesh)
    ds = inputs.ds
    config_lib.check_unusual(config, ds.num_classes, inputs.num_train)
    model = models.from_config(config, ds.num_classes)
    if mesh.devices.flat[0].platform == "cpu":
        model = cpu.tune(model)
    if config.transfer.freeze_batch_stats:
        model = transfer.freeze_batch_norm(model)
    tx = make_optimizer(config)
    train_metrics, eval_metrics = metric_sets(config, ds.num_classes)
    init_key, step_key, aug_key = run_keys(config.seed)
    step = functools.partial(make_step(config, model, tx, train_metrics, inputs), (step_key, aug_key))
    repl, sharded = mesh_lib.replicated(mesh), mesh_lib.batch_sharded(mesh)
    example = example_batch(config, ds)

    @functools.partial(jax.jit, out_shardings=repl)
    def init():
        try:
            state = steps.init_state(model, tx, example, init_key)
        except Exception as e:  # flax raises shape errors from deep inside the model
            raise ValueError(
                f"model {config.model.name!r} cannot take inputs of shape {ds.input_shape} "
                f"from dataset {ds.name!r}: {e}"
            ) from e
        return state, empty_train_stats(config, train_metrics, state.params)

    @functools.partial(jax.jit, donate_argnums=(0, 1), static_argnames="num_steps")
    @cpu.optimize
    def train(state, stats, chunk, num_steps: int):
        """``num_steps`` steps in one call; ``chunk = (shared, per_step)`` from ``inputs.chunks``.
        A lax.scan (``train.scan_unroll`` steps unrolled per iteration), or the step itself
        when K = 1, with no loop around it. (Decided by K, not by each chunk's length: the two
        compile to float32-rounding-different programs, and a resumed run must repeat an
        uninterrupted one bitwise.)"""
        shared, per_step = chunk
        body = functools.partial(step, shared)
        if config.train.steps_per_call == 1:
            return body((state, stats), jax.tree.map(lambda a: a[0], per_step))[0]
        return jax.lax.scan(body, (state, stats), per_step, length=num_steps, unroll=config.train.scan_unroll)[0]

    _, eval_step = make_steps(config, model, tx, eval_metrics)

    @functools.partial(jax.jit, out_shardings=repl)
    @cpu.optimize
    def eval_batch(state, metric_state, batch_inputs):
        batch = jax.lax.with_sharding_constraint(inputs.eval_batch(batch_inputs), sharded)
        return eval_metrics.merge(metric_state, eval_step(state, batch))

    return CompiledRun(
        config, inputs, model, train_metrics, eval_metrics, init, train, eval_batch,
        empty_eval=jax.jit(eval_metrics.empty, out_shardings=repl),
        summarize=jax.jit(lambda s: train_stats.summarize(s, train_metrics), out_shardings=repl),
        reset=jax.jit(lambda s: train_stats.reset(s, train_metrics), out_shardings=repl),
    )
