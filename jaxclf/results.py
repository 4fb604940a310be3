"""What a finished run leaves in its workdir: the final evaluation in results.json, the binary
decision threshold in decision.json, and the report (or a generative model's figures).

Called once training has ended (``jaxclf.run.train_and_evaluate``); a finished run re-run
evaluates its final state again and rewrites these files.
"""

from __future__ import annotations

import jax

from jaxclf import config as config_lib
from jaxclf import models, report
from jaxclf.metrics.threshold import DECISION_RULES
from jaxclf.train import workdir as workdir_lib



def final_states(run, state, eval_states) -> dict:
    """Metric states of the final evaluation: the eval splits' last one (evaluated again when
    the run did not evaluate its final state in this process) and the test splits, once."""
    if not eval_states:
        eval_states = run.evaluate(state)
    final = [s for s in run.config.dataset.test_splits if s not in eval_states]
    return {**eval_states, **run.evaluate(state, final)}


def write(trained) -> dict:
    """Evaluates a trained run (``jaxclf.train.loop.TrainedRun``) where needed and writes its
    result files (process 0); returns the results: ``{split: {metric: value}}``."""
    workdir, run, state, config = trained.workdir, trained.run, trained.state, trained.run.config
    eval_states = final_states(run, state, trained.eval_states)
    results = run.logged(eval_states)
    if jax.process_index() == 0:
        workdir_lib.write_json(workdir / "results.json", results)
        if config.task == "binary":
            workdir_lib.write_json(workdir / "decision.json", decision(config, run.eval_metrics, eval_states))
        if config.eval.report and config.task == "generative":
            draw(workdir, run, state)
        elif config.eval.report:
            write_report(workdir, run, eval_states)
    return results


def decision(config, eval_metrics, eval_states) -> dict:
    """The binary decision threshold stored with the run (``jaxclf.predict`` uses it):
    ``decision.threshold`` ('fixed'), or the one maximising F1 or Youden's J on
    ``decision.split`` (use a validation split, e.g. eval_splits=('train[80%:]', 'test'))."""
    rule = config.decision.rule
    if DECISION_RULES[rule] is None:
        return {"threshold": float(config.decision.threshold), "rule": rule}
    split = config.decision.split or config.dataset.eval_splits[0]
    values = jax.device_get(eval_metrics.compute(eval_states[split]))
    return {"threshold": float(values[DECISION_RULES[rule]]), "rule": rule, "split": split}


def write_report(workdir, run, eval_states) -> None:
    """The evaluation report (figures and report.md) from the final metric states."""
    config, ds = run.config, run.dataset
    meta = {
        "task": config_lib.metrics_task(config.task),
        "num_classes": ds.num_classes,
        "model": config.model.name,
        "metric_names": list(run.eval_metrics.metric_names),
        "options": {"threshold": config.decision.threshold, "num_bins": config.eval.num_bins,
                    "calibration_bins": config.eval.calibration_bins},
        "class_names": ds.class_names,
    }
    report.save_states(workdir / "report", jax.device_get(eval_states), meta)
    report.write(workdir)


def draw(workdir, run, state) -> None:
    """A generative model's figures (e.g. samples, reconstructions) from the first eval split."""
    config = run.config
    split = run.dataset.splits[config.dataset.eval_splits[0]]
    models.figures(config.model.name)(
        workdir / "report", run.model, jax.device_get(state.params), split.inputs, split.labels,
        run.dataset.class_names, seed=config.seed,
    )
