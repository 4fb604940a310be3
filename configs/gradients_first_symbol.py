"""Exploding and vanishing gradients: remember the first symbol across T steps (issue 5).

A single-layer, 64-unit, unidirectional recurrent classifier reads the state after the last
step (``pooling='last'``), so the label, decided at step 0, must survive ``T - 1`` distractor
steps (``jaxclf/data/builders/first_symbol.py``). Per-layer gradient norms are logged every
10 steps to ``WORKDIR/metrics.jsonl``.

The argument is a comma-separated list, in any order, of: a cell (``rnn`` vanilla, ``lstm``,
``gru``), a length (10, 25, 50, 100, 200), ``clip`` or ``noclip`` (global-norm clipping at
1.0), ``sgd`` (SGD with momentum 0.9, lr 0.1, instead of Adam, lr 3e-3: the setting where the
vanilla RNN's gradient explodes, as Adam's per-parameter scaling mostly hides it), ``long``
(6,000 steps instead of 2,000), ``large`` (40,000 training sequences instead of 4,000),
``fbN`` (the LSTM's forget-gate bias starts at N instead of 1: ``model.cell_options``),
``ubN`` (the GRU's update-gate bias starts at N, e.g. ``ub-3``, instead of 0), ``rsS`` (the
recurrent weights start orthogonal times S instead of 1, e.g. ``rs0.5``), and ``smoke``.
Defaults: ``rnn,100,noclip``; Adam, 2,000 steps of 64 sequences.

    python -m jaxclf.main --config=configs/gradients_first_symbol.py:rnn,100,noclip --workdir=runs/gradients/rnn_100_noclip_s0 --config.seed=0

Results (test accuracy, chance 25%): with Adam the vanilla RNN solves T <= 25 (100%) and is at
chance from T = 50; LSTM and GRU solve T <= 50 and are at chance at T = 100 and 200. With
``sgd``, the vanilla RNN at T = 100 reaches 100% with ``clip`` (seed 0) and 24.5% without.
The whole grid, its table and plots: ``python experiments/gradients/run.py``
(experiments/gradients/README.md).
"""

import math

from jaxclf import recipes
from jaxclf.config import base_config

CELLS = ("rnn", "lstm", "gru")
LENGTHS = (10, 25, 50, 100, 200)
CLIP_NORM = 1.0
CELL_OPTION_TOKENS = {"fb": "forget_bias", "ub": "update_bias", "rs": "recurrent_scale"}  # token prefix -> model.cell_options key


def get_config(arg=None):
    c = base_config()
    c.dataset.image_key = "sequence"
    c.dataset.normalize = "none"  # one-hot inputs; per-feature standardisation would scale with T
    c.model.name = "rnn_classifier"
    c.model.cell = "rnn"
    c.model.hidden = 64
    c.model.pooling = "last"
    c.optim.name = "adam"
    c.optim.lr = 3e-3
    c.optim.clip_norm = 0.0
    c.train.batch_size = 64
    c.train.eval_batch_size = 500
    c.train.num_steps = 2000
    c.train.log_every = 10
    c.train.eval_every = 500
    c.train.checkpoint_every = 1000
    c.train.steps_per_call = 10
    c.train.log_grad_norms = True
    c.eval.report = False
    length, large = 100, False
    for token in (arg or "").split(","):
        token = token.strip()
        if token.isdigit() and int(token) in LENGTHS:
            length = int(token)
        elif token == "large":
            large = True
        else:
            _apply(c, token)
    c.dataset.name = f"first_symbol/t{length}" + ("_n40000" if large else "")
    return c


def _apply(c, token: str) -> None:
    """One variant token; an unknown one lists the valid ones."""
    if not token:
        return
    if token in CELLS:
        c.model.cell = token
    elif token in ("clip", "noclip"):
        c.optim.clip_norm = CLIP_NORM if token == "clip" else 0.0
    elif token == "sgd":
        c.optim.name, c.optim.lr, c.optim.momentum = "momentum", 0.1, 0.9
    elif token == "long":
        c.train.num_steps = 6000
    elif token[:2] in CELL_OPTION_TOKENS and _is_number(token[2:]):
        option = CELL_OPTION_TOKENS[token[:2]]  # validation rejects an option the cell lacks
        c.model.cell_options = {**(c.model.get("cell_options") or {}), option: float(token[2:])}
    elif token == "smoke":
        recipes.smoke(c)
    else:
        valid = ", ".join([*CELLS, *map(str, LENGTHS), "clip", "noclip", "sgd", "long", "large", "fbN", "ubN", "rsS", "smoke"])
        raise ValueError(f"unknown variant {token!r}; valid (comma-separated): {valid}")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
