"""From scratch vs transfer learning with few labels: digits 0-4 -> digits 5-9.

    python experiments/transfer/run.py [--root runs/transfer] [--seeds 0 1 2]

1. Pretrain LeNet-5 on the digits 0-4 (every training image).
2. On the digits 5-9, with a label budget of k images per class, train LeNet-5
   * from scratch,
   * frozen convolutions: every pretrained layer but the output layer copied in, the two
     convolutions kept bitwise fixed (``transfer.freeze``), the dense layers and a new
     5-class output layer trained,
   * fine-tuned: the same start, every layer trained.
Every run is ``python -m jaxclf.main --config=configs/lenet5_digits.py`` with the overrides
printed in results.md. Writes results.md and curves.png beside this file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUDGETS = (1, 3, 10, 30, 0)  # images per class; 0 = all (about 135)
HEAD = "head"  # LeNet-5's output layer
COMMON = ["--config.dataset.normalize=unit", "--config.train.num_steps=300", "--config.train.eval_every=300", "--config.train.log_every=100",
          "--config.train.checkpoint_every=300", "--config.train.steps_per_call=100", "--config.train.progress=False",
          "--config.train.batch_size=32"]
MODES = {
    "from scratch": [],
    "frozen convolutions": [f"--config.transfer.exclude=^{HEAD}/", "--config.transfer.freeze=^Conv_"],
    "fine-tuned": [f"--config.transfer.exclude=^{HEAD}/"],
}


def main_run(workdir: Path, overrides: list[str]) -> float:
    cmd = [sys.executable, "-m", "jaxclf.main", "--config=configs/lenet5_digits.py", f"--workdir={workdir}", *overrides]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((workdir / "results.json").read_text())["test"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=str(REPO / "runs" / "transfer"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    import numpy as np

    root = Path(args.root)
    pretrain = root / "pretrain_0-4"
    pre_acc = main_run(pretrain, ["--config.dataset.keep_classes=(0,1,2,3,4)", "--config.dataset.normalize=unit", "--config.train.num_steps=600",
                                  "--config.train.progress=False", "--config.train.steps_per_call=50"])
    target = ["--config.dataset.keep_classes=(5,6,7,8,9)"]
    acc = {mode: {} for mode in MODES}
    for budget in BUDGETS:
        for mode, extra in MODES.items():
            init = [f"--config.transfer.init_from={pretrain}"] if extra else []
            runs = []
            for seed in args.seeds:
                overrides = [*target, *COMMON, *init, *extra, f"--config.seed={seed}", f"--config.dataset.budget_seed={seed}",
                             f"--config.dataset.examples_per_class={budget}"]
                runs.append(main_run(root / f"{mode.split()[0]}_k{budget}_s{seed}", overrides))
            acc[mode][budget] = np.array(runs) * 100
            print(mode, budget, acc[mode][budget], flush=True)

    label = lambda b: "all" if b == 0 else str(b)
    lines = [f"Pretrained on digits 0-4: {pre_acc * 100:.1f}% test accuracy on 0-4.", "",
             "Test accuracy (%) on the digits 5-9 (225 test images), mean +- std over seeds "
             + ", ".join(map(str, args.seeds)) + ":", "",
             "| images per class | " + " | ".join(MODES) + " |", "|---|" + "---|" * len(MODES)]
    for b in BUDGETS:
        lines.append(f"| {label(b)} | " + " | ".join(f"{acc[m][b].mean():.1f} +- {acc[m][b].std():.1f}" for m in MODES) + " |")
    lines += ["", "Overrides per mode (besides the common ones: " + " ".join(COMMON + target) + "):", ""]
    lines += [f"- {m}: `{' '.join(e) or '(none)'}`" + (f" `--config.transfer.init_from={pretrain}`" if e else "") for m, e in MODES.items()]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [b if b else 135 for b in BUDGETS]
    for mode in MODES:
        means = [acc[mode][b].mean() for b in BUDGETS]
        stds = [acc[mode][b].std() for b in BUDGETS]
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label=mode)
    ax.set_xscale("log")
    ax.set_xticks(xs, [label(b) for b in BUDGETS])
    ax.set_xlabel("labelled training images per class (digits 5-9)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("LeNet-5: from scratch vs transfer from digits 0-4")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "curves.png", dpi=120)


if __name__ == "__main__":
    main()
