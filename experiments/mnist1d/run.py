"""Reproduces the MNIST-1D benchmark table (Greydanus 2020) over several seeds.

    python experiments/mnist1d/run.py [--seeds 0 1 2] [--root runs/mnist1d]

Each row is ``python -m jaxclf.main --config=configs/<config> --workdir=<root>/<row>_s<seed>
--config.seed=<seed>``; finished runs are reused, interrupted ones resume.
Writes the markdown table to experiments/mnist1d/results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# (row name, config argument, paper's test accuracy or None)
ROWS = [
    ("logistic regression", "mnist1d_logreg.py", 32),
    ("MLP", "mnist1d_mlp.py", 68),
    ("CNN", "mnist1d_cnn.py", 94),
    ("GRU (bidirectional, 6 units)", "mnist1d_gru.py", 91),
    ("LSTM (bidirectional, 6 units)", "mnist1d_gru.py:lstm", None),
    ("GRU, unidirectional", "mnist1d_gru.py:unidirectional", None),
    ("GRU, attention pooling", "mnist1d_gru.py:attention", None),
    ("LSTM, 64 units, attention pooling", "mnist1d_gru.py:wide", None),
]


def run(config: str, seed: int, root: Path) -> float:
    workdir = root / f"{config.replace('.py', '').replace(':', '_')}_s{seed}"
    results = workdir / "results.json"
    if results.exists():  # finished: reuse it (delete the directory to train it again)
        return json.loads(results.read_text())["test"]["accuracy"]
    cmd = [sys.executable, "-m", "jaxclf.main", f"--config=configs/{config}", f"--workdir={workdir}",
           f"--config.seed={seed}", "--config.train.progress=False"]
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return json.loads(results.read_text())["test"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--root", default=str(REPO / "runs" / "mnist1d"))
    args = parser.parse_args()
    import numpy as np

    lines = [
        f"| model | config | paper | ours: mean +- std over seeds {', '.join(map(str, args.seeds))} | per seed |",
        "|---|---|---|---|---|",
    ]
    for name, config, paper in ROWS:
        accs = np.array([run(config, s, Path(args.root)) for s in args.seeds]) * 100
        per_seed = ", ".join(f"{a:.1f}" for a in accs)
        paper_col = f"{paper}%" if paper else "-"
        lines.append(f"| {name} | `{config}` | {paper_col} | {accs.mean():.1f}% +- {accs.std():.1f} | {per_seed} |")
        print(lines[-1], flush=True)
    (HERE / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
