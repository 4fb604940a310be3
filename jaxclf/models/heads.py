"""Classifier heads: which parameters they are, and replacing one for another class count.

Every jaxclf classifier ends in a dense layer named ``head`` (GoogLeNet: ``fc``, plus the
last layer of each aux head) reading the pooled features that ``output='features'``
returns, so ``logits == head(features)``. ``num_classes=0`` builds no head at all.
"""

from __future__ import annotations

import re
from typing import Any

import flax.linen as nn
from flax import traverse_util

# The classifier layers: 'head' (every family; text_rnn's is 'classifier/head'), GoogLeNet's
# 'fc' and its aux heads' last layers. Their shapes depend on the class count.
HEAD_PATTERN = r"(^|/)(head|fc|aux\d/Dense_1)/"


def reset_head(model: nn.Module, variables: dict, num_classes: int, key, *example, **kwargs) -> tuple[nn.Module, dict]:
    """``(model.clone(num_classes=num_classes), variables)`` with a freshly initialised head
    and everything else (parameters and other collections, e.g. 'batch_stats') kept.

    ``example`` (and ``kwargs``, e.g. ``lengths``) are example inputs for ``init``, which runs
    with ``train=False``; ``num_classes=0`` removes the head (a feature extractor).
    """
    new = model.clone(num_classes=num_classes)
    fresh = traverse_util.flatten_dict(dict(new.init(key, *example, train=False, **kwargs)), sep="/")
    old = traverse_util.flatten_dict(dict(variables), sep="/")
    merged: dict[str, Any] = {}
    for path, value in fresh.items():
        collection, _, rest = path.partition("/")
        is_head = collection == "params" and re.search(HEAD_PATTERN, rest + "/")
        merged[path] = value if is_head or path not in old else old[path]
    return new, traverse_util.unflatten_dict(merged, sep="/")
