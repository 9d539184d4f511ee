"""Where and how a run executes: its stores, the Dask cluster and the one-command job
``dsm run`` (sections ``stores``, ``cluster`` and ``run``)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from dsm.config.base import _Frozen
from dsm.errors import ConfigError
from dsm.storeref import StoreRef

StoreName = Literal["cube", "truth", "models", "output", "cog", "stations", "stac", "netcdf"]


class StoresConfig(_Frozen):
    """Locations (local paths or fsspec URLs) of the stores, and fsspec options for them."""

    cube: str
    truth: str | None = None
    models: str | None = None
    output: str | None = None
    cog: str | None = None
    stations: str | None = None
    stac: str | None = None
    netcdf: str | None = Field(default=None, description="folder of the netCDF files of `dsm export --format netcdf` "
                               "(default: netcdf/ beside stores.output)")
    storage_options: dict[str, Any] = Field(default_factory=dict)

    def ref(self, name: StoreName) -> StoreRef:
        """The handle of ``stores.<name>`` with these storage options.

        ``stac`` defaults to ``stac/`` under ``stores.cog`` and ``netcdf`` to ``netcdf/`` beside
        ``stores.output``.

        Raises
        ------
        ConfigError
            The store (or, for a default, the store it derives from) is not set.
        """
        url = getattr(self, name)
        if url:
            return self.at(url)
        if name == "stac" and self.cog:
            return self.ref("cog").join("stac")
        if name == "netcdf" and self.output:
            return self.ref("output").sibling("netcdf")
        base = {"stac": " (or stores.cog, which it defaults under)",
                "netcdf": " (or stores.output, beside which it defaults)"}.get(name, "")
        raise ConfigError(f"stores.{name} is not set{base}: set it in the configuration's stores section")

    def primary(self) -> StoreRef:
        """The run's own store: ``stores.output``, else ``stores.cube``. Its lock lies beside it,
        and so do the run records and the validation folder by default."""
        return self.ref("output" if self.output else "cube")

    def at(self, url: str) -> StoreRef:
        """The handle of any other location (``url``) under these storage options."""
        return StoreRef(url, self.storage_options)


class ClusterConfig(_Frozen):
    """Where the work runs: an existing scheduler ``address`` or a new LocalCluster."""

    address: str | None = None
    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = "auto"
    dashboard_address: str | None = Field(
        default=":0",
        description="where a new LocalCluster's dashboard listens: ':0' (the default) a free port, printed "
        "when the run connects; ':8787' Dask's usual port; null is Dask's default, 8787, too (a second "
        "cluster on the machine then warns and takes another)",
    )
    device: Literal["cpu", "cuda"] = Field(
        default="cpu",
        description="XGBoost device: 'cuda' on GPU node pools (workers with nvidia.com/gpu and the "
        "xgboost CUDA build, see deploy/README.md); 'cpu' everywhere else",
    )

    @field_validator("address")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is not None and "://" not in v:
            raise ValueError(f"scheduler address {v!r} must look like tcp://host:port")
        return v


Stage = Literal["cube", "train", "predict", "export", "validate"]
STAGES: tuple[Stage, ...] = get_args(Stage)  # the stages of ``dsm run``, in order


class RunConfig(_Frozen):
    """The one-command job ``dsm run``: stages, lock and run records.

    ``records`` is where each run leaves ``<run id>/run.json`` (stages, timings, results) and
    ``<run id>/dask-performance.html``; default ``runs/`` beside ``stores.output``.
    """

    stages: tuple[Stage, ...] = STAGES
    records: str | None = None
    lock_ttl: float = Field(default=120.0, gt=0.0, description="seconds after its last heartbeat a lock is abandoned")
    lock_heartbeat: float = Field(default=15.0, gt=0.0, description="seconds between lock heartbeats")
    performance_report: bool = True

    @model_validator(mode="after")
    def _beat_within_ttl(self) -> RunConfig:
        if self.lock_heartbeat >= self.lock_ttl:
            raise ValueError(f"lock_heartbeat ({self.lock_heartbeat}) must be shorter than lock_ttl ({self.lock_ttl})")
        return self
