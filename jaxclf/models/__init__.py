"""The model registry: every model is a flax.linen Module created by name.

Each family module exports ``MODELS``, a dict from registered name to a Module class
or a ``functools.partial`` of one (family members are variants of one class). The
registry is the union of those dicts, built here explicitly so that which names exist
never depends on import order. A family whose models define their own loss (task
'generative') also exports ``LOSSES``: name -> {'loss': factory, 'scalars': names
of the scalars it returns, 'figures': what a finished run draws}.

Conventions shared by every model (docs/models.md shows them in use): ``train`` is a required
keyword of ``__call__``; classifiers take ``output='logits' | 'features' | 'stages'`` and
``num_classes=0`` (no head); ``dtype``/``param_dtype`` everywhere; ``remat`` on the deep ones.
``describe(name)`` lists a model's keywords with defaults and docs.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Any

import flax.linen as nn

from jaxclf.models import alexnet, conv1d, googlenet, lenet, linear, recurrent, resnet, sketch_rnn, text, vgg

from jaxclf.models.heads import HEAD_PATTERN, reset_head  # noqa: E402,F401  (public API)

_FAMILIES = (linear, lenet, conv1d, recurrent, alexnet, googlenet, vgg, resnet, sketch_rnn, text)

_REGISTRY: dict[str, Any] = {}
for _family in _FAMILIES:
    for _name, _factory in _family.MODELS.items():
        if _name in _REGISTRY:
            raise RuntimeError(f"model name {_name!r} registered twice")
        _REGISTRY[_name] = _factory


_LOSSES: dict[str, Any] = {}
for _family in _FAMILIES:
    _LOSSES.update(getattr(_family, "LOSSES", {}))


def names() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def _factory(name: str):
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(names())}")
    return _REGISTRY[name]


def _attribute_docs(cls: type) -> dict[str, str]:
    """One line per attribute from the class docstring's ``Attributes:`` section."""
    docs: dict[str, str] = {}
    lines = inspect.getdoc(cls).splitlines() if inspect.getdoc(cls) else []
    start = next((i + 1 for i, line in enumerate(lines) if line.strip() == "Attributes:"), len(lines))
    current = None
    for line in lines[start:]:
        match = re.match(r"^\s{2}(\w+): (.*)$", line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.startswith("    "):
            docs[current] += " " + line.strip()
        elif line.strip():
            break
    return docs


def describe(name: str) -> dict[str, dict[str, Any]]:
    """The keyword arguments ``create(name, ...)`` takes: keyword -> {'default', 'required',
    'doc'}, defaults as the registered variant sets them (e.g. resnet20's widths)."""
    factory = _factory(name)
    cls = factory.func if isinstance(factory, functools.partial) else factory
    preset = factory.keywords if isinstance(factory, functools.partial) else {}
    docs = _attribute_docs(cls)
    out = {}
    own = cls.__dict__.get("__annotations__", {})
    for field in sorted(dataclasses.fields(cls), key=lambda f: f.name not in own):  # shared (inherited) ones last
        if field.name in ("parent", "name") or not field.init:
            continue
        default = preset.get(field.name, field.default)
        required = default is dataclasses.MISSING
        out[field.name] = {"default": None if required else default, "required": required,
                           "doc": docs.get(field.name, "")}
    return out


def takes_features(name: str) -> bool:
    """Whether model ``name`` is a classifier with feature extraction (``output=`` and
    ``num_classes=0``)."""
    factory = _factory(name)
    cls = factory.func if isinstance(factory, functools.partial) else factory
    return "output" in inspect.signature(cls.__call__).parameters


def create(name: str, **kwargs: Any) -> nn.Module:
    """Returns the registered model ``name`` built with ``kwargs`` (``describe(name)`` lists
    them with defaults and docs).

    Classifiers need ``num_classes``; 0 gives a feature extractor (no head: the model returns
    the pooled features). Models without classes (sketch_rnn) take none. Raises ValueError
    naming the valid choices for an unknown name or class count, and TypeError naming the
    model and its valid keywords for a keyword it does not take.
    """
    factory = _factory(name)
    valid = describe(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise TypeError(f"model {name!r} takes no keyword {', '.join(map(repr, unknown))}; "
                        f"valid: {', '.join(valid)} (see jaxclf.models.describe({name!r}))")
    if "num_classes" in valid:
        if "num_classes" not in kwargs:
            raise TypeError(f"model {name!r} needs num_classes (0: features only)" if takes_features(name)
                            else f"model {name!r} needs num_classes")
        smallest = 0 if takes_features(name) else 1
        n = kwargs["num_classes"]
        if not isinstance(n, int) or isinstance(n, bool) or n < smallest:
            raise ValueError(f"model {name!r}: num_classes must be an int >= {smallest}"
                             f"{' (0: features only)' if smallest == 0 else ''}; got {n!r}")
    try:
        return factory(**kwargs)
    except TypeError as e:
        raise TypeError(f"model {name!r}: {e}") from e


def _loss_entry(name: str):
    if name not in _LOSSES:
        raise ValueError(
            f"model {name!r} has no loss of its own (task 'generative'); models that have: "
            f"{', '.join(sorted(_LOSSES))}; classifiers use task multiclass, binary or multilabel"
        )
    return _LOSSES[name]


def loss(name: str, model: nn.Module, **kwargs: Any):
    """The loss of generative model ``name``: ``(outputs, batch, step) -> (loss, scalars)``,
    configured by ``kwargs`` (the config's ``loss`` section)."""
    factory = _loss_entry(name)["loss"]
    try:
        return factory(model, **kwargs)
    except TypeError as e:
        raise TypeError(f"loss of model {name!r}: {e}") from e


def loss_scalars(name: str) -> tuple[str, ...]:
    """The scalars the loss of generative model ``name`` returns (what its runs can log)."""
    return _loss_entry(name)["scalars"]


def figures(name: str):
    """``figures(out_dir, model, params, inputs, labels, class_names, seed=)`` of generative
    model ``name``: the samples a finished run draws into its report directory."""
    return _loss_entry(name)["figures"]


def from_config(config, num_classes: int) -> nn.Module:
    """The model a run config describes (``config.model``: name and keyword arguments of
    :func:`create`), with ``num_classes`` outputs (one logit for task 'binary')."""
    kwargs = config.model.to_dict()
    name = kwargs.pop("name")
    if "num_classes" in describe(name):
        kwargs["num_classes"] = 1 if config.task == "binary" else num_classes
    return create(name, **kwargs)
