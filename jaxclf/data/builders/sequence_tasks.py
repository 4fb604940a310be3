"""Sequence-to-sequence tasks with one target token per step, generated locally (no download).

Each exercises one sequence mode of the training loop (``task='sequence'``: the labels are
``(T,)`` token ids, one per step):

* ``token_order/reverse_t{T}`` and ``token_order/copy_t{T}`` (encoder-decoder): ``T`` symbols
  drawn uniformly from ``SYMBOLS`` (ids 1..8) and the end marker (id 0), one-hot, as float
  features ``(T + 1, 9)``; the targets are the same symbols reversed (or in order), then the
  end marker: ``[x_T .. x_1, end]``. Without attention a decoder must carry all ``T`` symbols
  in one state; with attention it can look each up (Bahdanau et al. 2015, Luong et al. 2015).
* ``running_parity`` (aligned tagging): ``PARITY_LENGTH`` random bits, one-hot ``(T, 2)``;
  the label of step ``t`` is the parity of bits 0..t (a unidirectional RNN needs one bit of
  state; a bag of steps cannot do it).
* ``class_sequences`` (generation from a class): the condition is a one-hot class
  ``(NUM_CLASSES,)``; the target is that class's fixed sequence of ``GEN_LENGTH - 1``
  symbols (seeded, one per class) then the end marker, each symbol replaced by a uniform
  random one with probability ``NOISE``: the generator must learn one sequence per class,
  and its teacher-forced token accuracy is at most ``1 - NOISE * 7/8 * 11/12`` (92%).

Every split is a pure function of (task, length, split): the same bytes on every build.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

END = 0
SYMBOLS = 8  # ids 1..SYMBOLS; 0 is the end marker
TOKEN_NAMES = ("end", *"abcdefgh")
LENGTHS = (5, 10, 20, 40, 70, 100)
ORDERS = ("reverse", "copy")
SIZES = {"train": 10_000, "test": 500}
PARITY_LENGTH = 20
NUM_CLASSES = 4
GEN_LENGTH = 12
NOISE = 0.1
SEED = 0


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *key])


def split_index(split: str) -> int:
    return {"train": 0, "test": 1}[split]


def token_order(order: str, length: int, n: int, split: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (n, length + 1, SYMBOLS + 1) float32 one-hot, targets (n, length + 1) int64)."""
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}; valid: {', '.join(ORDERS)}")
    symbols = _rng(ORDERS.index(order), length, split).integers(1, SYMBOLS + 1, size=(n, length))
    end = np.full((n, 1), END)
    source = np.concatenate([symbols, end], 1)
    target = np.concatenate([symbols[:, ::-1] if order == "reverse" else symbols, end], 1)
    return np.eye(SYMBOLS + 1, dtype=np.float32)[source], target.astype(np.int64)


def running_parity(length: int, n: int, split: int) -> tuple[np.ndarray, np.ndarray]:
    """(bits one-hot (n, length, 2) float32, parity of each prefix (n, length) int64)."""
    bits = _rng(2, length, split).integers(0, 2, size=(n, length))
    return np.eye(2, dtype=np.float32)[bits], (np.cumsum(bits, 1) % 2).astype(np.int64)


def class_prototypes() -> np.ndarray:
    """The class sequences (NUM_CLASSES, GEN_LENGTH) int64, each ending with END."""
    symbols = _rng(3).integers(1, SYMBOLS + 1, size=(NUM_CLASSES, GEN_LENGTH - 1))
    return np.concatenate([symbols, np.full((NUM_CLASSES, 1), END)], 1).astype(np.int64)


def class_sequences(n: int, split: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(one-hot classes (n, NUM_CLASSES) float32, noisy sequences (n, GEN_LENGTH) int64,
    classes (n,) int64). The end marker is never replaced."""
    rng = _rng(4, split)
    classes = rng.integers(0, NUM_CLASSES, size=n)
    target = class_prototypes()[classes]
    noisy = rng.random(target.shape) < NOISE
    noisy[:, -1] = False
    target = np.where(noisy, rng.integers(1, SYMBOLS + 1, size=target.shape), target)
    return np.eye(NUM_CLASSES, dtype=np.float32)[classes], target, classes


def _tokens(length: int):
    return tfds.features.Sequence(tfds.features.ClassLabel(names=TOKEN_NAMES), length=length)


class _Generated(tfds.core.GeneratorBasedBuilder):
    """Builds the splits of ``SIZES`` from ``self._arrays(n, split) -> {feature: (n, ...)}``."""

    VERSION = tfds.core.Version("1.0.0")

    def _split_generators(self, dl_manager):
        del dl_manager  # Generated: nothing to download.
        return {split: self._generate_examples(split) for split in SIZES}

    def _generate_examples(self, split):
        arrays = self._arrays(SIZES[split], split_index(split))
        for i in range(SIZES[split]):
            yield i, {k: v[i] for k, v in arrays.items()}


class TokenOrderConfig(tfds.core.BuilderConfig):
    """One order (reverse or copy) and sequence length ``T``."""

    def __init__(self, *, order: str, length: int, **kwargs):
        super().__init__(name=f"{order}_t{length}", description=f"{order} {length} symbols", **kwargs)
        self.order, self.length = order, length


class TokenOrder(_Generated):
    """``T`` symbols and an end marker -> the symbols reversed (or copied) and the end marker."""

    BUILDER_CONFIGS = [TokenOrderConfig(order=o, length=t) for o in ORDERS for t in LENGTHS]

    def _info(self) -> tfds.core.DatasetInfo:
        steps = self.builder_config.length + 1
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "sequence": tfds.features.Tensor(shape=(steps, SYMBOLS + 1), dtype=np.float32),
                "label": _tokens(steps),
            }),
            supervised_keys=("sequence", "label"),
        )

    def _arrays(self, n, split):
        x, y = token_order(self.builder_config.order, self.builder_config.length, n, split)
        return {"sequence": x, "label": y}


class RunningParity(_Generated):
    """Random bits -> the parity of every prefix (one label per step)."""

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "sequence": tfds.features.Tensor(shape=(PARITY_LENGTH, 2), dtype=np.float32),
                "label": tfds.features.Sequence(tfds.features.ClassLabel(names=("even", "odd")), length=PARITY_LENGTH),
            }),
            supervised_keys=("sequence", "label"),
        )

    def _arrays(self, n, split):
        x, y = running_parity(PARITY_LENGTH, n, split)
        return {"sequence": x, "label": y}


class ClassSequences(_Generated):
    """A one-hot class -> that class's token sequence with noise."""

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict({
                "condition": tfds.features.Tensor(shape=(NUM_CLASSES,), dtype=np.float32),
                "label": _tokens(GEN_LENGTH),
                "class": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
            }),
            supervised_keys=("condition", "label"),
        )

    def _arrays(self, n, split):
        condition, tokens, classes = class_sequences(n, split)
        return {"condition": condition, "label": tokens, "class": classes}
