"""Imbalanced data: why accuracy misleads, and three fixes, measured with jaxclf.metrics.

    python experiments/imbalanced/run.py

Data: two overlapping Gaussian classes in 2-D, 95% negatives / 5% positives (train 2,000 and
test 2,000 rows, same ratio). Classifiers: always-negative; logistic regression (jax + optax,
full-batch Adam); the same with class weights (each class weighs half of the loss); and the
plain model with the threshold moved to the one maximising F1 on the training set (read from
the streaming collection's binned score histogram). Prints a markdown table of test metrics
and writes it into README.md next to this file.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxclf.metrics as M

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "mcc", "roc_auc")


def dataset(n: int, seed: int):
    """n rows, exactly 5% positives; positives are shifted by 1.5 sd in both features."""
    rng = np.random.default_rng(seed)
    y = np.zeros(n, np.int32)
    y[: n // 20] = 1
    rng.shuffle(y)
    x = rng.normal(size=(n, 2)) + 1.5 * y[:, None]
    return jnp.asarray(x, jnp.float32), jnp.asarray(y)


def train_logreg(x, y, class_weight=None, steps=500):
    """Logistic regression by full-batch Adam on the (optionally class-weighted) mean BCE."""
    w = jnp.ones(y.shape) if class_weight is None else jnp.asarray(class_weight)[y]
    params = {"w": jnp.zeros((x.shape[1],)), "b": jnp.zeros(())}
    opt = optax.adam(0.05)

    def loss_fn(p):
        logits = x @ p["w"] + p["b"]
        return jnp.sum(w * optax.sigmoid_binary_cross_entropy(logits, y)) / jnp.sum(w)

    @jax.jit
    def run(params):
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss_fn)(p)
            u, s = opt.update(g, s)
            return (optax.apply_updates(p, u), s), None
        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, steps)
        return params

    params = run(params)
    return lambda x: x @ params["w"] + params["b"]


def evaluate(logits, y, threshold=0.5):
    """The table's metrics from the streaming collection (one update over the test set)."""
    coll = M.collection(NAMES, num_classes=2, task="binary", threshold=threshold)
    state = coll.update(coll.empty(), logits=logits, labels=y, loss=jnp.zeros(y.shape),
                        mask=jnp.ones(y.shape))
    return {k: float(v) for k, v in coll.compute(state).items()}


def main():
    x_train, y_train = dataset(2000, seed=0)
    x_test, y_test = dataset(2000, seed=1)
    plain = train_logreg(x_train, y_train)
    n_pos = float(y_train.sum())
    balanced = train_logreg(x_train, y_train,
                            class_weight=[len(y_train) / (2 * (len(y_train) - n_pos)),
                                          len(y_train) / (2 * n_pos)])
    # threshold moving: best F1 threshold on the TRAINING set from the binned histogram
    tune = M.collection(["best_f1_threshold"], num_classes=2, task="binary", num_bins=200)
    t_state = tune.update(tune.empty(), logits=plain(x_train), labels=y_train,
                          loss=jnp.zeros(y_train.shape), mask=jnp.ones(y_train.shape))
    best = float(tune.compute(t_state)["best_f1_threshold"])

    rows = [
        ("always negative", evaluate(jnp.full(y_test.shape, -10.0), y_test)),
        ("logistic regression", evaluate(plain(x_test), y_test)),
        ("+ class weights", evaluate(balanced(x_test), y_test)),
        (f"+ threshold {best:.3f} (best train F1)", evaluate(plain(x_test), y_test, best)),
    ]
    header = "| classifier | " + " | ".join(NAMES) + " |"
    lines = [header, "|---|" + "---:|" * len(NAMES)]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in NAMES) + " |")
    table = "\n".join(lines)
    print(table)

    readme = f"""# Imbalanced data: accuracy misleads

Command (CPU, a few seconds):

```
python experiments/imbalanced/run.py
```

Two overlapping Gaussian classes in 2-D, **95% negatives / 5% positives** (train and test sets
of 2,000 rows each, 100 positives each). Test-set metrics, all computed by
`jaxclf.metrics.collection(..., task='binary')`; precision/recall/F1 are for the positive
(rare) class, the threshold applies to the sigmoid probability:

{table}

What it shows:

- The always-negative classifier scores **0.95 accuracy** while finding no positive:
  recall 0, F1 0, balanced accuracy 0.5 and MCC 0 expose it (its AUC is 0.5: it ranks
  nothing).
- Plain logistic regression inherits the bias: its scores rank well (AUC), but at the
  default threshold 0.5 it predicts few positives, so recall stays low while accuracy looks
  excellent.
- Class weights (each class contributes half of the loss) move the decision boundary: recall
  and balanced accuracy rise, precision drops; accuracy falls, which is the point.
- Threshold moving keeps the plain model (same AUC, same ranking) and only picks a different
  operating point: the threshold maximising F1 on the training set, read from the binned
  score histogram of the streaming metrics (`best_f1_threshold`). Here it gives the best F1
  and MCC on the test set, class weights the best recall and balanced accuracy. Both fixes
  trade precision for recall; which trade is right depends on the costs of the two error types
  (type I = false positives, type II = false negatives).
"""
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(readme)


if __name__ == "__main__":
    main()
