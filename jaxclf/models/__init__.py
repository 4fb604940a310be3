"""The model registry: every model is a flax.linen Module created by name.

Each family module exports ``MODELS``, a dict from registered name to a Module class
or a ``functools.partial`` of one (family members are variants of one class). The
registry is the union of those dicts, built here explicitly so that which names exist
never depends on import order. A family whose models define their own loss (task
'generative') also exports ``OBJECTIVES``: name -> {'objective': factory, 'scalars': names
of the scalars it returns, 'figures': what a finished run draws}.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn

from jaxclf.models import alexnet, conv1d, googlenet, lenet, linear, recurrent, resnet, sketch_rnn, text, vgg

_FAMILIES = (linear, lenet, conv1d, recurrent, alexnet, googlenet, vgg, resnet, sketch_rnn, text)

_REGISTRY: dict[str, Any] = {}
for _family in _FAMILIES:
    for _name, _factory in _family.MODELS.items():
        if _name in _REGISTRY:
            raise RuntimeError(f"model name {_name!r} registered twice")
        _REGISTRY[_name] = _factory


_OBJECTIVES: dict[str, Any] = {}
for _family in _FAMILIES:
    _OBJECTIVES.update(getattr(_family, "OBJECTIVES", {}))


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


def _objective_entry(name: str):
    if name not in _OBJECTIVES:
        raise ValueError(
            f"model {name!r} has no loss of its own (task 'generative'); models that have: "
            f"{', '.join(sorted(_OBJECTIVES))}; classifiers use task multiclass, binary or multilabel"
        )
    return _OBJECTIVES[name]


def objective(name: str, model: nn.Module, **kwargs: Any):
    """The loss of generative model ``name``: ``(outputs, batch, step) -> (loss, scalars)``,
    configured by ``kwargs`` (the config's ``loss`` section)."""
    factory = _objective_entry(name)["objective"]
    try:
        return factory(model, **kwargs)
    except TypeError as e:
        raise TypeError(f"loss of model {name!r}: {e}") from e


def objective_scalars(name: str) -> tuple[str, ...]:
    """The scalars the loss of generative model ``name`` returns (what its runs can log)."""
    return _objective_entry(name)["scalars"]


def figures(name: str):
    """``figures(out_dir, model, params, inputs, labels, class_names, seed=)`` of generative
    model ``name``: the samples a finished run draws into its report directory."""
    return _objective_entry(name)["figures"]
