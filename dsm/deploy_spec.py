"""DeploySpec and the pod specs every dsm manifest is built from (pure).

:class:`DeploySpec` holds what to deploy besides the dsm configuration: the image, names, sizes
and Secrets. The functions here turn it into the pod-level pieces that :mod:`dsm.deploy` puts into
DaskCluster, DaskWorkerGroup, DaskJob and CronJob resources. :func:`worker_spec` and
:func:`scheduler_spec` start from the dask-kubernetes operator's own
:func:`~dask_kubernetes.operator.make_worker_spec` and
:func:`~dask_kubernetes.operator.make_scheduler_spec` and then fix what those leave to us:

* commands: ``dask scheduler`` / ``dask worker`` (distributed no longer installs the
  ``dask-scheduler`` / ``dask-worker`` scripts those helpers still name);
* sizing (:mod:`dsm.k8s_resources`): ``--nthreads`` equals the container's CPU limit and
  ``--memory-limit`` is :data:`~dsm.k8s_resources.MEMORY_FRACTION` of its memory limit, so the
  nanny restarts a worker before the kernel's OOM killer takes the whole pod; requests equal
  limits (Guaranteed QoS);
* security (:func:`pod_security`, :func:`container_security`): non-root uid 1000, no privilege
  escalation, all capabilities dropped, the runtime's seccomp profile (the "restricted" Pod
  Security Standard);
* credentials: only by reference, ``envFrom`` Kubernetes Secrets (:func:`env_from`), never a
  literal value;
* the GPU pool: ``nvidia.com/gpu`` limits, a node selector, a toleration and a
  ``--resources GPU=1`` worker resource for task constraints.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from dsm.cluster import WORKER_ENVIRON
from dsm.errors import ConfigError
from dsm.k8s_resources import Resources, dask_memory_limit

__all__ = [
    "CREDENTIALS_SECRET", "EARTHDATA_SECRET", "GPU_NODE_SELECTOR", "GPU_TOLERATIONS", "SCRATCH_MOUNT", "UID",
    "DeploySpec", "container_security", "env_from", "pod_security", "scheduler_spec", "worker_args", "worker_spec",
]

SCRATCH_MOUNT = "/scratch"
UID = 1000
CREDENTIALS_SECRET = "dsm-s3-credentials"
EARTHDATA_SECRET = "dsm-earthdata"
GPU_NODE_SELECTOR: dict[str, str] = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATIONS: tuple[dict[str, str], ...] = (
    {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
)
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class DeploySpec:
    """What to deploy besides the dsm configuration.

    Parameters
    ----------
    image
        Container image with a pinned tag or digest (``registry.example.org/dsm:0.1.0``).
    name
        Name of the DaskCluster or DaskJob; the scheduler Service is ``<name>-scheduler``.
    workers
        Replicas of the default worker group; None: ``cluster.n_workers`` of the config.
    worker, scheduler, runner
        Sizes of a CPU worker, the scheduler and the job runner (``dsm run``).
    gpu_workers
        GPU workers: with ``cluster.device: cuda`` a DaskJob's workers are all GPU workers
        (a DaskJob has one worker group) and a DaskCluster gets an extra group of this size.
    gpu_worker
        Size of a GPU worker.
    gpu_image
        Image of GPU workers (built with ``XGBOOST_VARIANT=cuda``); None: ``<image>-cuda``.
        A DaskJob with ``cluster.device: cuda`` uses it for every pod.
    secrets
        Secrets whose keys become environment variables of workers and the job runner.
    optional_secrets
        Secrets passed the same way to the job runner only, when they exist (Earthdata).
    scratch
        Size limit of the worker spill ``emptyDir``.
    idle_timeout
        Seconds of inactivity after which the operator deletes a DaskCluster (0: never).
    """

    image: str
    name: str = "dsm"
    workers: int | None = None
    worker: Resources = Resources(cpu=2, memory="8Gi")
    scheduler: Resources = Resources(cpu=1, memory="4Gi")
    runner: Resources = Resources(cpu=1, memory="4Gi")
    gpu_workers: int = 1
    gpu_worker: Resources = Resources(cpu=4, memory="16Gi", gpu=1)
    gpu_image: str | None = None
    secrets: tuple[str, ...] = (CREDENTIALS_SECRET,)
    optional_secrets: tuple[str, ...] = (EARTHDATA_SECRET,)
    scratch: str = "20Gi"
    idle_timeout: int = 0
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    node_selector: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # <name>-scheduler must be a DNS-1035 label (<= 63); worker pods add ~30 characters
        if not _NAME.match(self.name) or len(self.name) > 40:
            raise ValueError(f"name {self.name!r}: lower-case letters, digits and '-', starting with a "
                             "letter, at most 40 characters")
        for image in (self.image, self.gpu_image):
            if image is None:
                continue
            if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
                raise ValueError(f"image {image!r}: give a tag or digest (repository:tag)")
            if image.endswith(":latest"):
                raise ValueError(f"image {image!r}: pin a version, not :latest")
        if self.gpu_image is None and "@" in self.image:
            raise ValueError("with an image digest, give gpu_image too")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers = {self.workers}: must be >= 0")
        if self.gpu_worker.gpu < 1:
            raise ValueError("gpu_worker needs gpu >= 1")

    @property
    def cuda_image(self) -> str:
        """The image of GPU pods: ``gpu_image`` or ``<image>-cuda``."""
        return self.gpu_image or f"{self.image}-cuda"


def _operator() -> Any:
    try:
        import dask_kubernetes.operator as op  # noqa: PLC0415 - optional dependency (the k8s extra)
    except ImportError as exc:  # pragma: no cover - the k8s extra is missing
        raise ConfigError("rendering Kubernetes manifests needs the k8s extra: pip install 'dsm[k8s]'") from exc
    return op


def _plain(obj: Any) -> Any:
    """JSON-plain copy without None values (the operator helpers leave ``env: None``)."""

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if v is not None}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(json.loads(json.dumps(obj)))


def pod_security() -> dict[str, Any]:
    """A pod's ``securityContext``: uid/gid :data:`UID`, never root, the runtime's seccomp profile."""
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"}}  # fmt: skip


def container_security() -> dict[str, Any]:
    """A container's ``securityContext``: no privilege escalation, every capability dropped."""
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def env_from(secrets: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """A container's ``envFrom``: every key of the Secrets ``secrets``, then of ``optional`` ones
    (which the pod starts without when they do not exist)."""
    out: list[dict[str, Any]] = [{"secretRef": {"name": s}} for s in secrets]
    return out + [{"secretRef": {"name": s, "optional": True}} for s in optional]


def worker_args(resources: Resources, gpu: bool = False) -> list[str]:
    """``dask worker`` arguments sized from the container's limits.

    Parameters
    ----------
    resources
        The worker container's requests/limits.
    gpu
        Advertise a ``GPU=<n>`` worker resource for ``dask.annotate(resources=...)``.

    Returns
    -------
    list of str
        The container ``args``; the operator sets ``DASK_WORKER_NAME`` and
        ``DASK_SCHEDULER_ADDRESS`` in the environment.
    """
    args = ["dask", "worker", "--name", "$(DASK_WORKER_NAME)", "--nworkers", "1",
            "--nthreads", str(resources.cpu), "--memory-limit", dask_memory_limit(resources.memory),
            "--local-directory", SCRATCH_MOUNT, "--dashboard", "--dashboard-address", "8788"]  # fmt: skip
    if gpu:
        args += ["--resources", f"GPU={resources.gpu}"]
    return args


def worker_spec(spec: DeploySpec, replicas: int, gpu: bool = False) -> dict[str, Any]:
    """A worker group's ``{replicas, spec}`` (the CRD's ``DaskWorker``).

    Parameters
    ----------
    spec
        Deployment settings.
    replicas
        Number of worker pods.
    gpu
        GPU workers (``spec.gpu_worker`` sizes, node selector, toleration) instead of CPU ones.

    The worker container's environment holds :data:`dsm.cluster.WORKER_ENVIRON`, which the
    worker process needs from its start (the nanny spawns it with the container's environment).
    """
    res = spec.gpu_worker if gpu else spec.worker
    image = spec.cuda_image if gpu else spec.image
    out = _plain(_operator().make_worker_spec(image=image, n_workers=replicas, resources=res.to_k8s()))
    pod = out["spec"]
    (c,) = pod["containers"]
    c.update(args=worker_args(res, gpu=gpu), imagePullPolicy=spec.image_pull_policy,
             env=[{"name": k, "value": v} for k, v in WORKER_ENVIRON.items()],  # before the worker process starts
             envFrom=env_from(spec.secrets), securityContext=container_security(),
             volumeMounts=[{"name": "scratch", "mountPath": SCRATCH_MOUNT}])  # fmt: skip
    pod["securityContext"] = pod_security()
    pod["volumes"] = [{"name": "scratch", "emptyDir": {"sizeLimit": spec.scratch}}]
    selector = {**spec.node_selector, **(GPU_NODE_SELECTOR if gpu else {})}
    if selector:
        pod["nodeSelector"] = selector
    if gpu:
        pod["tolerations"] = [dict(t) for t in GPU_TOLERATIONS]
    return out


def scheduler_spec(spec: DeploySpec, cluster_name: str) -> dict[str, Any]:
    """The scheduler's ``{spec, service}``; it needs no credentials (it never touches data)."""
    out = _plain(_operator().make_scheduler_spec(cluster_name=cluster_name, image=spec.image,
                                                 resources=spec.scheduler.to_k8s()))  # fmt: skip
    (c,) = out["spec"]["containers"]
    c.update(args=["dask", "scheduler", "--host", "0.0.0.0"], imagePullPolicy=spec.image_pull_policy,
             securityContext=container_security())  # fmt: skip
    out["spec"]["securityContext"] = pod_security()
    if spec.node_selector:
        out["spec"]["nodeSelector"] = dict(spec.node_selector)
    return out
