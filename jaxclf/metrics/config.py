"""The metric config: the ``metrics`` names' check, the ``eval`` section (evaluation
statistics, the report) and the ``decision`` section (the binary decision threshold)."""

from __future__ import annotations

from jaxclf.schema import Field, Section

EVAL = Section("evaluation statistics and the report (jaxclf.metrics, jaxclf.report)", {
    "num_bins": Field(200, "score-histogram bins for ROC/PR curves, their AUCs and the best thresholds"),
    "calibration_bins": Field(15, "bins of the calibration error and reliability diagram"),
    "report": Field(True, "write WORKDIR/report (plots + report.md) after the final evaluation"),
})

DECISION = Section("the binary / multi-label decision threshold (stored in WORKDIR/decision.json for jaxclf.predict)", {
    "threshold": Field(0.5, "probability at or above which an example is positive (the metrics use it)"),
    "rule": Field("fixed", "binary runs: fixed (threshold) | best_f1 | best_youden (chosen on decision.split)"),
    "split": Field("", "the eval split the rule chooses on ('': the first of dataset.eval_splits; prefer validation)"),
})


def validate_names(names, task: str) -> None:
    """Raises ValueError naming the valid metrics for an unknown name in ``metrics``."""
    from jaxclf.metrics.collection import collection

    collection(names, num_classes=2, task=task)


def validate_decision(decision, eval_splits) -> None:
    """Raises ValueError for an unknown ``decision.rule`` or a ``decision.split`` not evaluated."""
    from jaxclf.metrics.threshold import DECISION_RULES

    if decision.rule not in DECISION_RULES:
        raise ValueError(f"unknown decision.rule {decision.rule!r}; valid: {', '.join(DECISION_RULES)}")
    if decision.split and decision.split not in eval_splits:
        raise ValueError(f"decision.split {decision.split!r} is not one of dataset.eval_splits {tuple(eval_splits)}")
