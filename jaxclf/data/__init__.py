"""Datasets (TFDS, including the offline builders in ``jaxclf.data.builders``) and the
deterministic in-memory input pipeline."""

from jaxclf.data.input_pipeline import (
    Dataset,
    Split,
    augment,
    check_exists,
    eval_batches,
    load,
    train_indices,
)

__all__ = ["Dataset", "Split", "augment", "check_exists", "eval_batches", "load", "train_indices"]
