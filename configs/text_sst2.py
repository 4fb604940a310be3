"""SST-2 sentence sentiment (TFDS ``glue/sst2``: 67,349 train phrases, 872 validation
sentences; the 1,821 test labels are hidden, -1), a bidirectional LSTM over word
embeddings; max pooling over the valid steps. Evaluated on the validation split.

Tokens as ``jaxclf.data.text`` makes them (lowercased words and punctuation, vocabulary
from the train split: all of its ~15,000 distinct tokens fit in 20,000).
Variants: :cnn (Kim 2014's CNN over randomly initialised embeddings), :smoke, :cnn_smoke.

    python -m jaxclf.main --config=configs/text_sst2.py --workdir=runs/text_sst2

Not yet run here (no dataset download on this machine; the tests train the smoke variants
on mock data). Kim 2014 reports 83.7% (CNN-rand) on SST-2; BiLSTMs from random embeddings
reach about 83-86% validation accuracy.
"""

import ml_collections

from jaxclf import recipes
from jaxclf.config import base_config


def get_config(arg=None):
    c = base_config()
    c.task = "binary"  # one logit; label 1 = positive
    c.metrics = ("accuracy", "balanced_accuracy", "f1", "roc_auc")
    d = c.dataset
    d.name, d.image_key, d.label_key = "glue/sst2", "sentence", "label"
    d.train_split, d.eval_splits = "train", ("validation",)
    d.text.vocab_size, d.max_length, d.text.lowercase = 20_000, 64, True  # sentences: at most ~60 tokens
    c.model = ml_collections.ConfigDict({
        "name": "text_rnn", "vocab_size": d.text.get_ref("vocab_size"), "embed_dim": 128, "dtype": "float32",
        "cell": "lstm", "hidden": 128, "bidirectional": True, "pooling": "max", "dropout_rate": 0.3,
    })
    c.optim.name, c.optim.lr, c.optim.clip_norm = "adam", 1e-3, 1.0
    t = c.train
    t.batch_size, t.eval_batch_size = 64, 436  # 872 validation sentences = 2 batches
    t.num_steps = 3_000  # about 3 epochs (1,053 steps each)
    t.log_every, t.eval_every, t.checkpoint_every, t.steps_per_call = 100, 500, 500, 100
    variants = {"smoke": recipes.text_smoke, "cnn": recipes.kim2014_text_cnn,
                "cnn_smoke": lambda c: recipes.text_smoke(recipes.kim2014_text_cnn(c))}
    return recipes.apply_variant(c, arg, variants)

