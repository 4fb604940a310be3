"""Remember the first symbol: a long-range-dependency classification task, generated locally.

A sequence of ``T`` one-hot steps over ``NUM_CLASSES + NUM_DISTRACTORS`` features. Step 0
holds one of ``NUM_CLASSES`` class symbols, which *is* the label; steps 1..T-1 hold
distractor symbols drawn uniformly from a disjoint alphabet. A many-to-one model reading
the state after the last step must carry the first symbol across ``T - 1`` steps of noise:
the task is trivial to represent (any cell can hold a value), so what fails as ``T`` grows
is learning it, the vanishing gradient (after Hochreiter and Schmidhuber 1997, sec. 5).

One TFDS config per dependency length, ``first_symbol/t10`` .. ``first_symbol/t200``;
4,000 train and 1,000 test sequences each, seeded (the same bytes on every build), balanced
in expectation. Inputs are float32 ``(T, 8)``, stored as ``sequence``. The ``_n40000``
configs (``first_symbol/t100_n40000``) have 40,000 training sequences and the same test set:
4,000 random distractor strings are few enough to memorise from their last few symbols, a
short-range shortcut that competes with learning the long-range rule.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

NUM_CLASSES = 4
NUM_DISTRACTORS = 4
FEATURES = NUM_CLASSES + NUM_DISTRACTORS
LENGTHS = (10, 25, 50, 100, 200)
SIZES = {"train": 4000, "test": 1000}
LARGE_TRAIN = 40_000
SEED = 0


def generate(length: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences ``(n, length, FEATURES)`` float32 and labels ``(n,)`` int64.

    Pure in ``(length, n, seed)``: a fresh numpy Generator seeded with all three.
    """
    rng = np.random.default_rng([seed, length, n])
    labels = rng.integers(0, NUM_CLASSES, size=n)
    symbols = NUM_CLASSES + rng.integers(0, NUM_DISTRACTORS, size=(n, length))
    symbols[:, 0] = labels
    return np.eye(FEATURES, dtype=np.float32)[symbols], labels.astype(np.int64)


def split_seed(split: str) -> int:
    """Train and test are independent draws (at T = 10, 5 of the 1,000 test sequences also
    occur in training: there are only 4^10 sequences; none from T = 25 on)."""
    return SEED * 10 + {"train": 0, "test": 1}[split]


class FirstSymbolConfig(tfds.core.BuilderConfig):
    """One dependency length ``T`` and training-set size."""

    def __init__(self, *, length: int, train_size: int = SIZES["train"], **kwargs):
        suffix = "" if train_size == SIZES["train"] else f"_n{train_size}"
        description = f"T = {length} steps, {train_size} training sequences"
        super().__init__(name=f"t{length}{suffix}", description=description, **kwargs)
        self.length, self.sizes = length, {**SIZES, "train": train_size}


class FirstSymbol(tfds.core.GeneratorBasedBuilder):
    """Class = the symbol at step 0, followed by T - 1 distractor symbols."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"2.0.0": "Prepared as ArrayRecord without TensorFlow."}
    BUILDER_CONFIGS = [FirstSymbolConfig(length=t, train_size=n) for n in (SIZES["train"], LARGE_TRAIN) for t in LENGTHS]

    def _info(self) -> tfds.core.DatasetInfo:
        length = self.builder_config.length
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "sequence": tfds.features.Tensor(shape=(length, FEATURES), dtype=np.float32),
                    "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
                }
            ),
            supervised_keys=("sequence", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Generated: nothing to download.
        return {split: self._generate_examples(split) for split in SIZES}

    def _generate_examples(self, split):
        x, y = generate(self.builder_config.length, self.builder_config.sizes[split], split_seed(split))
        for i in range(len(y)):
            yield i, {"sequence": x[i], "label": int(y[i])}
