"""The base of every section model of the configuration: frozen all the way down, unknown keys
refused.

Pydantic's ``frozen=True`` only stops assignment to a model's own fields; the mappings and
lists inside them (storage options, hyperparameter grids) would stay mutable, and a default
taken from a module constant would be shared with it. After validation every section replaces
them by :class:`FrozenDict` and :class:`FrozenList`, subclasses of ``dict`` and ``list`` (so
pydantic, ``json`` and ``isinstance`` checks see the usual types) that refuse changes. Copy one
(``dict(...)``, ``list(...)``) to change it, or use ``Config.model_copy(update=...)``.
"""

from __future__ import annotations

from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, model_validator


def _refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(f"the configuration is immutable: copy this {type(self).__name__} "
                    "(dict(...) / list(...)) or use Config.model_copy(update=...)")


class FrozenDict(dict):
    """A ``dict`` that refuses changes (a configuration mapping)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


class FrozenList(list):
    """A ``list`` that refuses changes (a configuration sequence)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = extend = insert = pop = remove = clear = _refuse
    sort = reverse = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (list(self),))


def frozen(value: Any) -> Any:
    """``value`` with every ``dict`` and ``list`` in it (recursively, tuples included) replaced
    by a :class:`FrozenDict` / :class:`FrozenList` copy; other values unchanged."""
    if isinstance(value, dict):
        return FrozenDict({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList(frozen(v) for v in value)
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(frozen(v) for v in value)
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="after")
    def _freeze_collections(self) -> _Frozen:
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, (dict, list, tuple)):
                object.__setattr__(self, name, frozen(value))
        return self
