"""Where and how a run executes: its stores, the Dask cluster and the one-command job
``dsm run`` (sections ``stores``, ``cluster`` and ``run``)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import Field, field_validator, model_validator

from dsm.config.base import _Frozen


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


class ClusterConfig(_Frozen):
    """Where the work runs: an existing scheduler ``address`` or a new LocalCluster."""

    address: str | None = None
    n_workers: int = Field(default=2, ge=1)
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = "auto"
    dashboard_address: str | None = ":0"
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
