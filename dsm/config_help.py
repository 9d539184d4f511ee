"""Help with the configuration: its JSON schema and the valid keys at the place of an error.

:func:`schema` is what ``dsm config schema`` prints; :func:`explain` turns one pydantic error
into the line ``dsm config check`` (and every command loading a configuration) prints: an
unknown key gets the valid keys at its place and a "did you mean", a section given as
something other than a mapping gets the keys it takes.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

__all__ = ["explain", "keys_at", "schema"]

_NOT_A_MAPPING = ("model_type", "model_attributes_type", "dict_type")


def schema() -> dict[str, Any]:
    """The JSON schema of the whole configuration (:class:`dsm.config.Config`), with every
    section's docstring and every field's description."""
    from dsm.config import Config  # noqa: PLC0415 - cycle: dsm.config imports this module

    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Config.model_json_schema(),
            "title": "dsm run configuration"}


def _members(annotation: Any) -> tuple[type[BaseModel] | None, Any]:
    """``(model, None)`` when ``annotation`` is (an optional) section model, ``(None, element)``
    for a list or mapping of something, else ``(None, None)``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        models = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _members(models[0]) if len(models) == 1 else (None, None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, None
    if origin is tuple:
        return None, typing.get_args(annotation)[0]
    if origin is dict:
        return None, typing.get_args(annotation)[1]
    return None, None


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The section model at ``loc`` (a pydantic error location) under the top level, if any."""
    from dsm.config import Config  # noqa: PLC0415 - cycle: dsm.config imports this module

    model: type[BaseModel] | None = Config
    element: Any = None
    for part in loc:
        if model is not None:
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            model, element = _members(field.annotation)
        elif element is not None:  # an index into a list or a key of a mapping
            model, element = _members(element)
        else:
            return None
    return model


def keys_at(loc: Sequence[int | str]) -> list[str] | None:
    """The keys the section at ``loc`` takes (required ones first, marked ``(required)``), or
    None when ``loc`` is no section."""
    model = _model_at(loc)
    if model is None:
        return None
    fields = model.model_fields
    return ([f"{k} (required)" for k, f in fields.items() if f.is_required()]
            + [k for k, f in fields.items() if not f.is_required()])


def _place(loc: Sequence[int | str]) -> str:
    """``validation.stations[0].path`` for the location ``("validation", "stations", 0, "path")``."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return text or "the top level"


def explain(err: Mapping[str, Any]) -> str:
    """One pydantic error (an item of ``ValidationError.errors()``) as ``key: problem``, with
    the valid keys at that place for an unknown key or a section that is not a mapping."""
    loc = tuple(err["loc"])
    key = _place(loc)
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden" and loc:
        valid = keys_at(loc[:-1]) or []
        names = [k.removesuffix(" (required)") for k in valid]
        close = difflib.get_close_matches(str(loc[-1]), names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{key}: unknown key; {hint}{_place(loc[:-1])} takes: {', '.join(valid)}"
    if err["type"] in _NOT_A_MAPPING:
        takes = keys_at(loc)
        if takes is not None:
            return f"{key}: Input should be a valid dictionary; {key} takes: {', '.join(takes)}"
        inner = keys_at((*loc, "*")) if loc else None  # a mapping of sections, e.g. inputs.geotiff
        if inner is not None:
            return f"{key}: {msg}; {key} maps a name to a mapping of: {', '.join(inner)}"
    return f"{key}: {msg}"
