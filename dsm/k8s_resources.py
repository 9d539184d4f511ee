"""Kubernetes resource quantities and container sizes for the deploy manifests (pure).

:func:`parse_quantity` reads a Kubernetes quantity (``"8Gi"``, ``"500m"``); :class:`Resources`
is one container's requests (= limits: Guaranteed QoS) of whole CPUs, memory and GPUs; and
:func:`dask_memory_limit` gives the ``dask worker --memory-limit`` that lets the nanny restart
a worker before the kernel's OOM killer takes the whole pod.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MEMORY_FRACTION = 0.9
"""Dask ``--memory-limit`` as a fraction of the container memory limit (the rest: nanny, headroom)."""
GPU_RESOURCE = "nvidia.com/gpu"
_SUFFIX = {
    "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": 1e-3,
}  # fmt: skip
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")


def parse_quantity(quantity: str | int | float) -> float:
    """A Kubernetes resource quantity as a number (bytes for memory, cores for CPU).

    Parameters
    ----------
    quantity
        ``"8Gi"``, ``"8G"``, ``"500m"``, ``"1.5"``, ``2`` ...

    Returns
    -------
    float
        The value in base units.

    Raises
    ------
    ValueError
        When the text is not a Kubernetes quantity.
    """
    if isinstance(quantity, (int, float)) and not isinstance(quantity, bool):
        return float(quantity)
    m = _QUANTITY.match(str(quantity).strip())
    if not m:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity (e.g. 8Gi, 8G, 500m, 2)")
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


def dask_memory_limit(container_memory: str, fraction: float = MEMORY_FRACTION) -> str:
    """The ``dask worker --memory-limit`` for a container memory limit, in whole MiB.

    Dask pauses a worker at 80 % and the nanny restarts it at 95 % of ``--memory-limit``; with
    ``fraction=0.9`` the restart happens at 85.5 % of the container limit, before the kernel
    kills the pod (and the nanny with it).

    Parameters
    ----------
    container_memory
        The container's ``resources.limits.memory`` (``"8Gi"``).
    fraction
        Share of the container limit given to the worker process.

    Returns
    -------
    str
        For example ``"7372MiB"`` for ``"8Gi"``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction {fraction} must be in (0, 1]")
    mib = math.floor(parse_quantity(container_memory) * fraction / 2**20)
    if mib < 256:
        raise ValueError(f"memory limit {container_memory!r} leaves {mib} MiB for a worker: give at least 1Gi")
    return f"{mib}MiB"


@dataclass(frozen=True)
class Resources:
    """Requests = limits of one container: whole CPUs, a memory quantity, GPUs.

    Parameters
    ----------
    cpu
        Whole cores; a worker runs this many threads (``--nthreads``).
    memory
        Kubernetes memory quantity (``"8Gi"``).
    gpu
        ``nvidia.com/gpu`` count (0: none).
    """

    cpu: int
    memory: str
    gpu: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.cpu, int) or self.cpu < 1:
            raise ValueError(f"cpu = {self.cpu!r}: give a whole number of cores >= 1 (it becomes --nthreads)")
        if parse_quantity(self.memory) < 2**30:
            raise ValueError(f"memory = {self.memory!r}: give at least 1Gi")
        if self.gpu < 0:
            raise ValueError(f"gpu = {self.gpu}: must be >= 0")

    def to_k8s(self) -> dict[str, dict[str, str]]:
        """``resources:`` of a container; every quantity a string (the CRD schema requires it)."""
        amounts = {"cpu": str(self.cpu), "memory": self.memory}
        if self.gpu:
            amounts[GPU_RESOURCE] = str(self.gpu)
        return {"requests": dict(amounts), "limits": dict(amounts)}
