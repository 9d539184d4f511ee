"""The base of every section model of the configuration: frozen all the way down, unknown keys
refused.

Pydantic's ``frozen=True`` only stops assignment to a model's own fields; the mappings and
lists inside them (storage options, hyperparameter grids) would stay mutable, and a default
taken from a module constant would be shared with it. After validation every section replaces
them by :class:`~dsm.frozen.FrozenDict` and :class:`~dsm.frozen.FrozenList`, subclasses of ``dict`` and ``list`` (so
pydantic, ``json`` and ``isinstance`` checks see the usual types) that refuse changes. Copy one
(``dict(...)``, ``list(...)``) to change it, or use ``Config.model_copy(update=...)``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator

from dsm.frozen import frozen


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="after")
    def _freeze_collections(self) -> _Frozen:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, (dict, list, tuple)):
                object.__setattr__(self, name, frozen(value))
        return self
