"""Exploding and vanishing gradients made visible (issue 5, item 3), on ``first_symbol``.

    python experiments/gradients/run.py [--root runs/gradients]

1. Accuracy vs dependency length: vanilla RNN, LSTM and GRU (64 units, Adam) at T = 10 ..
   200, with and without global-norm clipping.
2. Explosion: SGD with momentum (lr 0.1), where the vanilla RNN's gradient norm spikes;
   with and without clipping, 2 seeds for the RNN.
3. At T = 100: 6,000 steps instead of 2,000, and 40,000 training sequences instead of
   4,000 (memorising the training set is a short-range shortcut; see README.md).
4. Vanishing: the median of ||dL/dh_t|| / ||dL/dh_{T-1}|| over 256 test sequences, at
   initialisation and after training (``state_grads.py``).

Every run is ``python -m jaxclf.main --config=configs/gradients_first_symbol.py:ARG
--workdir=ROOT/NAME --config.seed=SEED``, trained here in-process by the same
``train_and_evaluate``. Finished runs (``results.json``, or ``diverged.json`` for a run
stopped by a non-finite loss or gradient) are reused; interrupted ones resume. Writes
results.md, accuracy_vs_length.png, grad_norms.png and state_gradients.png beside this file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONFIG = "configs/gradients_first_symbol.py"
CELLS = ("rnn", "lstm", "gru")
LENGTHS = (10, 25, 50, 100, 200)
CLIPS = ("noclip", "clip")
GRID = [(f"{cell},{t},{clip}", 0) for t in LENGTHS for cell in CELLS for clip in CLIPS]
# The gate whose initial bias decides how much state a gated cell keeps per step: cell ->
# (config token prefix, gate, biases tried, the library's default; model.cell_options).
GATES = {"lstm": ("fb", "forget", (1, 3, 5), 1), "gru": ("ub", "update", (0, -3, -5), 0)}


def _gate_arg(cell: str, length: int, bias: int) -> str:
    """The ``cell`` run at ``length`` with its gate bias at ``bias`` (the default: the grid's run)."""
    token, _, _, default = GATES[cell]
    return f"{cell},{length},noclip" + ("" if bias == default else f",{token}{bias}")


SGD_LENGTHS = (25, 50, 100)
SGD = [(f"rnn,{t},{clip},sgd", seed) for t in SGD_LENGTHS for clip in CLIPS for seed in (0, 1)]
SGD += [(f"{cell},50,{clip},sgd", 0) for cell in ("lstm", "gru") for clip in CLIPS]
# T = 100, where the gated cells failed in 2,000 steps: 3x longer, then also 10x more data.
EXTRA = [(f"{cell},100,noclip,long", 0) for cell in ("lstm", "gru")]
EXTRA += [(f"{cell},100,noclip,long,large", 0) for cell in CELLS] + [("rnn,100,noclip,long,large", 1)]
SHOW_SGD_LENGTHS = (25, 100)  # the explosion panels of grad_norms.png
SHOW_ADAM_LENGTH = 100
PROFILE_LENGTHS = (25, 100, 200)
PROFILE_EXAMPLES = 256
GATE_BIAS_LENGTH = 100  # of the state-gradient panels at initialisation
RECURRENT_SCALES = (0.5, 0.9, 1, 1.1, 1.5, 2)  # the vanilla cell's recurrent_scale (model.cell_options), profiles only
GATE_LENGTHS = (100, 200)
GATE_SEEDS = (0, 1, 2)
GATE = [(_gate_arg(cell, t, b), seed) for cell, (_, _, biases, _) in GATES.items() for t in GATE_LENGTHS
        for b in biases for seed in GATE_SEEDS]
COLORS = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}

sys.path.insert(0, str(HERE))


def workdir(root: Path, arg: str, seed: int) -> Path:
    return root / f"{arg.replace(',', '_')}_s{seed}"


