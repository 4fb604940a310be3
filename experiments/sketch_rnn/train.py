"""Trains Sketch-RNN on the offline shapes and draws samples, reconstructions and
interpolations (a self-contained stand-in for ``jaxclf.main`` until the loop takes a
Sketch-RNN loss hook).

    nice -n 10 .venv/bin/python experiments/sketch_rnn/train.py --config=configs/sketch_rnn_shapes.py \
        --workdir=/tmp/sketch_rnn_shapes --out=experiments/sketch_rnn

Reads ``model``, ``optim`` (via ``jaxclf.train.optim``), ``train`` and ``sketch`` from the config (``--set key=value``
overrides, e.g. ``--set train.num_steps=500``); K steps per jitted call (``lax.scan``).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

from jaxclf import config as config_lib
from jaxclf import models
from jaxclf.data import render, strokes as S
from jaxclf.models import sketch_rnn as M
from jaxclf.train import optim


def make_train(model, tx, data: jnp.ndarray, cfg, steps_per_call: int):
    """``train(params, opt, step, key) -> (params, opt, scalars)`` running ``steps_per_call``
    augmented Adam steps in one ``lax.scan``."""
    sk, batch = cfg.sketch, cfg.train.batch_size
    loss = functools.partial(
        M.loss_fn, kl_weight=sk.kl_weight, kl_weight_start=sk.kl_weight_start, kl_decay=sk.kl_decay,
        kl_tolerance=sk.kl_tolerance, conditional=model.conditional,
    )

    def one(carry, step):
        params, opt, key = carry
        k_idx, k_aug, k_drop = jax.random.split(jax.random.fold_in(key, step), 3)
        x = data[jax.random.randint(k_idx, (batch,), 0, data.shape[0])]
        x = S.augment(k_aug, x, scale=sk.augment_scale, drop_prob=sk.augment_drop)

        def objective(p):
            out = model.apply({"params": p}, x, train=True, rngs={"dropout": k_drop})
            return loss(out, x, step=step)

        (_, scalars), grads = jax.value_and_grad(objective, has_aux=True)(params)
        updates, opt = tx.update(grads, opt, params)
        scalars["grad_norm"] = optax.global_norm(grads)
        return (optax.apply_updates(params, updates), opt, key), scalars

    @jax.jit
    def train(params, opt, step, key):
        (params, opt, _), scalars = jax.lax.scan(one, (params, opt, key), step + jnp.arange(steps_per_call))
        return params, opt, jax.tree.map(jnp.mean, scalars)

    @jax.jit
    def evaluate(params, x, step):
        out = model.apply({"params": params}, x, train=False)
        return loss(out, x, step=step)[1]

    return train, evaluate


def figures(model, params, data: S.StrokeData, out: Path, seed: int = 0) -> None:
    """Samples from the prior at two temperatures, test-set reconstructions and latent
    interpolations between test sketches of different classes, as PNG grids (+ an SVG)."""
    key = jax.random.key(seed)
    test = data.splits["test"]
    max_len, names = data.max_len, data.class_names
    to3 = lambda rows: [S.to_stroke3(r) for r in np.asarray(rows)]  # noqa: E731
    render.save_grid(to3(test.strokes[:20]), out / "data.png", ncols=10,
                     titles=[names[c] for c in test.labels[:20]], suptitle="test sketches (the data)")
    for tau in (0.1, 0.5):
        rows, _ = M.sample(model, params, jax.random.fold_in(key, int(tau * 100)), batch=40, max_len=max_len, temperature=tau)
        render.save_grid(to3(rows), out / f"samples_t{tau}.png", ncols=10, suptitle=f"samples from the prior, temperature {tau}")
    if not model.conditional:
        return
    per_class = [np.flatnonzero(test.labels == c)[:4] for c in range(len(names))]
    idx = np.concatenate(per_class)
    rows, _ = M.reconstruct(model, params, key, jnp.asarray(test.strokes[idx]), max_len=max_len, temperature=0.1)
    originals, recons = to3(test.strokes[idx]), to3(rows)
    pairs = [s for k in range(0, len(idx), 4) for s in originals[k : k + 4] + recons[k : k + 4]]
    render.save_grid(
        pairs, out / "reconstructions.png", ncols=8,
        titles=[("input " if (i // 4) % 2 == 0 else "recon ") + names[test.labels[idx[i // 8 * 4]]] for i in range(len(pairs))],
        suptitle="test sketches (left 4) and their reconstructions from z = mu (right 4), temperature 0.1",
    )
    ends = [(a, (a + 1) % len(names)) for a in range(min(len(names), 5))]  # one class: 2 of it
    grid, labels = [], []
    for n, (a, b) in enumerate(ends):
        pair = test.strokes[[per_class[a][0], per_class[b][-1]]]
        z = M.encode(model, params, jnp.asarray(pair))
        rows, _ = M.sample(model, params, jax.random.fold_in(key, n), M.interpolate(z[0], z[1], 8), max_len=max_len, temperature=0.05)
        grid += [S.to_stroke3(pair[0])] + to3(rows) + [S.to_stroke3(pair[1])]
        labels.append(f"{names[a]} -> {names[b]}")
    render.save_grid(grid, out / "interpolations.png", ncols=10, row_labels=labels,
                     suptitle="inputs (first, last column) and decodings of slerp(z_first, z_last), temperature 0.05")
    (out / "sample.svg").write_text(render.to_svg(grid[1]))


def train_loop(model, params, cfg, data: S.StrokeData, workdir: Path):
    """Trains for ``train.num_steps``, printing and saving (``log.json``) train and test
    scalars every ``train.log_every`` steps; saves ``params.msgpack``; returns params."""
    tx = optim.optimizer(cfg.optim, cfg.train.num_steps)  # the main loop's optax chain
    k = cfg.train.steps_per_call
    train, evaluate = make_train(model, tx, jnp.asarray(data.splits["train"].strokes), cfg, k)
    test_x = jnp.asarray(data.splits["test"].strokes)
    opt, key, log, start = tx.init(params), jax.random.key(cfg.seed + 1), [], time.time()
    for step in range(0, cfg.train.num_steps, k):
        params, opt, scalars = train(params, opt, step, key)
        if (step + k) % cfg.train.log_every == 0 or step + k >= cfg.train.num_steps:
            row = {"step": step + k, "seconds": round(time.time() - start, 1),
                   "train": {n: round(float(v), 4) for n, v in scalars.items()},
                   "test": {n: round(float(v), 4) for n, v in evaluate(params, test_x, step + k).items()}}
            log.append(row)
            print(json.dumps(row), flush=True)
    (workdir / "params.msgpack").write_bytes(serialization.to_bytes(params))
    (workdir / "log.json").write_text(json.dumps({"config": cfg.to_dict(), "log": log}, indent=1, default=str))
    return params


def override(cfg, key: str, raw: str) -> None:
    """``cfg.<key> = value``: JSON values (numbers, booleans, lists), else the raw string;
    the ConfigDict rejects unknown keys and wrong types."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    section, name = key.rsplit(".", 1)
    node = functools.reduce(getattr, section.split("."), cfg)
    setattr(node, name, tuple(value) if isinstance(value, list) else value)


