"""The model registry: every model is a flax.linen Module created by name.

Each family module exports ``MODELS``, a dict from registered name to a Module class
or a ``functools.partial`` of one (family members are variants of one class). The
registry is the union of those dicts, built here explicitly so that which names exist
never depends on import order.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from jaxclf.models import alexnet, conv1d, googlenet, lenet, linear, recurrent, resnet, sketch_rnn, vgg

_FAMILIES = (linear, lenet, conv1d, recurrent, alexnet, googlenet, vgg, resnet, sketch_rnn)

_REGISTRY: dict[str, Any] = {}
for _family in _FAMILIES:
    for _name, _factory in _family.MODELS.items():
        if _name in _REGISTRY:
            raise RuntimeError(f"model name {_name!r} registered twice")
        _REGISTRY[_name] = _factory


def names() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def create(name: str, *, num_classes: int, **kwargs: Any) -> nn.Module:
    """Returns the registered model ``name`` with ``num_classes`` outputs.

    Raises ValueError naming the valid choices for an unknown name, and TypeError
    naming the model for keyword arguments it does not take.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(names())}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    factory = _REGISTRY[name]
    try:
        return factory(num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise TypeError(f"model {name!r}: {e}") from e