def _shown(path: Path) -> str:
    """A path as the commands print it: relative to the repository when inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def command(root: Path, arg: str, seed: int) -> str:
    """The command line equivalent of one run (from the repository root)."""
    return f"python -m jaxclf.main --config={CONFIG}:{arg} --workdir={_shown(workdir(root, arg, seed))} --config.seed={seed}"


def load_config(arg: str, seed: int):
    from jaxclf import config as config_lib

    c = config_lib.load(str(REPO / CONFIG), arg)
    c.seed = seed
    c.train.progress = False
    return c


def run(root: Path, arg: str, seed: int) -> dict:
    """Trains (or reuses) one run; returns its test accuracy, or how it diverged."""
    from jaxclf.run import train_and_evaluate
    wd = workdir(root, arg, seed)
    done, diverged = wd / "results.json", wd / "diverged.json"
    if not done.exists() and not diverged.exists():
        print(f"training {command(root, arg, seed)}", flush=True)
        try:
            train_and_evaluate(load_config(arg, seed), wd)
        except FloatingPointError as e:
            diverged.write_text(json.dumps({"error": str(e)}))
    if diverged.exists():
        return {"accuracy": math.nan, "diverged": json.loads(diverged.read_text())["error"]}
    return {"accuracy": json.loads(done.read_text())["test"]["accuracy"], "diverged": None}


def train_log(root: Path, arg: str, seed: int) -> list[dict]:
    """The train rows of a run's metrics.jsonl (the last write of each step wins)."""
    rows = {}
    for line in (workdir(root, arg, seed) / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["split"] == "train":
            rows[row["step"]] = row
    return [rows[s] for s in sorted(rows)]


def _pct(acc: float) -> str:
    return "diverged" if math.isnan(acc) else f"{100 * acc:.1f}"


def grid_table(root: Path, results: dict) -> list[str]:
    head = "| cell | clipping | " + " | ".join(f"T={t}" for t in LENGTHS) + " | config argument |"
    lines = [head, "|---|---|" + "---:|" * len(LENGTHS) + "---|"]
    for cell in CELLS:
        for clip in CLIPS:
            accs = [_pct(results[(f"{cell},{t},{clip}", 0)]["accuracy"]) for t in LENGTHS]
            label = "global norm 1.0" if clip == "clip" else "none"
            lines.append(f"| {cell} | {label} | " + " | ".join(accs) + f" | `:{cell},T,{clip}` |")
    return lines


def sgd_table(root: Path, results: dict) -> list[str]:
    lines = [
        "| run (config argument) | seed | test accuracy % | max / median logged grad norm | max train loss | command |",
        "|---|---:|---:|---|---:|---|",
    ]
    for arg, seed in SGD:
        log = train_log(root, arg, seed)
        norms = sorted(r["grad_norm"] for r in log)
        loss = max(r["loss"] for r in log)
        res = results[(arg, seed)]
        acc = _pct(res["accuracy"]) if not res["diverged"] else f"diverged: {res['diverged'][:60]}"
        lines.append(
            f"| `:{arg}` | {seed} | {acc} | {norms[-1]:.3g} / {norms[len(norms) // 2]:.3g} | {loss:.3g} | "
            f"`{command(root, arg, seed)}` |"
        )
    return lines


def extra_table(root: Path, results: dict) -> list[str]:
    lines = [
        "| run (config argument) | seed | test accuracy % at steps " + ", ".join(map(str, range(1000, 6001, 1000))) + " | final train loss | command |",
        "|---|---:|---|---:|---|",
    ]
    for arg, seed in EXTRA:
        rows = [json.loads(line) for line in (workdir(root, arg, seed) / "metrics.jsonl").read_text().splitlines()]
        test = {r["step"]: r["accuracy"] for r in rows if r["split"] == "test"}
        curve = ", ".join(_pct(test[s]) for s in range(1000, 6001, 1000) if s in test)
        lines.append(f"| `:{arg}` | {seed} | {curve} | {train_log(root, arg, seed)[-1]['loss']:.3g} | `{command(root, arg, seed)}` |")
    return lines


def gate_table(results: dict, cell: str) -> list[str]:
    """Test accuracy of ``cell`` (Adam, no clipping, 2,000 steps) per initial gate bias."""
    _, gate, biases, default = GATES[cell]
    head = f"| {gate}-gate bias at init | " + " | ".join(f"T={t}, seeds {'/'.join(map(str, GATE_SEEDS))}" for t in GATE_LENGTHS) + " |"
    lines = [head, "|---|" + "---|" * len(GATE_LENGTHS)]
    for b in biases:
        cells = [" / ".join(_pct(results[(_gate_arg(cell, t, b), s)]["accuracy"]) for s in GATE_SEEDS) for t in GATE_LENGTHS]
        lines.append(f"| {b}{' (default)' if b == default else ''} | " + " | ".join(cells) + " |")
    return lines


def _jitter(lengths, cell: str) -> list[float]:
    """Lengths nudged apart per cell so that lines at equal accuracy stay visible."""
    return [t * 1.04 ** (CELLS.index(cell) - 1) for t in lengths]


def plot_accuracy(results: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), sharey=True)
    ax = axes[0]
    for cell in CELLS:
        for clip, style in zip(CLIPS, ("-", "--")):
            accs = [results[(f"{cell},{t},{clip}", 0)]["accuracy"] for t in LENGTHS]
            ax.plot(_jitter(LENGTHS, cell), accs, style, marker="o", color=COLORS[cell], label=f"{cell}, {clip}")
        acc = results[(f"{cell},100,noclip,long,large", 0)]["accuracy"]
        ax.plot([100], [acc], "*", ms=13, color=COLORS[cell], label=f"{cell}: 10x data, 3x steps")
    ax.set_title("Adam, lr 3e-3, 2,000 steps (seed 0)")
    ax = axes[1]
    for clip, style in zip(CLIPS, ("-", "--")):
        for seed, marker in ((0, "o"), (1, "s")):
            accs = [results[(f"rnn,{t},{clip},sgd", seed)]["accuracy"] for t in SGD_LENGTHS]
            ax.plot(SGD_LENGTHS, accs, style, marker=marker, color=COLORS["rnn"], label=f"rnn, {clip}, seed {seed}")
    for cell in ("lstm", "gru"):
        for clip, marker in zip(CLIPS, ("o", "x")):
            ax.plot(_jitter([50], cell), [results[(f"{cell},50,{clip},sgd", 0)]["accuracy"]], marker, ms=8, color=COLORS[cell], label=f"{cell}, {clip}")
    ax.set_title("SGD momentum 0.9, lr 0.1, 2,000 steps")
    for ax, ticks in zip(axes, (LENGTHS, SGD_LENGTHS)):
        ax.axhline(0.25, color="gray", lw=0.8, ls=":", label="chance")
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xticks([], minor=True)
        ax.set_xlabel("sequence length T (dependency length T - 1)")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("test accuracy")
    fig.suptitle("Remember the first symbol (4 classes), 64-unit recurrent classifiers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _floor(values, floor=1e-7):
    """Log axes cannot show 0: an exactly-zero gradient norm is drawn at ``floor``."""
    return [max(v, floor) for v in values]


def plot_grad_norms(root: Path, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(16, 7.5), sharex=True)
    for col, length in enumerate(SHOW_SGD_LENGTHS):
        for clip, color in zip(CLIPS, ("tab:red", "tab:blue")):
            log = train_log(root, f"rnn,{length},{clip},sgd", 0)
            steps = [r["step"] for r in log]
            axes[0, col].plot(steps, _floor([r["grad_norm"] for r in log]), color=color, lw=1.1, label=f"{clip}: global")
            axes[0, col].plot(steps, _floor([r["grad_norm/encoder/layer_0"] for r in log]), color=color, lw=0.8, ls="--", label=f"{clip}: encoder/layer_0")
            axes[1, col].plot(steps, [r["loss"] for r in log], color=color, lw=1, label=clip)
        axes[0, col].set_title(f"vanilla RNN, T={length}, SGD lr 0.1 (seed 0): gradient norm")
        axes[1, col].set_title(f"vanilla RNN, T={length}, SGD lr 0.1 (seed 0): training loss")
    for cell in CELLS:
        for clip, style in zip(CLIPS, ("-", "--")):
            log = train_log(root, f"{cell},{SHOW_ADAM_LENGTH},{clip}", 0)
            steps = [r["step"] for r in log]
            axes[0, 2].plot(steps, [r["grad_norm/encoder/layer_0"] for r in log], style, color=COLORS[cell], lw=0.9, label=f"{cell}, {clip}")
            axes[1, 2].plot(steps, [r["loss"] for r in log], style, color=COLORS[cell], lw=0.9, label=f"{cell}, {clip}")
    axes[0, 2].set_title(f"Adam, T={SHOW_ADAM_LENGTH}: encoder gradient norm")
    axes[1, 2].set_title(f"Adam, T={SHOW_ADAM_LENGTH}: training loss (test: chance)")
    for ax in axes[0]:
        ax.set_yscale("log")
        ax.set_ylabel("gradient norm before clipping (0 drawn at 1e-7)")
    for ax in axes[1]:
        ax.axhline(math.log(4), color="gray", lw=0.8, ls=":", label="chance (ln 4)")
        ax.set_xlabel("step (each point: mean over 10 steps)")
        ax.set_ylabel("training loss")
    for ax in axes.flat:
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def init_params(config, num_classes: int, example):
    """The parameters the loop starts from (its init key is the first of three from the seed)."""
    import jax

    from jaxclf import models
    init_key = jax.random.split(jax.random.key(config.seed), 3)[0]
    variables = models.from_config(config, num_classes).init({"params": init_key, "dropout": init_key}, example, train=False)
    return variables["params"]


def profiles(root: Path, length: int) -> dict:
    """{(cell, 'init' | 'trained'): relative dL/dh_t profile} for the Adam, noclip runs."""
    import numpy as np

    from jaxclf import data, transfer
    from state_grads import relative_profile

    out = {}
    for cell in CELLS:
        arg = f"{cell},{length},noclip"
        c = load_config(arg, 0)
        ds = data.load(c.dataset)
        test = ds.splits["test"]
        x, y = test.inputs[:PROFILE_EXAMPLES], test.labels[:PROFILE_EXAMPLES]
        trained, _ = transfer.load_params(workdir(root, arg, 0))
        for when, params in (("init", init_params(c, ds.num_classes, x[:1])), ("trained", trained)):
            out[(cell, when)] = np.asarray(relative_profile(cell, c.model.hidden, ds.num_classes, params, x, y))
    return out


def init_profiles(cell: str, args: dict) -> dict:
    """{key: relative dL/dh_t profile} of ``cell`` at initialisation, for the config argument
    ``args[key]`` (seed 0: the parameters that run starts from)."""
    import numpy as np

    from jaxclf import data
    from state_grads import relative_profile

    out = {}
    for key, arg in args.items():
        c = load_config(arg, 0)
        ds = data.load(c.dataset)
        x, y = ds.splits["test"].inputs[:PROFILE_EXAMPLES], ds.splits["test"].labels[:PROFILE_EXAMPLES]
        params = init_params(c, ds.num_classes, x[:1])
        out[key] = np.asarray(relative_profile(cell, c.model.hidden, ds.num_classes, params, x, y))
    return out


def plot_state_gradients(root: Path, path: Path) -> dict:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(PROFILE_LENGTHS) + 2, figsize=(5 * len(PROFILE_LENGTHS) + 10, 4.2))
    summary = {}
    for ax, length in zip(axes, PROFILE_LENGTHS):
        for (cell, when), prof in profiles(root, length).items():
            summary[(length, cell, when)] = float(prof[0])
            ax.plot(np.arange(length), np.maximum(prof, 1e-30), "-" if when == "trained" else "--", color=COLORS[cell], label=f"{cell}, {when}")
        ax.set_title(f"T = {length}: at initialisation and after training")
    ax = axes[-2]
    for cell, (_, gate, biases, default) in GATES.items():
        args = {b: _gate_arg(cell, GATE_BIAS_LENGTH, b) for b in biases}
        for i, (b, prof) in enumerate(init_profiles(cell, args).items()):
            summary[(GATE_BIAS_LENGTH, f"{cell} {gate} bias {b:g}", "init")] = float(prof[0])
            ax.plot(np.arange(GATE_BIAS_LENGTH), np.maximum(prof, 1e-30), lw=1 + i, color=COLORS[cell], alpha=0.5 + i / 4,
                    label=f"{cell}, {gate} bias {b:g}" + (" (library default)" if b == default else ""))
    ax.set_title(f"At initialisation, T = {GATE_BIAS_LENGTH}: gate biases")
    ax = axes[-1]
    args = {s: f"rnn,{GATE_BIAS_LENGTH},noclip" + ("" if s == 1 else f",rs{s:g}") for s in RECURRENT_SCALES}
    for i, (scale, prof) in enumerate(init_profiles("rnn", args).items()):
        summary[(GATE_BIAS_LENGTH, f"rnn recurrent scale {scale:g}", "init")] = float(prof[0])
        ax.plot(np.arange(GATE_BIAS_LENGTH), np.maximum(prof, 1e-30), color=plt.cm.Reds(0.35 + 0.65 * i / (len(args) - 1)),
                label=f"W_h = {scale:g} x orthogonal" + (" (library default)" if scale == 1 else ""))
    ax.set_title(f"Vanilla RNN at initialisation, T = {GATE_BIAS_LENGTH}: scale of W_h")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("step t (the loss reads the state at t = T-1)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("median ||dL/dh_t|| / ||dL/dh_{T-1}||")
    fig.suptitle("How much the final loss feels the state at step t (256 test sequences; LSTM: h_t and c_t together; "
                 "an underflow to 0 is drawn at 1e-30)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=str(REPO / "runs" / "gradients"))
    args = parser.parse_args()
    root = Path(args.root)
    import matplotlib

    matplotlib.use("Agg")
    results = {(arg, seed): run(root, arg, seed) for arg, seed in SGD + GRID + EXTRA + GATE}
    plot_accuracy(results, HERE / "accuracy_vs_length.png")
    plot_grad_norms(root, HERE / "grad_norms.png")
    summary = plot_state_gradients(root, HERE / "state_gradients.png")
    lines = [
        "# Results (generated by `python experiments/gradients/run.py`)",
        "",
        "## Test accuracy (%) vs sequence length, Adam lr 3e-3, 2,000 steps, seed 0",
        "",
        f"Command: `python -m jaxclf.main --config={CONFIG}:CELL,T,CLIP --workdir={_shown(root)}/CELL_T_CLIP_s0 --config.seed=0`",
        "(chance: 25%)",
        "",
        *grid_table(root, results),
        "",
        "## SGD with momentum (the explosion setting), 2,000 steps",
        "",
        *sgd_table(root, results),
        "",
        "## T = 100: longer training, more data (Adam, no clipping)",
        "",
        *extra_table(root, results),
        "",
        "## The gated cells' gate biases (Adam, no clipping, 2,000 steps): test accuracy %",
        "",
        f"Command: `python -m jaxclf.main --config={CONFIG}:lstm,T,noclip,fbB --workdir={_shown(root)}/lstm_T_noclip_fbB_sS --config.seed=S`",
        "(the LSTM's forget-gate bias B), `:gru,T,noclip,ubB` (the GRU's update-gate bias B).",
        "",
        *gate_table(results, "lstm"),
        "",
        *gate_table(results, "gru"),
        "",
        "## ||dL/dh_0|| / ||dL/dh_{T-1}|| (median over 256 test sequences; Adam, noclip runs)",
        "",
        "| T | " + " | ".join(f"{cell} init | {cell} trained" for cell in CELLS) + " |",
        "|---:|" + "---:|" * (2 * len(CELLS)),
    ]
    for length in PROFILE_LENGTHS:
        vals = [f"{summary[(length, cell, when)]:.2g}" for cell in CELLS for when in ("init", "trained")]
        lines.append(f"| {length} | " + " | ".join(vals) + " |")
    for cell, (_, gate, biases, _) in GATES.items():
        lines += ["", f"{cell} at initialisation, T = {GATE_BIAS_LENGTH}, {gate}-gate bias b (`model.cell_options`):", ""]
        lines += [f"- b = {b:g}: {summary[(GATE_BIAS_LENGTH, f'{cell} {gate} bias {b:g}', 'init')]:.2g}" for b in biases]
    lines += ["", f"rnn at initialisation, T = {GATE_BIAS_LENGTH}, W_h = S x orthogonal (`model.cell_options`):", ""]
    lines += [f"- S = {v:g}: {summary[(GATE_BIAS_LENGTH, f'rnn recurrent scale {v:g}', 'init')]:.2g}" for v in RECURRENT_SCALES]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
