"""Sketches classified by their strokes (many-to-one): a bidirectional LSTM over the
stroke-5 sequence of each generated shape, last valid state of both directions -> dense.

    python -m jaxclf.main --config=configs/sketch_classifier_shapes.py --workdir=runs/sketch_classifier_shapes

The same data pipeline as Sketch-RNN (configs/sketch_rnn_shapes.py): the ``sketch_shapes``
dataset as padded stroke-5 with lengths (padding never reaches the model's result), offsets
scaled by the train split's std, random scaling and point dropping while training.
``:quickdraw`` reads QuickDraw .npz files (``--config.dataset.data_dir=DIR``, see
configs/sketch_rnn_quickdraw.py); ``:smoke`` runs two tiny steps.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.metrics = ("accuracy", "f1_macro")
    c.model.name = "rnn_classifier"
    c.model.cell, c.model.hidden, c.model.bidirectional, c.model.pooling = "lstm", 64, True, "last"
    c.dataset.name = "sketch_shapes"
    c.dataset.image_key, c.dataset.label_key = "strokes", "label"
    c.dataset.max_length = 32
    c.dataset.augment = ("stroke_scale", "stroke_drop")
    c.optim.name, c.optim.lr, c.optim.clip_norm = "adam", 3e-3, 1.0
    c.optim.schedule = "cosine"
    c.train.batch_size, c.train.eval_batch_size = 64, 250
    c.train.num_steps = 1000
    c.train.steps_per_call = 50
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 250
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke, "quickdraw": _quickdraw})


def _quickdraw(c) -> None:
    c.dataset.name = "sketch_quickdraw"
    c.dataset.max_length = 250
    c.dataset.eval_splits = ("valid", "test")
    c.model.hidden = 256
    c.train.batch_size, c.train.eval_batch_size = 100, 500
    c.train.num_steps = 20_000
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 1000
