"""TFDS builders of raw (unnormalised, variable-length) stroke-3 sketches.

Normalisation and padding need the training split's statistics and Nmax, so they happen after
loading (``jaxclf.data.strokes.build``). Features are plain tensors, so the datasets are
prepared as ArrayRecord and read without TensorFlow.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxclf.data.strokes import _TEST_SEED_OFFSET, QUICKDRAW_CLASSES, SHAPES, SHAPES_PER_CLASS, make_shapes

QUICKDRAW_SPLITS = ("train", "valid", "test")


def _features(label):
    return tfds.features.FeaturesDict(
        {"strokes": tfds.features.Tensor(shape=(None, 3), dtype=np.float32), "label": label}
    )


def shape_examples(num_per_class: int, seed: int):
    """(key, example) pairs of ``make_shapes``, the TFDS form of the shapes."""
    sketches, labels = make_shapes(num_per_class, seed)
    for i, (s, label) in enumerate(zip(sketches, labels)):
        yield i, {"strokes": s, "label": int(label)}


class SketchShapes(tfds.core.GeneratorBasedBuilder):
    """Generated one-stroke shapes (``make_shapes``): 1,000 per class to train, 50 to test."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "make_shapes(1000, seed 0) / make_shapes(50, seed 1000003).",
        "2.0.0": "The same sketches, prepared as ArrayRecord without TensorFlow.",
    }

    def _info(self):
        return self.dataset_info_from_configs(
            description=self.__doc__, features=_features(tfds.features.ClassLabel(names=SHAPES)),
            supervised_keys=("strokes", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        seeds = {"train": 0, "test": _TEST_SEED_OFFSET}
        return {split: self._generate_examples(n, seeds[split]) for split, n in SHAPES_PER_CLASS.items()}

    def _generate_examples(self, num, seed):
        return shape_examples(num, seed)


def read_quickdraw_npz(path: Path) -> dict[str, np.ndarray]:
    """The ``train``/``valid``/``test`` sketch arrays of one sketch-rnn ``.npz`` file.

    Raises ValueError naming the file when it is not a readable .npz, lacks a split, or holds
    no sketches at all: a silently empty category would train a classifier that never sees it.
    """
    unreadable = f"{path} is not a readable sketch-rnn .npz file"
    try:
        f = np.load(path, encoding="latin1", allow_pickle=True)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise ValueError(f"{unreadable} ({type(e).__name__}: {e})") from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise ValueError(f"{unreadable} (it holds one array, not a .npz archive)")
    with f:
        missing = [s for s in QUICKDRAW_SPLITS if s not in f.files]
        if missing:
            raise ValueError(f"{path} has no {'/'.join(missing)} array (it has {', '.join(f.files) or 'none'}); "
                             f"a sketch-rnn .npz holds {', '.join(QUICKDRAW_SPLITS)}")
        try:
            out = {s: f[s] for s in QUICKDRAW_SPLITS}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
            raise ValueError(f"{unreadable} ({type(e).__name__}: {e})") from None
    if not any(len(a) for a in out.values()):
        raise ValueError(f"{path} holds no sketches (its {', '.join(QUICKDRAW_SPLITS)} arrays are empty)")
    return out


class SketchQuickdraw(tfds.core.GeneratorBasedBuilder):
    """QuickDraw sketch-rnn ``<category>.npz`` files placed in the manual dir, any subset of the
    345 categories; ``label`` is the category's index in ``QUICKDRAW_CLASSES``, so a category
    keeps its label (and name) whichever others are present."""

    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {
        "1.0.0": "stroke-3 sketches of every .npz in the manual dir.",
        "1.1.0": "labels are QuickDraw's category indices, with their names (were: sorted file order).",
        "2.0.0": "Prepared as ArrayRecord without TensorFlow; empty or unreadable .npz files are errors.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put <category>.npz files from https://storage.googleapis.com/quickdraw_dataset/sketchrnn "
        "into the manual dir (<data_dir>/downloads/manual)."
    )

    def _info(self):
        return self.dataset_info_from_configs(
            description=self.__doc__,
            features=_features(tfds.features.ClassLabel(names=QUICKDRAW_CLASSES)),
            supervised_keys=("strokes", "label"),
        )

    def _split_generators(self, dl_manager):
        paths = sorted(Path(dl_manager.manual_dir).glob("*.npz"))
        if not paths:  # (TFDS already refuses an empty manual dir; other files but no .npz end here)
            raise FileNotFoundError(f"no <category>.npz files in {dl_manager.manual_dir}; {self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        unknown = [p.name for p in paths if p.stem not in QUICKDRAW_CLASSES]
        if unknown:
            raise ValueError(f"{unknown} in {dl_manager.manual_dir} are not QuickDraw categories "
                             f"(<category>.npz, e.g. 'cat.npz'; the 345 are jaxclf.data.strokes.QUICKDRAW_CLASSES)")
        for path in paths:  # every file checked before any split is written (read again below)
            read_quickdraw_npz(path)
        return {split: self._generate_examples(paths, split) for split in QUICKDRAW_SPLITS}

    def _generate_examples(self, paths, split):
        for path in paths:
            label = QUICKDRAW_CLASSES.index(path.stem)
            for i, s in enumerate(read_quickdraw_npz(path)[split]):
                yield f"{path.stem}/{i}", {"strokes": np.asarray(s, np.float32), "label": label}
