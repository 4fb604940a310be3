"""Sketch-RNN on the generated shapes (circle, square, triangle, star, spiral): offline.

    python -m jaxclf.main --config=configs/sketch_rnn_shapes.py --workdir=runs/sketch_rnn_shapes

The paper's recipe (configs/sketch_rnn_quickdraw.py) scaled to a few CPU minutes: enc 128,
dec 256, z 32, M 10, Nmax 32, batch 64, faster KL annealing (decay 0.999). Until the main
loop has the Sketch-RNN loss hook, run it with
``nice -n 10 .venv/bin/python experiments/sketch_rnn/train.py --config=configs/sketch_rnn_shapes.py``;
the samples, reconstructions and interpolations it draws are in experiments/sketch_rnn/.
``:paper`` keeps the paper's model sizes; ``:smoke`` runs two tiny steps.
"""

import os

from jaxclf import config as config_lib


def get_config(arg=None):
    c = config_lib.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "sketch_rnn_quickdraw.py"))
    s = c.sketch
    c.dataset.name = "sketch_shapes"
    c.dataset.eval_splits = ("test",)
    s.classes = ("circle", "square", "triangle", "star", "spiral")
    s.num_train, s.num_test = 1000, 50  # per class
    s.max_len = 32
    if arg != "paper":
        s.enc_hidden, s.dec_hidden, s.z_size, s.num_mixtures = 128, 256, 32, 10
    s.kl_decay = 0.999
    c.train.batch_size = c.train.eval_batch_size = 64
    c.train.num_steps = 2500
    c.train.steps_per_call = 50
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 250
    if arg == "smoke":
        c.sketch.enc_hidden, c.sketch.dec_hidden, c.sketch.z_size, c.sketch.num_mixtures = 8, 8, 4, 2
        c.train.num_steps, c.train.log_every, c.train.eval_every, c.train.checkpoint_every = 2, 1, 1, 1
        c.train.steps_per_call = 1
    elif arg not in (None, "paper"):
        raise ValueError(f"unknown variant {arg!r}; valid: paper, smoke")
    return c
