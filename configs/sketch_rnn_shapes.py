"""Sketch-RNN on the generated shapes (circle, square, triangle, star, spiral): offline.

    python -m jaxclf.main --config=configs/sketch_rnn_shapes.py --workdir=runs/sketch_rnn_shapes

The paper's recipe (configs/sketch_rnn_quickdraw.py) scaled to a few CPU minutes: enc 128,
dec 256, z 32, M 10, Nmax 32, batch 64, faster KL annealing (decay 0.999). The run logs
recon/offsets/pen/kl/kl_weight and draws samples, reconstructions and interpolations of
the test sketches into WORKDIR/report (see experiments/sketch_rnn/). ``:paper`` keeps the
paper's model sizes, ``:unconditional`` drops the encoder, ``:smoke`` runs two tiny steps.
"""

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    recipes.ha2017_sketch_rnn(c, enc_hidden=128, dec_hidden=256, z_size=32, num_mixtures=10, max_length=32)
    c.dataset.name = "sketch_shapes"
    c.dataset.eval_splits = ("test",)
    c.loss.kl_decay = 0.999
    c.model.recurrent_dropout = 0.0
    c.train.batch_size = c.train.eval_batch_size = 64
    c.train.num_steps = 2500
    c.train.steps_per_call = 50
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 250
    return recipes.apply_variant(c, arg, {"smoke": _smoke, "paper": _paper, "unconditional": _unconditional})


def _paper(c) -> None:
    c.model.enc_hidden, c.model.dec_hidden, c.model.z_size, c.model.num_mixtures = 256, 512, 128, 20


def _unconditional(c) -> None:
    c.model.name = "sketch_rnn_unconditional"


def _smoke(c) -> None:
    recipes.smoke(c)
    c.model.enc_hidden, c.model.dec_hidden, c.model.z_size, c.model.num_mixtures = 8, 8, 4, 2
