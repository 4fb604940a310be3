"""IMDB movie reviews (TFDS ``imdb_reviews``: 25,000 train / 25,000 test, positive vs
negative), a bidirectional LSTM over word embeddings; max pooling over the valid steps.

Tokens as ``jaxclf.data.text`` makes them (lowercased words and punctuation, ``<br />``
removed, 20,000-token vocabulary from the train split, the first 256 tokens of a review).
Variants: :cnn (Kim 2014's CNN over randomly initialised embeddings), :smoke, :cnn_smoke.

    python -m jaxclf.main --config=configs/text_imdb.py --workdir=runs/text_imdb

Not yet run here (no dataset download on this machine; the tests train the smoke variants
on mock data). Published baselines for this setting are about 85-89% test accuracy. A train
step (batch 64 x 256 tokens) measured 0.85 s (LSTM) and 0.65 s (:cnn) on a busy 2-core CPU:
about 20 minutes for the 1,200 steps, plus evaluations.
"""

import ml_collections

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.task = "binary"  # one logit; label 1 = positive
    c.metrics = ("accuracy", "balanced_accuracy", "f1", "roc_auc")
    d = c.dataset
    d.name, d.image_key, d.label_key = "imdb_reviews", "text", "label"
    d.train_split, d.eval_splits = "train", ("test",)
    d.text.vocab_size, d.max_length, d.text.lowercase = 20_000, 256, True
    c.model = ml_collections.ConfigDict({
        "name": "text_rnn", "vocab_size": d.text.get_ref("vocab_size"), "embed_dim": 128, "dtype": "float32",
        "cell": "lstm", "hidden": 128, "bidirectional": True, "pooling": "max", "dropout_rate": 0.3,
    })
    c.optim.name, c.optim.lr, c.optim.clip_norm = "adam", 1e-3, 1.0
    t = c.train
    t.batch_size, t.eval_batch_size = 64, 500
    t.num_steps = 1_200  # about 3 epochs (391 steps each); these models overfit soon after
    t.log_every, t.eval_every, t.checkpoint_every, t.steps_per_call = 50, 400, 400, 50
    variants = {"smoke": recipes.text_smoke, "cnn": recipes.kim2014_text_cnn,
                "cnn_smoke": lambda c: recipes.text_smoke(recipes.kim2014_text_cnn(c))}
    return recipes.apply_variant(c, arg, variants)

