"""MNIST-1D (Greydanus 2020), generated locally by the ``mnist1d`` package: no download.

Ten 1-D digit templates, padded, scaled, sheared, translated and noised into sequences of
40 values. With the package's default arguments (seed 42) this is the paper's dataset:
4,000 training and 1,000 test sequences. Stored as (40, 1): 40 time steps of 1 feature.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

LENGTH = 40


def generate() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    return make_dataset(get_dataset_args())


class Mnist1d(tfds.core.GeneratorBasedBuilder):
    """MNIST-1D sequences (40 steps x 1 feature), 4,000 train / 1,000 test."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"2.0.0": "Prepared as ArrayRecord without TensorFlow."}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "sequence": tfds.features.Tensor(shape=(LENGTH, 1), dtype=np.float32),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("sequence", "label"),
            homepage="https://github.com/greydanus/mnist1d",
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        return {"train": self._generate_examples(""), "test": self._generate_examples("_test")}

    def _generate_examples(self, suffix):
        data = generate()
        x, y = data["x" + suffix].astype(np.float32), data["y" + suffix]
        for i in range(len(y)):
            yield i, {"sequence": x[i, :, None], "label": int(y[i])}
