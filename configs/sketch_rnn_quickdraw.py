"""Sketch-RNN (Ha and Eck 2017) on QuickDraw sketch-rnn ``.npz`` files: the paper's settings.

    python -m jaxclf.main --config=configs/sketch_rnn_quickdraw.py --workdir=runs/sketch_rnn_quickdraw \
        --config.dataset.data_dir=DIR

Needs ``<class>.npz`` files from https://storage.googleapis.com/quickdraw_dataset/sketchrnn
(e.g. cat.npz, pig.npz) in ``DIR/downloads/manual`` (the TFDS builder ``sketch_quickdraw``
labels them by QuickDraw's 345 categories; ``dataset.keep_classes=('cat', 'pig')`` picks some
by name and relabels them 0, 1). Paper: enc 256
(bidirectional LSTM), dec 512 (LSTM), z 128, M 20, batch 100, Nmax 250, KL weight 0.5
annealed from 0.01 with decay 0.99995, KL tolerance 0.2, gradient clipping 1.0, lr 1e-3
decaying to 1e-5, recurrent dropout 0.1, random scaling 0.15 and point dropping 0.1.
The paper decays the learning rate exponentially (``(lr - min) * 0.9999^t + min``); here a
cosine schedule from 1e-3 to 1e-5 over the run. No result measured here (no download on
this machine). ``:unconditional`` is the decoder-only model; ``:smoke`` two tiny steps.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    recipes.ha2017_sketch_rnn(c)
    c.dataset.name = "sketch_quickdraw"
    c.dataset.eval_splits = ("valid", "test")
    c.train.num_steps = 100_000
    c.train.steps_per_call = 10
    c.train.log_every = c.train.eval_every = 1000
    c.train.checkpoint_every = 5000
    return recipes.apply_variant(c, arg, {"smoke": _smoke, "unconditional": unconditional})


def unconditional(c) -> None:
    c.model.name = "sketch_rnn_unconditional"  # decoder only


def _smoke(c) -> None:
    recipes.smoke(c)
    c.model.enc_hidden, c.model.dec_hidden, c.model.z_size, c.model.num_mixtures = 8, 8, 4, 2
