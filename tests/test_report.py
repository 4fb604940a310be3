"""Binary classification end to end: metrics in training match scikit-learn, and the report."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from jaxclf import config as config_lib
from jaxclf import data, models, report
from jaxclf.run import train_and_evaluate
from jaxclf.train import checkpoint
from conftest import REPO


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory, tfds_dir):
    c = config_lib.load(os.path.join(REPO, "configs", "linear_breast_cancer.py"), "smoke")
    c.train.num_steps, c.train.log_every, c.train.eval_every = 20, 10, 20
    c.dataset.data_dir = tfds_dir
    c.train.progress = False
    workdir = tmp_path_factory.mktemp("binary")
    results = train_and_evaluate(c, workdir, devices=jax.devices()[:1])
    return c, workdir, results


def test_breast_cancer_builder():
    from jaxclf.data.builders.tabular import BreastCancer

    x, y = BreastCancer.arrays()
    assert x.shape == (569, 30) and y.sum() == 212  # 212 malignant = positive


def test_binary_metrics_match_sklearn(binary_run):
    c, workdir, results = binary_run
    ds = data.load(c.dataset)
    test = ds.splits["test"]
    model = models.from_config(c, ds.num_classes)
    _, item = checkpoint.load(workdir / "checkpoints")
    logits = np.asarray(model.apply({"params": item["state"]["params"]}, jnp.asarray(test.inputs), train=False))[:, 0]
    prob = 1 / (1 + np.exp(-logits))
    pred = (prob >= c.decision.threshold).astype(int)
    got = results["test"]
    tn, fp, fn, tp = skm.confusion_matrix(test.labels, pred).ravel()
    assert (got["tp"], got["fp"], got["fn"], got["tn"]) == (tp, fp, fn, tn)
    assert got["precision"] == pytest.approx(skm.precision_score(test.labels, pred, zero_division=0), abs=1e-6)
    assert got["recall"] == pytest.approx(skm.recall_score(test.labels, pred), abs=1e-6)
    assert got["specificity"] == pytest.approx(tn / (tn + fp), abs=1e-6)
    assert got["npv"] == pytest.approx(tn / (tn + fn), abs=1e-6)
    assert got["f1"] == pytest.approx(skm.f1_score(test.labels, pred), abs=1e-6)
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(test.labels, pred), abs=1e-6)
    # binned ROC AUC (200 bins): within the histogram's bound of the exact value
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(test.labels, prob), abs=0.02)
    assert 0 <= got["best_f1_threshold"] <= 1 and 0 <= got["best_youden_threshold"] <= 1


def test_report_files_and_command(binary_run):
    _, workdir, results = binary_run
    out = workdir / "report"
    expected = {"report.md", "confusion_test.png", "roc_test.png", "pr_test.png", "reliability_test.png", "training.png"}
    assert expected <= set(os.listdir(out))
    text = (out / "report.md").read_text()
    assert "type II errors" in text and "| roc_auc |" in text
    for name in expected - {"report.md"}:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (out / "roc_test.png").unlink()
    report.main([f"--workdir={workdir}"])  # the command redraws it from the saved states
    assert (out / "roc_test.png").exists()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["class_names"] == ["benign", "malignant"]


def test_report_command_without_states_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit):
        report.main([f"--workdir={tmp_path}"])


def test_decision_threshold_chosen_on_validation_split_round_trips(tmp_path, tfds_dir):
    from jaxclf import predict

    c = config_lib.load(os.path.join(REPO, "configs", "linear_breast_cancer.py"), "smoke")
    c.dataset.data_dir = tfds_dir
    c.dataset.train_split, c.dataset.eval_splits = "train[:80%]", ("train[80%:]", "test")
    c.decision.rule, c.decision.split = "best_f1", "train[80%:]"
    c.train.progress = False
    results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    decision = json.loads((tmp_path / "decision.json").read_text())
    assert decision == {"threshold": pytest.approx(results["train[80%:]"]["best_f1_threshold"]), "rule": "best_f1", "split": "train[80%:]"}
    assert predict.decision_threshold(tmp_path, c) == pytest.approx(decision["threshold"])


def test_unknown_threshold_rule_lists_choices():
    c = config_lib.load(os.path.join(REPO, "configs", "linear_breast_cancer.py"))
    c.decision.rule = "best_acc"
    with pytest.raises(ValueError, match="best_youden"):
        config_lib.validate(c)


def _strict_loads(text):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_undefined_metrics_are_null_in_strict_json_and_explained(smoke_config, tmp_path):
    """One class (allowed explicitly): ROC AUC is 0/0. results.json and metrics.jsonl stay
    strict JSON (null, not NaN), and the report says why the metric is undefined."""
    c = smoke_config
    c.dataset.keep_classes = (3,)
    c.train.allow_unusual = True
    c.metrics = ("accuracy", "roc_auc")
    c.eval.report = True
    results = train_and_evaluate(c, tmp_path, devices=jax.devices()[:1])
    assert np.isnan(results["test"]["roc_auc"]) and results["test"]["accuracy"] == 1.0
    stored = _strict_loads((tmp_path / "results.json").read_text())
    assert stored["test"]["roc_auc"] is None and stored["test"]["accuracy"] == 1.0
    lines = [_strict_loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r["split"] == "validation" and r["roc_auc"] is None for r in lines)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "| roc_auc | undefined (null in results.json) |" in text
    assert "`roc_auc` is undefined: needs both positive and negative examples" in text


def test_strict_json_values():
    from jaxclf.train.workdir import strict

    assert strict({"a": (1.0, float("nan")), "b": {"c": float("-inf"), "d": "x"}}) == {"a": [1.0, None], "b": {"c": None, "d": "x"}}
