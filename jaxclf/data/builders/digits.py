"""scikit-learn's bundled handwritten digits (UCI optdigits test set) as a TFDS dataset.

1,797 greyscale 8x8 images of the digits 0-9, shipped inside scikit-learn, so building it
needs no network. The split is fixed: a stratified 450-image test set drawn with a fixed
seed, the other 1,347 images for training.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

TEST_SIZE = 450
SPLIT_SEED = 0


def split_indices() -> dict[str, np.ndarray]:
    """The fixed stratified train/test indices into ``sklearn.datasets.load_digits()``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
    )
    return {"train": np.sort(train), "test": np.sort(test)}


class Digits(tfds.core.GeneratorBasedBuilder):
    """8x8 handwritten digits, pixel values 0..16 rescaled to 0..255."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "Stratified 1,347/450 split of sklearn's load_digits, seed 0.",
        "2.0.0": "The same images as a uint8 tensor (not PNG): prepared and read without TensorFlow.",
    }

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Everything is bundled with scikit-learn.
        return {name: self._generate_examples(idx) for name, idx in split_indices().items()}

    def _generate_examples(self, indices):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
        for i in indices:
            yield int(i), {"image": images[i], "label": int(digits.target[i])}
