"""Sketch-RNN (Ha and Eck 2017) on QuickDraw sketch-rnn ``.npz`` files: the paper's settings.

    python -m jaxclf.main --config=configs/sketch_rnn_quickdraw.py --workdir=runs/sketch_rnn_quickdraw

Needs ``<class>.npz`` files from https://storage.googleapis.com/quickdraw_dataset/sketchrnn
(e.g. cat.npz, pig.npz) in ``sketch.data_dir``; ``sketch.classes`` picks and orders them
(label = position). Paper: enc 256 (bidirectional LSTM), dec 512 (LSTM), z 128, M 20,
batch 100, Nmax 250, KL weight 0.5 annealed from 0.01 with decay 0.99995, KL tolerance 0.2,
gradient clipping 1.0, lr 1e-3 decaying to 1e-5, recurrent dropout 0.1, random scaling
0.15 and point dropping 0.1. Until the main loop has the Sketch-RNN loss hook, train with
``experiments/sketch_rnn/train.py --config=configs/sketch_rnn_quickdraw.py --set
sketch.data_dir=DIR`` (see experiments/sketch_rnn/README.md). No result measured here
(no download on this machine).
"""

import ml_collections

from jaxclf.config import base_config

_MODEL_KEYS = ("enc_hidden", "dec_hidden", "z_size", "num_mixtures", "conditional", "recurrent_dropout")


def sketch_section() -> ml_collections.ConfigDict:
    """The paper's hyper-parameters (model sizes are linked into ``model`` by reference)."""
    s = ml_collections.ConfigDict()
    s.enc_hidden, s.dec_hidden, s.z_size, s.num_mixtures = 256, 512, 128, 20
    s.conditional = True
    s.recurrent_dropout = 0.1
    s.kl_weight, s.kl_weight_start, s.kl_decay, s.kl_tolerance = 0.5, 0.01, 0.99995, 0.2
    s.min_lr, s.lr_decay = 1e-5, 0.9999  # paper: lr_t = (lr - min_lr) * lr_decay^t + min_lr
    s.max_len = 250  # Nmax: longer sketches are dropped
    s.augment_scale, s.augment_drop = 0.15, 0.1
    s.data_dir = ml_collections.FieldReference(None, field_type=str)
    s.classes = ("cat",)
    s.num_train, s.num_test = 0, 0  # generated data only (shapes)
    return s


def get_config(arg=None):
    c = base_config()
    c.sketch = sketch_section()
    c.model.name = "sketch_rnn"
    for key in _MODEL_KEYS:
        c.model[key] = c.sketch.get_ref(key)
    c.dataset.name = "sketch_quickdraw"
    c.dataset.normalize = "none"  # offsets are scaled by the train split's std in jaxclf.data.strokes
    c.dataset.image_key, c.dataset.label_key = "strokes", "label"
    c.dataset.eval_splits = ("valid", "test")
    c.metrics = ()
    c.optim.name, c.optim.lr, c.optim.clip_norm = "adam", 1e-3, 1.0
    c.optim.schedule, c.optim.end_lr_factor = "cosine", 0.01  # 1e-3 -> 1e-5 (see sketch.lr_decay)
    c.train.batch_size = 100
    c.train.eval_batch_size = 100
    c.train.num_steps = 100_000
    c.train.steps_per_call = 10
    c.train.log_every = c.train.eval_every = 1000
    c.train.checkpoint_every = 5000
    if arg == "smoke":
        c.train.num_steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 2, 1, 1, 1
        c.train.steps_per_call = 1
    elif arg is not None:
        raise ValueError(f"unknown variant {arg!r}; valid: smoke")
    return c
