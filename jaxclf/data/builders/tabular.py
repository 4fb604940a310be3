"""scikit-learn's bundled tabular datasets as TFDS datasets (no download).

* ``breast_cancer``: Wisconsin diagnostic breast cancer, 569 samples, 30 features, binary
  (label 1 = malignant, the positive class; sklearn codes malignant as 0, so it is flipped).
* ``wine``: 178 wines from three cultivars, 13 chemical features.

Both have a fixed stratified 75/25 train/test split drawn with seed 0. Features are stored
raw (float32); the input pipeline standardises them with train-split statistics.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

SPLIT_SEED = 0
TEST_FRACTION = 0.25


def stratified_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    return {"train": np.sort(train), "test": np.sort(test)}


class _SklearnTabular(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base (not a dataset of its own): subclasses name the sklearn loader and the class names."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"2.0.0": "Prepared as ArrayRecord without TensorFlow."}
    LOADER = ""
    CLASS_NAMES: tuple[str, ...] = ()
    NUM_FEATURES = 0

    @classmethod
    def arrays(cls) -> tuple[np.ndarray, np.ndarray]:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, cls.LOADER)()
        return bunch.data.astype(np.float32), bunch.target.astype(np.int64)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=self.__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "features": tfds.features.Tensor(shape=(self.NUM_FEATURES,), dtype=np.float32),
                    "label": tfds.features.ClassLabel(names=list(self.CLASS_NAMES)),
                }
            ),
            supervised_keys=("features", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        _, labels = self.arrays()
        return {name: self._generate_examples(idx) for name, idx in stratified_split(labels).items()}

    def _generate_examples(self, indices):
        x, y = self.arrays()
        for i in indices:
            yield int(i), {"features": x[i], "label": int(y[i])}


class BreastCancer(_SklearnTabular):
    """Wisconsin diagnostic breast cancer: 569 tumours, 30 features; 1 = malignant."""

    LOADER = "load_breast_cancer"
    CLASS_NAMES = ("benign", "malignant")
    NUM_FEATURES = 30

    @classmethod
    def arrays(cls):
        x, y = super().arrays()
        return x, 1 - y  # sklearn: 0 = malignant; here malignant is the positive class


class Wine(_SklearnTabular):
    """Three wine cultivars from 13 chemical measurements (178 wines)."""

    LOADER = "load_wine"
    CLASS_NAMES = ("class_0", "class_1", "class_2")
    NUM_FEATURES = 13
