"""Reading a configuration: YAML or a mapping -> validated :class:`~dsm.config.Config`, local
paths made absolute against the YAML file's folder, errors as :class:`ConfigError`; and back
to YAML (:func:`dump`)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from dsm.config.inputs import Band
from dsm.config.root import Config
from dsm.config_help import explain
from dsm.errors import ConfigError


def _absolute(value: Any, base: Path, resolve: bool = True) -> Any:
    """A local path made absolute against ``base`` (the YAML file's folder); URLs and
    non-strings unchanged. ``resolve=False`` keeps glob patterns and links as written."""
    if not isinstance(value, str) or "://" in value:
        return value
    path = base / os.path.expanduser(value)
    return str(path.resolve() if resolve else path)


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    stores = raw.get("stores")
    if isinstance(stores, dict):
        for key, value in stores.items():
            if key != "storage_options":
                stores[key] = _absolute(value, base)
    _resolve_input_paths(raw.get("inputs"), base)
    _resolve_validation_paths(raw.get("validation"), base)
    run = raw.get("run")
    if isinstance(run, dict) and "records" in run:
        run["records"] = _absolute(run["records"], base)
    return raw


def _resolve_validation_paths(section: Any, base: Path) -> None:
    """Make the local paths of ``validation:`` absolute (relative to the YAML folder), in place."""

    def local(v: Any) -> Any:
        return _absolute(v, base)

    if not isinstance(section, dict):
        return
    for key in ("weather", "out", "report"):
        if section.get(key) is not None:
            section[key] = local(section[key])
    if isinstance(section.get("compare"), dict):
        section["compare"] = {k: local(v) for k, v in section["compare"].items()}
    for key in ("stations", "products"):
        for item in section.get(key) or []:
            if isinstance(item, dict) and "path" in item:
                item["path"] = local(item["path"])


def _resolve_input_paths(inputs: Any, base: Path) -> None:
    """Make the local paths/globs of ``inputs:`` absolute (relative to the YAML folder), in place."""

    def local(v: Any) -> Any:
        return _absolute(v, base, resolve=False)

    if not isinstance(inputs, dict):
        return
    sources = [v for k, v in inputs.items() if k not in ("storage_options", "geotiff", "soil")]
    sources += list((inputs.get("geotiff") or {}).values()) if isinstance(inputs.get("geotiff"), dict) else []
    for src in sources:
        for key in ("paths", "catalog", *get_args(Band), "state"):  # catalog: inputs.stac
            p = src.get(key) if isinstance(src, dict) else None
            if p is not None:
                src[key] = [local(x) for x in p] if isinstance(p, list) else local(p)
    soil = inputs.get("soil")
    if isinstance(soil, dict):
        for k in ("sand", "silt", "clay", "soilgrids"):
            soil[k] = local(soil.get(k)) if soil.get(k) is not None else None


def _format_errors(source: str, exc: ValidationError) -> str:
    """One line per error, ``key: problem``, with the valid keys where a key is unknown or a
    section is not a mapping (:func:`dsm.config_help.explain`)."""
    return "\n".join([f"invalid configuration {source}:", *(f"  {explain(err)}" for err in exc.errors())])


def from_dict(raw: dict[str, Any], source: str = "<dict>", base: Path | None = None) -> Config:
    """Validate a configuration mapping; raise :class:`ConfigError` naming each bad key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration {source}: expected a mapping at the top level")
    if base is not None:
        raw = _resolve_paths(copy.deepcopy(raw), base)  # the caller's mapping stays as it was
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None
    except ConfigError as exc:  # raised by shared checks such as check_dates
        raise ConfigError(f"invalid configuration {source}: {exc}") from None


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML configuration file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"configuration {path} is not valid YAML: {exc}") from None
    return from_dict(raw, source=str(path), base=path.parent)


def dump(config: Config) -> str:
    """The configuration as YAML text (round-trips through :func:`load`)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
