"""jaxclf.metrics vs scikit-learn: exact ROC AUC and the confusion matrix on CPU.

    python benchmarks/bench_metrics.py [--repeats 5]

Times are medians over repeats after a warm-up call (which compiles the jitted function);
JAX outputs are synchronised with ``block_until_ready``. Inputs: float32 scores and 30%
positives for AUC (continuous scores, few ties), 10 classes for the confusion matrix.
Prints a markdown table and writes ``benchmarks/results_metrics.json``.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from sklearn import metrics as skm

import jaxclf.metrics as M


def median_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # warm-up / compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []

    auc = jax.jit(M.roc_auc)
    for n in (10**6, 10**7):
        y = (rng.random(n) < 0.3).astype(np.int32)
        s = rng.random(n).astype(np.float32)
        yj, sj = jnp.asarray(y), jnp.asarray(s)
        ours = float(auc(yj, sj))
        theirs = skm.roc_auc_score(y, s)
        assert abs(ours - theirs) < 1e-6, (ours, theirs)
        rows.append(("roc_auc (exact)", n, median_time(lambda: auc(yj, sj), args.repeats),
                     median_time(lambda: skm.roc_auc_score(y, s), max(1, args.repeats // 2))))

    n, k = 10**7, 10
    y = rng.integers(0, k, n).astype(np.int32)
    p = np.where(rng.random(n) < 0.7, y, rng.integers(0, k, n)).astype(np.int32)
    cm = jax.jit(functools.partial(M.confusion_matrix, num_classes=k))
    yj, pj = jnp.asarray(y), jnp.asarray(p)
    np.testing.assert_array_equal(np.asarray(cm(yj, pj)), skm.confusion_matrix(y, p))
    rows.append(("confusion_matrix (K=10)", n, median_time(lambda: cm(yj, pj), args.repeats),
                 median_time(lambda: skm.confusion_matrix(y, p), max(1, args.repeats // 2))))

    print(f"\njax {jax.__version__}, {jax.devices()[0].platform}, {os.cpu_count()} cpu, "
          f"{platform.processor() or platform.machine()}\n")
    print("| metric | n | jaxclf (jit) s | sklearn s | speed-up |")
    print("|---|---:|---:|---:|---:|")
    results = []
    for name, n, ours, theirs in rows:
        print(f"| {name} | {n:.0e} | {ours:.4f} | {theirs:.4f} | {theirs / ours:.1f}x |")
        results.append({"metric": name, "n": n, "jaxclf_s": ours, "sklearn_s": theirs,
                        "speedup": theirs / ours})
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results_metrics.json")
    with open(out, "w") as f:
        json.dump({"jax": jax.__version__, "backend": jax.default_backend(),
                   "cpus": os.cpu_count(), "repeats": args.repeats, "results": results}, f,
                  indent=2)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
