"""The MNIST-1D paper's GRU: bidirectional, 6 hidden units, all 40 steps' states -> dense.

Variants: :lstm (LSTM cells), :unidirectional, :attention (attention pooling instead of
flattening), :wide (64 hidden units, LSTM, attention: the best configuration we found).

    python -m jaxclf.main --config=configs/mnist1d_gru.py --workdir=runs/mnist1d_gru --config.seed=0

Paper (Greydanus 2020, MNIST-1D benchmark): 91% test accuracy. Ours: see
experiments/mnist1d/README.md (3 seeds).
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    recipes.greydanus2020_mnist1d(c)
    c.model.name = "rnn_classifier"
    c.model.cell = "gru_reset_after"  # PyTorch's GRU, as in the paper
    c.model.hidden = 6
    c.model.bidirectional = True
    c.model.pooling = "flatten"  # every step's state -> dense, as in the paper
    variants = {"smoke": recipes.smoke, "lstm": _lstm, "unidirectional": _unidirectional, "attention": _attention, "wide": _wide}
    return recipes.apply_variant(c, arg, variants)


def _lstm(c):
    c.model.cell = "lstm"


def _unidirectional(c):
    c.model.bidirectional = False


def _attention(c):
    c.model.pooling = "attention"


def _wide(c):
    c.model.cell, c.model.hidden, c.model.pooling = "lstm", 64, "attention"
