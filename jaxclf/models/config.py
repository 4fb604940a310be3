"""The ``model`` config section (a registered name plus keyword arguments for
``jaxclf.models.create``) and ``loss`` (keyword arguments of a model family's own loss)."""

from __future__ import annotations

from jaxclf.schema import Field, Section

MODEL = Section("the network: name plus keyword arguments of jaxclf.models.create (jaxclf.models.describe(name) lists them)", {
    "name": Field("lenet5", "a registered model (jaxclf.models.names())"),
    "dtype": Field("float32", "compute dtype: float32, or bfloat16 on accelerators (parameters stay float32)"),
})

LOSS = Section("task generative: keyword arguments of the model family's own loss (jaxclf.models.loss)")


def kwargs(model) -> dict:
    """The model section without its name: keyword arguments for models.create."""
    out = model.to_dict()
    out.pop("name")
    return out


def key_doc(name: str, key: str) -> str:
    """The doc of keyword ``key`` of model ``name`` ('' when it has none or the name is unknown)."""
    from jaxclf import models

    if name not in models.names():
        return ""
    return models.describe(name).get(key, {}).get("doc", "")


def validate(model) -> None:
    """Raises for an unknown model name, a keyword it does not take, or an unknown cell option."""
    from jaxclf import models

    if model.name not in models.names():
        raise ValueError(f"unknown model {model.name!r}; valid models: {', '.join(models.names())}")
    classes = {"num_classes": 2} if "num_classes" in models.describe(model.name) else {}
    built = models.create(model.name, **classes, **kwargs(model))  # raises on unknown kwargs
    if getattr(built, "cell_options", None):
        from jaxclf.models import cells

        cells.make_cell(built.cell, 1, options=built.cell_options)  # raises naming the cell's options


def validate_logged(name: str, names) -> None:
    """Task generative: raises unless model ``name``'s loss returns every scalar in ``names``."""
    from jaxclf import models

    valid = models.loss_scalars(name)
    unknown = sorted(set(names) - set(valid))
    if unknown:
        raise ValueError(f"model {name!r} does not log {unknown}; it logs: {', '.join(valid)}")
