"""What the in-memory input pipeline produces: a dataset's preprocessed splits as host arrays,
with its classes and the preprocessing a prediction must repeat."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Split:
    """One split's preprocessed inputs and int32 labels, as host arrays. Inputs are float32,
    or int32 token ids for text; ``lengths`` (int32 per example) marks the valid steps of
    variable-length sequences (text, strokes), None when every example is whole."""

    inputs: np.ndarray
    labels: np.ndarray
    lengths: np.ndarray | None = None

    @property
    def num_examples(self) -> int:
        return len(self.labels)

    def take(self, indices) -> "Split":
        """The examples at ``indices`` (a boolean mask or integer positions)."""
        lengths = None if self.lengths is None else self.lengths[indices]
        return Split(self.inputs[indices], self.labels[indices], lengths)

    def arrays(self) -> dict[str, np.ndarray]:
        """The batchable arrays: inputs, labels and (if any) lengths."""
        out = {"inputs": self.inputs, "labels": self.labels}
        return out if self.lengths is None else {**out, "lengths": self.lengths}


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    splits: dict[str, Split]
    num_classes: int
    class_names: tuple[str, ...] = ()
    mean: Any = None  # per-channel normalisation applied to every split (jaxclf.predict needs it)
    std: Any = None
    preprocessing: dict = dataclasses.field(default_factory=dict)  # e.g. vocabulary, stroke scale

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example, without the batch dimension."""
        return next(iter(self.splits.values())).inputs.shape[1:]

    @property
    def input_dtype(self) -> np.dtype:
        return next(iter(self.splits.values())).inputs.dtype

    @property
    def label_shape(self) -> tuple[int, ...]:
        """The shape of one example's labels: () for a class, (T,) for per-step tokens."""
        return next(iter(self.splits.values())).labels.shape[1:]
