"""Datasets (TFDS ArrayRecord files read without TensorFlow, including the offline builders in
``jaxclf.data.builders``), the deterministic in-memory input pipeline, and the streaming one
(``stream``) for datasets too large for memory."""

from jaxclf.data import stream
from jaxclf.data.sources import check_exists, prepare
from jaxclf.data.input_pipeline import (
    Dataset,
    Split,
    augment_batch,
    dataset_record,
    eval_batches,
    index_tables,
    load,
    table_indices,
    train_indices,
)

__all__ = ["Dataset", "Split", "augment_batch", "check_exists", "dataset_record", "eval_batches", "index_tables", "load", "stream",
           "prepare", "table_indices", "train_indices"]
