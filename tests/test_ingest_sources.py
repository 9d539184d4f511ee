"""The ingest's source table: every input of the configuration is exactly one Source object, and
the plan and the tasks know no source by name (a new product is a new class in the table)."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest
import xarray as xr

import dsm.ingest.sources as sources_mod
from dsm import config as config_mod
from dsm.config import Config, InputsConfig
from dsm.cube import Layout, create_cube, open_cube
from dsm.grid import Region
from dsm.ingest.plan import plan
from dsm.ingest.source_precip import PrecipSource
from dsm.ingest.source_stac import StacSource
from dsm.ingest.source_static import StaticSource
from dsm.ingest.sources import (
    FAMILIES,
    AlbedoSource,
    GeotiffSource,
    ModisSource,
    ReflectanceSource,
    SmapSource,
    configured_sources,
    source_named,
)
from dsm.ingest.tasks import run_task
from dsm.ingest.work import Group, Plan, Task

INGEST = Path(sources_mod.__file__).parent
TIF = "s3://b/*.tif"
BASE = {"region": {"cells": [300, 900, 1, 1]}, "dates": {"start": "2021-08-13", "end": "2021-08-14"},
        "stores": {"cube": "c.zarr"}}
#: Every kind of input, over two configurations (reflectance and mod09a1 exclude each other;
#: a GeoTIFF series or STAC asset needs a variable no MODIS source makes).
MODIS_AND_STATIC = {"smap": {"paths": "s3://b/*.h5"}, "mod11a1": {"paths": "x"}, "mcd43": {"paths": "x"},
                    "mod15a2h": {"paths": "x"}, "mod09a1": {"paths": "x"}, "mod13a2": {"paths": "x"},
                    "precip": {"paths": "x", "product": "era5land"}, "dem": {"paths": TIF}, "slope": {"paths": TIF},
                    "aspect": {"paths": TIF}, "soil": {"sand": TIF, "clay": TIF}, "land_mask": {"paths": TIF}}
FILES_AND_CATALOG = {"reflectance": {b: TIF for b in ("b2", "b4", "b6", "b7")}, "geotiff": {"lst": {"paths": TIF}},
                     "stac": {"catalog": "s3://b/catalog.json", "assets": {"ndvi": {"asset": "NDVI"}}}}
EXPECTED = {"smap": SmapSource, "mod11a1": ModisSource, "mcd43": AlbedoSource, "mod15a2h": ModisSource,
            "mod09a1": ModisSource, "mod13a2": ModisSource, "precip": PrecipSource, "static": StaticSource,
            "reflectance": ReflectanceSource, "geotiff:lst": GeotiffSource, "stac:ndvi": StacSource}


def _cfg(inputs: dict) -> Config:
    return config_mod.from_dict({**BASE, "inputs": inputs})


def test_every_input_is_exactly_one_source_of_one_class():
    """Each input of the configuration resolves to one source, of the class of its product,
    found again by its name (as a worker finds a task's source)."""
    found = {}
    for inputs in (MODIS_AND_STATIC, FILES_AND_CATALOG):
        cfg = _cfg(inputs)
        table = configured_sources(cfg)
        assert not set(table) & set(found)
        found.update({name: type(src) for name, src in table.items()})
        assert all(source_named(cfg, name) is not None and type(source_named(cfg, name)) is type(src)
                   for name, src in table.items())
    assert found == EXPECTED
    with pytest.raises(config_mod.ConfigError, match="'smap'"):
        source_named(_cfg(FILES_AND_CATALOG), "smap")


@pytest.mark.parametrize("field", sorted(set(InputsConfig.model_fields) - {"storage_options", "read"}))
def test_every_input_setting_is_made_by_one_family(field):
    """Every input setting of the configuration (alone) gives sources, made by one family,
    whose settings name it (the cube's settings record, :func:`dsm.fingerprint.cube_update`)."""
    inputs = {field: {**MODIS_AND_STATIC, **FILES_AND_CATALOG}[field]}
    cfg = _cfg(inputs)
    families = [f for f in FAMILIES if list(f(cfg.inputs))]
    assert len(families) == 1
    table = configured_sources(cfg)
    assert table and all(any(s.startswith(f"inputs.{field}") for s in src.settings) for src in table.values())


def _string_literals(path: Path) -> set[str]:
    return {n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


@pytest.mark.parametrize("module", ["plan.py", "tasks.py", "write.py"])
def test_the_plan_and_the_tasks_name_no_source(module):
    """No source name, static layer or name prefix is a string of the plan, the tasks or the
    writer: they go through the table of :mod:`dsm.ingest.sources`."""
    names = {*EXPECTED, "geotiff", "stac", "dem", "slope", "aspect", "soil", "sand", "silt", "clay", "land_mask",
             "imerg", "chirps", "era5land"}
    literals = _string_literals(INGEST / module)
    assert not literals & names
    assert not [s for s in literals if s.startswith(("geotiff:", "stac:"))]


class _Constant:
    """A product added in a test: one task, whose run reports what it was given."""

    name, variables, axis, reads = "constant", ("lst",), "daily", "copy"
    folder_patterns: tuple[str, ...] = ()
    settings = ("inputs.constant",)

    @classmethod
    def configured(cls, inputs: InputsConfig) -> list:
        return [cls()]

    def plan(self, cfg: Config, cube: xr.Dataset, out: Plan) -> None:
        out.tasks.append(Task(self.name, "time", 0, 1, (Group(dt.date(2021, 8, 13), ("nothing",)),)))

    def run(self, task: Task, cfg: Config, cube: xr.Dataset, region: Region) -> dict:
        return {"task": task.key, "days": cube.sizes["time"], "region": region.to_dict()}


def test_a_new_source_needs_only_a_line_in_the_table(tmp_path, monkeypatch):
    """A family added to :data:`~dsm.ingest.sources.FAMILIES` is planned and run by the
    unchanged plan and tasks."""
    raw = {**BASE, "stores": {"cube": str(tmp_path / "c.zarr")}, "inputs": {}}
    cfg = config_mod.from_dict(raw)
    create_cube(cfg.stores.ref("cube"), Layout.from_config(cfg))
    monkeypatch.setattr(sources_mod, "FAMILIES", (*FAMILIES, _Constant.configured))
    (task,) = plan(cfg, open_cube(cfg.stores.cube)).tasks
    assert task.key == "ingest-constant-time-0"
    result = run_task(task, cfg)
    assert (result["task"], result["days"], result["region"]) == (task.key, 2, cfg.grid_region.to_dict())
    assert "seconds" in result
