"""Encoder-decoder with and without attention for T = 5 .. 100 (issue 22): the sweep of
``experiments/attention_length/run.py``, which also decodes greedily and draws the figures.

    python -m jaxclf.sweep --config=configs/sweep_attention_length.py --workdir=runs/attention_length

Every point is ``configs/seq2seq_reverse.py`` (bidirectional LSTM encoder, 128 units) with its attention
('luong' or 'none') and dataset (``token_order/reverse_t{T}``) set, 1,000 steps of 64 sequences (cosine learning rate).
``:smoke``: T = 5 only, a few tiny steps. One point alone is a normal run:

    python -m jaxclf.main --config=configs/sweep_attention_length.py --workdir=runs/attention_t40_none \
        --config.model.attention=none --config.dataset.name=token_order/reverse_t40
"""

import os

from jaxclf.config import load
from jaxclf.sweep import product

LENGTHS = (5, 10, 20, 40, 70, 100)
ATTENTIONS = ("luong", "none")


def get_config(arg=None):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seq2seq_reverse.py")
    c = load(path, arg)
    if arg != "smoke":
        c.train.num_steps = c.train.eval_every = c.train.checkpoint_every = 1000
    return c


def get_sweep(arg=None):
    lengths = LENGTHS[:1] if arg == "smoke" else LENGTHS
    return product({"model.attention": list(ATTENTIONS)},
                   {"dataset.name": [f"token_order/reverse_t{t}" for t in lengths]})
