"""Attention vs sequence length (issue 22): an encoder-decoder without attention must carry
the whole source in its final state, and fails as the source grows; with attention it holds.

    python experiments/attention_length/run.py --workdir=runs/attention_length --out=experiments/attention_length [--parallel=1]

1. Trains ``configs/sweep_attention_length.py`` through ``jaxclf.sweep``: reversing T = 5 ..
   100 symbols (``token_order/reverse_t{T}``), Luong attention or none, everything else equal
   (each point a ``jaxclf.main`` run in ``WORKDIR/<point>``; finished points are reused).
2. Evaluates each run's final parameters on the test split (500 sequences): the
   teacher-forced token accuracy (``results.json``) and, decoding greedily from the start
   token (``Seq2Seq.sample``), the token accuracy and the sequence accuracy (every symbol
   and the end marker right).
3. Writes into OUT: ``results.md`` and ``results.json`` (the table), ``attention_length.png``
   (accuracy vs T) and ``attention_weights.png`` (the attention weights of test sequences).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = "configs/sweep_attention_length.py"
HEATMAP_LENGTHS = (10, 20, 40)  # one test sequence each, with attention
CHANCE = 1 / 8  # a random symbol


def run_sweep(workdir: Path, arg: str | None, parallel: int) -> None:
    """The sweep's unfinished points, each a ``jaxclf.main`` run (datasets prepared first, so
    that parallel points do not race to build the same one)."""
    from jaxclf import config as config_lib, data, sweep

    config_arg = CONFIG + (f":{arg}" if arg else "")
    config = config_lib.load(str(REPO / CONFIG), arg)
    for point in sweep.load_sweep(str(REPO / CONFIG), arg).points:
        data.prepare(sweep.apply_point(config, point).dataset)
    cmd = [sys.executable, "-m", "jaxclf.sweep", f"--config={config_arg}", f"--workdir={workdir}", f"--parallel={parallel}"]
    subprocess.run(cmd, cwd=REPO, check=True)


def load_run(run_dir: Path):
    """(config, model, params, test split) of a finished run."""
    from jaxclf import data, models, predict
    from jaxclf.train import checkpoint

    config = predict.read_config(run_dir)
    ds = data.load(config.dataset)
    params, _ = checkpoint.load_params(run_dir)
    return config, models.from_config(config, ds.num_classes), params, ds.splits["test"]


def greedy_accuracy(model, params, split) -> tuple[float, float]:
    """(token accuracy, sequence accuracy) of greedy decoding, ``len(targets)`` tokens."""
    import jax
    import numpy as np

    decode = jax.jit(lambda x: model.sample({"params": params}, jax.random.key(0), x, max_len=split.labels.shape[1])[0])
    tokens = np.concatenate([np.asarray(decode(split.inputs[i:i + 250])) for i in range(0, split.num_examples, 250)])
    right = tokens == split.labels
    return float(right.mean()), float(right.all(axis=1).mean())


def attention_weights(model, params, x, y):
    """The teacher-forced attention weights (T_out, T_in) of one sequence."""
    import numpy as np

    _, sown = model.apply({"params": params}, x[None], targets=y[None], train=False, mutable=["intermediates"])
    return np.asarray(sown["intermediates"]["attention"][0][0])


def evaluate(workdir: Path, arg: str | None) -> tuple[list[dict], dict]:
    """The table's rows (by T, then attention) and the heatmaps' data {T: (weights, x, y)}."""
    from jaxclf import sweep

    rows, maps = [], {}
    for point in sweep.load_sweep(str(REPO / CONFIG), arg).points:
        run_dir = workdir / sweep.point_name(point)
        run_config, model, params, test = load_run(run_dir)
        length = test.labels.shape[1] - 1
        tokens, sequences = greedy_accuracy(model, params, test)
        forced = json.loads((run_dir / "results.json").read_text())["test"]["accuracy"]
        rows.append({"T": length, "attention": run_config.model.attention, "teacher_forced_token_accuracy": forced,
                     "greedy_token_accuracy": tokens, "greedy_sequence_accuracy": sequences,
                     "steps": run_config.train.num_steps})
        if run_config.model.attention != "none" and length in HEATMAP_LENGTHS:
            x, y = test.inputs[0], test.labels[0]
            maps[length] = (attention_weights(model, params, x, y), x.argmax(-1), y)
    return sorted(rows, key=lambda r: (r["T"], r["attention"])), maps


def markdown(rows: list[dict]) -> str:
    lines = ["| T | attention | token acc. (teacher-forced) | token acc. (greedy) | sequence acc. (greedy) |",
             "|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['T']} | {r['attention']} | {r['teacher_forced_token_accuracy']:.3f} | "
                     f"{r['greedy_token_accuracy']:.3f} | {r['greedy_sequence_accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


def plot_accuracy(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    for attention, color in (("luong", "tab:blue"), ("none", "tab:red")):
        mine = [r for r in rows if r["attention"] == attention]
        ts = [r["T"] for r in mine]
        label = "attention" if attention == "luong" else "no attention"
        ax.plot(ts, [r["teacher_forced_token_accuracy"] for r in mine], "^:", color=color, alpha=0.6,
                label=f"{label}: tokens, teacher-forced")
        ax.plot(ts, [r["greedy_token_accuracy"] for r in mine], "o-", color=color, label=f"{label}: tokens, greedy")
        ax.plot(ts, [r["greedy_sequence_accuracy"] for r in mine], "s--", color=color, label=f"{label}: sequences, greedy")
    ax.axhline(CHANCE, color="gray", lw=0.8, ls=":", label="chance (one symbol)")
    ax.set(xlabel="T (symbols to reverse)", ylabel="test accuracy", ylim=(-0.02, 1.02))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.set_title("Encoder-decoder reversing T symbols", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_attention(maps: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from jaxclf.data.builders.sequence_tasks import TOKEN_NAMES

    fig, axes = plt.subplots(1, len(maps), figsize=(4 * len(maps), 4), squeeze=False)
    for ax, (length, (weights, x, y)) in zip(axes[0], sorted(maps.items())):
        ax.imshow(weights, cmap="viridis", vmin=0, vmax=1)
        step = 1 if length <= 20 else 5
        ax.set_xticks(range(0, len(x), step), [TOKEN_NAMES[int(t)] for t in x[::step]], fontsize=6)
        ax.set_yticks(range(0, len(y), step), [TOKEN_NAMES[int(t)] for t in y[::step]], fontsize=6)
        ax.set(xlabel="source step (symbol)", ylabel="output step (symbol)", title=f"T = {length}")
    fig.suptitle("Attention weights, reversal (teacher-forced, a test sequence each)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, type=Path, help="runs: one sub-directory per point")
    parser.add_argument("--out", required=True, type=Path, help="where the table and the figures go")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once")
    parser.add_argument("--smoke", action="store_true", help="T = 5 only, a few steps (the tests)")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    arg = "smoke" if args.smoke else None
    workdir = args.workdir.absolute()
    run_sweep(workdir, arg, args.parallel)
    rows, maps = evaluate(workdir, arg)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "results.md").write_text(markdown(rows))
    plot_accuracy(rows, args.out / "attention_length.png")
    if maps:
        plot_attention(maps, args.out / "attention_weights.png")
    print(markdown(rows))


if __name__ == "__main__":
    main()