def load_data(cfg) -> S.StrokeData:
    """The shapes, or QuickDraw ``<class>.npz`` files from ``sketch.data_dir``."""
    sk = cfg.sketch
    if cfg.dataset.name == "sketch_quickdraw":
        if sk.data_dir is None:
            raise ValueError("set sketch.data_dir to the directory holding the QuickDraw .npz files")
        return S.load_quickdraw([Path(sk.data_dir) / f"{c}.npz" for c in sk.classes], sk.max_len)
    return S.shapes_data(sk.num_train, sk.num_test, sk.max_len, seed=cfg.seed)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/sketch_rnn_shapes.py")
    p.add_argument("--workdir", default="/tmp/sketch_rnn_shapes")
    p.add_argument("--out", default=None, help="directory for the PNG grids (default: workdir)")
    p.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    p.add_argument("--figures_only", action="store_true", help="redraw from workdir/params.msgpack")
    args = p.parse_args(argv)
    path, _, arg = args.config.partition(":")
    cfg = config_lib.load(path, arg or None)
    cfg.lock()  # an override of a key that does not exist is an error
    for item in args.set:
        override(cfg, *item.split("=", 1))
    workdir, out = Path(args.workdir), Path(args.out or args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    data = load_data(cfg)
    model = models.create(cfg.model.name, num_classes=len(data.class_names), **config_lib.model_kwargs(cfg))
    init = jax.jit(functools.partial(model.init, train=False))
    params = init(jax.random.key(cfg.seed), jnp.asarray(data.splits["train"].strokes[:1]))["params"]
    if args.figures_only:
        params = serialization.from_bytes(params, (workdir / "params.msgpack").read_bytes())
    else:
        params = train_loop(model, params, cfg, data, workdir)
    figures(model, params, data, out, cfg.seed)


if __name__ == "__main__":
    main()
