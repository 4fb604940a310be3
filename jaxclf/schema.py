"""Config sections declared with their defaults and a one-line doc per key.

Each package declares the section it reads as a :class:`Section` of :class:`Field` (or nested
sections), so the docs sit next to the defaults: :meth:`Section.build` makes a fresh
ConfigDict of the defaults, :meth:`Section.docs` the ``dotted key -> doc`` table that
``python -m jaxclf.main --print_config`` prints. Packages never import ``jaxclf.config``: it
assembles their sections.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections


@dataclasses.dataclass(frozen=True)
class Field:
    """One key: its default, what it does, and (default None) the type an override must have."""

    default: Any
    doc: str
    type: type | None = None

    def value(self):
        if self.default is not None:
            return self.default
        if self.type is None:
            raise TypeError(f"a field whose default is None needs its type ({self.doc!r})")
        return ml_collections.FieldReference(None, field_type=self.type)  # fresh: configs do not share it


@dataclasses.dataclass(frozen=True)
class Section:
    """A group of keys (a ConfigDict): a doc for the group and ``key -> Field | Section``."""

    doc: str
    fields: dict[str, Field | Section] = dataclasses.field(default_factory=dict)

    def build(self) -> ml_collections.ConfigDict:
        c = ml_collections.ConfigDict()
        for key, field in self.fields.items():
            c[key] = field.build() if isinstance(field, Section) else field.value()
        return c

    def docs(self, prefix: str) -> dict[str, str]:
        """``{prefix: section doc, prefix.key: key doc, ...}``, nested sections included."""
        out = {prefix: self.doc}
        for key, field in self.fields.items():
            name = f"{prefix}.{key}"
            out.update(field.docs(name) if isinstance(field, Section) else {name: field.doc})
        return out
