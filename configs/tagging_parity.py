"""Many-to-many, aligned (tagging): the running parity of a bit string, one label per step.

A unidirectional LSTM tagger (32 units) reads 20 random bits (``running_parity``,
``jaxclf/data/builders/sequence_tasks.py``) and labels every step with the parity of the bits
so far (``task='sequence'``: token-level loss and accuracy). ``:bidirectional`` adds a
backward direction, which sees the future bits and must learn to ignore them; ``:smoke``.

    python -m jaxclf.main --config=configs/tagging_parity.py --workdir=runs/tagging_parity

Measured (2 shared CPU cores, 16 s): test token accuracy 100% (chance 50%).
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.task = "sequence"
    c.dataset.name = "running_parity"
    c.dataset.image_key = "sequence"
    c.dataset.normalize = "none"  # one-hot bits
    c.model.name = "rnn_tagger"
    c.model.cell = "lstm"
    c.model.hidden = 32
    c.model.bidirectional = False
    c.optim.name = "adam"
    c.optim.lr = 1e-2
    c.train.batch_size = 64
    c.train.eval_batch_size = 500
    c.train.num_steps = 1000
    c.train.log_every = 100
    c.train.eval_every = 500
    c.train.checkpoint_every = 1000
    c.train.steps_per_call = 20
    c.eval.report = False
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke, "bidirectional": _bidirectional})


def _bidirectional(c):
    c.model.bidirectional = True
