"""Evaluation reports: PNG plots and a self-contained ``report.md`` in ``WORKDIR/report``.

    python -m jaxclf.report --workdir=DIR

The training loop saves the final evaluation's metric states (sums and score histograms,
``report/states.npz``) and calls :func:`write` at the end; this command redraws the report
from those files and ``metrics.jsonl``. Plots: confusion matrix (counts and row-normalised),
ROC curves (per class, micro and macro average), precision-recall curves, reliability
diagram, training curves.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from jaxclf import metrics  # noqa: E402

def report_metrics(task: str, num_classes: int) -> tuple[str, ...]:
    """The metrics every report shows for a task (a run's own list is added to them): those
    the metric table (``jaxclf.metrics.METRICS``) marks for its reports."""
    return metrics.report_names(task, num_classes)


# ---- saving and loading the final evaluation's states ----

def _flatten(tree, prefix: str) -> dict[str, np.ndarray]:
    if isinstance(tree, dict):
        return {path: v for k, sub in tree.items() for path, v in _flatten(sub, f"{prefix}/{k}").items()}
    return {prefix: np.asarray(tree)}


def save_states(report_dir: Path, states: dict, meta: dict) -> None:
    """``states``: {split: metric state} (nested dicts of arrays, saved as ``split/key/...``;
    exact-mode score buffers are left out); ``meta``: task, num_classes, metric names."""
    report_dir.mkdir(parents=True, exist_ok=True)
    flat = {path: v for split, s in states.items()
            for path, v in _flatten({k: v for k, v in s.items() if k != "scores"}, split).items()}
    np.savez(report_dir / "states.npz", **flat)
    (report_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def load_states(report_dir: Path) -> tuple[dict, dict]:
    meta = json.loads((report_dir / "meta.json").read_text())
    states: dict = {}
    with np.load(report_dir / "states.npz") as data:
        for name in data.files:
            *path, leaf = name.split("/")
            node = states
            for key in path:
                node = node.setdefault(key, {})
            node[leaf] = data[name]
    return states, meta


# ---- plots ----

def _class_names(meta) -> list[str]:
    if meta.get("class_names"):
        return list(meta["class_names"])
    if meta["task"] == "binary":
        return ["negative", "positive"]
    return [str(i) for i in range(meta["num_classes"])]


def plot_confusion(cm: np.ndarray, names: list[str], path: Path, title: str) -> None:
    """Counts and row-normalised (rows: true class, so the diagonal is per-class recall)."""
    rows = cm.sum(1, keepdims=True)
    normalised = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    k = len(names)
    side = min(max(4.5, 0.5 * k + 2.5), 12)  # 1,000 classes must not make a gigapixel canvas
    fig, axes = plt.subplots(1, 2, figsize=(2 * side, min(max(4, 0.45 * k + 2), 11)))
    for ax, values, label, fmt in ((axes[0], cm, "counts", "{:.0f}"), (axes[1], normalised, "row-normalised", "{:.2f}")):
        im = ax.imshow(values, cmap="Blues")
        ax.set_title(f"{title}: {label}")
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        if k <= 50:
            ax.set_xticks(range(k), names, rotation=45 if k > 6 else 0)
            ax.set_yticks(range(k), names)
        if k <= 20:
            threshold = values.max() / 2 if values.max() > 0 else 1
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if values[i, j] > threshold else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
    if k == 2:
        axes[0].set_xlabel("predicted class\n(FP = type I error, FN = type II error)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _roc_points(tpr, fpr):
    """Closes a histogram ROC curve with (0, 0) and (1, 1), ordered by FPR."""
    fpr = np.concatenate([[1.0], np.nan_to_num(fpr, nan=0.0), [0.0]])
    tpr = np.concatenate([[1.0], np.nan_to_num(tpr, nan=0.0), [0.0]])
    return fpr[::-1], tpr[::-1]


def _auc(x, y):
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def plot_roc_pr(hist_pos: np.ndarray, hist_neg: np.ndarray, names: list[str], roc_path: Path, pr_path: Path, title: str) -> None:
    """ROC and PR curves per class, plus micro (pooled) and macro (mean TPR) averages."""
    import jax

    curves = jax.device_get(metrics.ranking.histogram_curves(hist_pos, hist_neg))
    pooled = jax.device_get(metrics.ranking.histogram_curves(hist_pos.sum(0), hist_neg.sum(0)))
    per_class = hist_pos.shape[0] > 1
    fig_roc, ax_roc = plt.subplots(figsize=(6, 5.5))
    fig_pr, ax_pr = plt.subplots(figsize=(6, 5.5))
    grid = np.linspace(0, 1, 201)
    interpolated = []
    for c in range(hist_pos.shape[0]):
        if hist_pos[c].sum() == 0 or hist_neg[c].sum() == 0:
            continue  # undefined for a class absent (or alone) in this split
        fpr, tpr = _roc_points(curves["tpr"][c], curves["fpr"][c])
        interpolated.append(np.interp(grid, fpr, tpr))
        if c >= 20:  # beyond 20 classes only the averages stay readable
            continue
        label = names[c] if per_class else names[-1]
        ax_roc.plot(fpr, tpr, lw=1, alpha=0.7 if per_class else 1, label=f"{label} (AUC {_auc(fpr, tpr):.3f})")
        recall = np.nan_to_num(curves["recall"][c], nan=0.0)
        ax_pr.step(recall, curves["precision"][c], where="post", lw=1, alpha=0.7 if per_class else 1, label=label)
    if per_class:
        fpr, tpr = _roc_points(pooled["tpr"], pooled["fpr"])
        ax_roc.plot(fpr, tpr, "k--", lw=2, label=f"micro-average (AUC {_auc(fpr, tpr):.3f})")
        if interpolated:
            macro = np.mean(interpolated, axis=0)
            ax_roc.plot(grid, macro, "k:", lw=2, label=f"macro-average (AUC {_auc(grid, macro):.3f})")
        ax_pr.step(np.nan_to_num(pooled["recall"], nan=0.0), pooled["precision"], "k--", where="post", lw=2, label="micro-average")
    ax_roc.plot([0, 1], [0, 1], color="grey", lw=0.8, label="chance")
    for ax, xlabel, ylabel, kind in ((ax_roc, "false positive rate (1 - specificity)", "true positive rate (sensitivity)", "ROC"),
                                     (ax_pr, "recall", "precision", "precision-recall")):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}: {kind}")
        ax.legend(fontsize=7, loc="lower right" if ax is ax_roc else "lower left")
    for fig, path in ((fig_roc, roc_path), (fig_pr, pr_path)):
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


def plot_reliability(sums: dict, path: Path, title: str) -> None:
    """``sums``: a Calibration state (count, confidence, outcome per bin)."""
    import jax

    r = jax.device_get(metrics.calibration.calibration_from_sums(sums))
    edges, counts = np.asarray(r["bin_edges"]), np.asarray(r["count"])
    centres = (edges[:-1] + edges[1:]) / 2
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    valid = counts > 0
    ax.bar(centres[valid], np.asarray(r["mean_outcome"])[valid], width=np.diff(edges)[valid], edgecolor="k", alpha=0.7,
           label="fraction correct in each confidence bin")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.plot(np.asarray(r["mean_confidence"])[valid], np.asarray(r["mean_outcome"])[valid], "o-", color="C3", ms=3,
            label="fraction correct at the bin's mean confidence")
    ax.set_ylabel("fraction correct / positive")
    ax.set_title(f"{title}: reliability (ECE {float(r['ece']):.3f})")
    ax.legend(fontsize=8)
    ax_n.bar(centres[valid], counts[valid], width=np.diff(edges)[valid], color="grey")
    ax_n.set_yscale("log")  # most examples sit in the top bin: a linear scale hides the others
    ax_n.set_xlabel("confidence (predicted probability of the predicted class / of the positive class)")
    ax_n.set_ylabel("examples (log)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_training(records: list[dict], path: Path) -> None:
    """Loss and every logged metric against the step, one line per split."""
    keys = [k for k in dict.fromkeys(k for r in records for k in r) if k not in ("step", "split")]
    keys = ["loss"] + [k for k in keys if k != "loss"][:5]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for split in dict.fromkeys(r["split"] for r in records):
            points = [(r["step"], r[key]) for r in records if r["split"] == split and r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="." if len(points) < 30 else None, label=split)
        ax.set_xlabel("step")
        ax.set_title(key)
        if key == "loss" and all(r.get("loss") is None or r["loss"] > 0 for r in records):
            ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the report ----

def _format(value: float) -> str:
    if not np.isfinite(value):
        return "undefined (null in results.json)"
    return f"{value:.0f}" if float(value).is_integer() and abs(value) > 1 else f"{value:.4f}"


# Why a metric can be undefined on a split (a 0/0 its definition leaves open).
UNDEFINED_BECAUSE = {
    "roc_auc": "needs both positive and negative examples of every class; some class has only one kind here",
    "average_precision": "needs positive examples of every class; some class has none here",
    "precision": "no example was predicted as some class (0/0)",
    "recall": "some class has no examples here (0/0)",
    "f1": "precision or recall is 0/0 for some class",
    "mcc": "a row or column of the confusion matrix is empty (0/0)",
    "best_f1_threshold": "no threshold gives a defined F1",
    "best_youden_threshold": "needs both positive and negative examples",
}


def _undefined_note(values: dict) -> list[str]:
    """One line per undefined metric, saying why."""
    out = []
    for k, v in values.items():
        if not np.isfinite(v):
            reason = next((r for name, r in UNDEFINED_BECAUSE.items() if k.startswith(name) or k.endswith(name)),
                          "its definition divides by zero on this split")
            out.append(f"- `{k}` is undefined: {reason}.")
    return out + [""] if out else []


def write(workdir: str | os.PathLike) -> Path:
    """Writes the plots and ``report.md`` from the saved states; returns the report path."""
    workdir = Path(workdir)
    report_dir = workdir / "report"
    states, meta = load_states(report_dir)
    names = _class_names(meta)
    coll = metrics.collection(meta["metric_names"], num_classes=meta["num_classes"], task=meta["task"], **meta.get("options", {}))
    lines = [f"# Report: {workdir.name}", "", f"Task: {meta['task']}, {meta['num_classes']} classes, model `{meta.get('model', '?')}`.", ""]
    for split, state in states.items():
        values = {k: float(v) for k, v in coll.compute(state).items()}
        lines += [f"## {split}", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_format(v)} |" for k, v in values.items()]
        lines.append("")
        lines += _undefined_note(values)
        cm = state.get("confusion", {}).get("confusion")
        if cm is not None and cm.ndim == 2:
            plot_confusion(cm, names, report_dir / f"confusion_{split}.png", split)
            lines.append(f"![confusion matrix]({f'confusion_{split}.png'})")
            if meta["task"] == "binary":
                lines.append(
                    f"\nAt threshold {meta.get('options', {}).get('threshold', 0.5)}: TP {cm[1, 1]:.0f}, "
                    f"FN {cm[1, 0]:.0f} (type II errors), FP {cm[0, 1]:.0f} (type I errors), TN {cm[0, 0]:.0f}.\n"
                )
        if "histograms" in state:
            hist = state["histograms"]
            plot_roc_pr(np.asarray(hist["pos"]), np.asarray(hist["neg"]), names,
                        report_dir / f"roc_{split}.png", report_dir / f"pr_{split}.png", split)
            lines += [f"![ROC](roc_{split}.png) ![precision-recall](pr_{split}.png)", ""]
        if "calibration" in state:
            plot_reliability(state["calibration"], report_dir / f"reliability_{split}.png", split)
            lines += [f"![reliability](reliability_{split}.png)", ""]
    log = workdir / "metrics.jsonl"
    if log.exists():
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if records:
            plot_training(records, report_dir / "training.png")
            lines += ["## Training curves", "", "![training](training.png)", ""]
    path = report_dir / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a run directory written by jaxclf.main")
    args = parser.parse_args(argv)
    if not (Path(args.workdir) / "report" / "states.npz").exists():
        parser.error(f"{args.workdir} has no report/states.npz (the run has not finished its final evaluation)")
    print(write(args.workdir))


if __name__ == "__main__":
    main()
