"""Read-only ``dict`` and ``list`` for records that must not change once made: the configuration
(:mod:`dsm.config.base`) and the typed model cards (:mod:`dsm.models.period_cards`).

:class:`FrozenDict` and :class:`FrozenList` subclass ``dict`` and ``list`` (so pydantic, ``json``
and ``isinstance`` checks see the usual types) and refuse every change; copy one (``dict(...)``,
``list(...)``) to change it. :func:`frozen` makes them all the way down.
"""

from __future__ import annotations

from typing import Any, NoReturn


def _refuse(self: Any, *args: Any, **kwargs: Any) -> NoReturn:
    raise TypeError(f"this {type(self).__name__} is immutable: copy it (dict(...) / list(...)) to change it "
                    "(a configuration: Config.model_copy(update=...))")


class FrozenDict(dict):
    """A ``dict`` that refuses changes (of the configuration or a typed record)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (dict(self),))


class FrozenList(list):
    """A ``list`` that refuses changes (of the configuration or a typed record)."""

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


__all__ = ["FrozenDict", "FrozenList", "frozen"]
