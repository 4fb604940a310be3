"""One-to-many (generation from a class): each of 4 classes has its own 12-token sequence.

A GRU generator (64 units) conditioned on the one-hot class (its latent path: a dense layer of
a one-hot is a class embedding) learns the class's sequence by teacher forcing on noisy copies
(``class_sequences``, ``jaxclf/data/builders/sequence_tasks.py``: each symbol replaced by a
random one with probability 0.1, the end marker never: the best token accuracy is
1 - 0.1 * 7/8 * 11/12 = 92%; ``task='sequence'``). ``:smoke``.

    python -m jaxclf.main --config=configs/generate_class_sequences.py --workdir=runs/generate_class_sequences

Measured (2 shared CPU cores, 29 s): test token accuracy 92.2%, the noise's bound.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.task = "sequence"
    c.dataset.name = "class_sequences"
    c.dataset.image_key = "condition"
    c.dataset.normalize = "none"  # one-hot classes
    c.model.name = "rnn_generator"
    c.model.vocab_size = 9  # the dataset's tokens: end marker + 8 symbols
    c.model.cell = "gru"
    c.model.hidden = 64
    c.optim.name = "adam"
    c.optim.lr = 3e-3
    c.train.batch_size = 64
    c.train.eval_batch_size = 500
    c.train.num_steps = 500
    c.train.log_every = 100
    c.train.eval_every = 250
    c.train.checkpoint_every = 500
    c.train.steps_per_call = 20
    c.eval.report = False
    return recipes.apply_variant(c, arg, {"smoke": recipes.smoke})
