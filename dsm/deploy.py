"""Kubernetes manifests for dsm: DaskCluster, DaskWorkerGroup, DaskJob and daily CronJob specs (pure).

The functions here turn a validated :class:`dsm.config.Config` and a :class:`DeploySpec` (image,
names, worker sizes, Secrets) into the custom resources of the dask-kubernetes operator
(``kubernetes.dask.org/v1``) and the daily ``batch/v1`` CronJob. Their pods come from
:mod:`dsm.deploy_spec` (the operator's worker and scheduler specs with dsm's commands, sizes,
security contexts and GPU placement); this module adds what the resources need around them:

* the checks that a configuration can run in pods (every store and input a URL);
* the configuration itself, in a ConfigMap with its credential-like ``storage_options`` left
  out (:mod:`dsm.storage_credentials`); the pods read credentials only by reference,
  ``envFrom`` Kubernetes Secrets, and :func:`render_secret`, called only on request, turns
  them into a Secret of ``AWS_*`` variables;
* the job runner (``dsm run``) of a DaskJob, and the one pod of the daily CronJob.

The public names of :mod:`dsm.deploy_spec`, :mod:`dsm.k8s_resources` and
:mod:`dsm.storage_credentials` that callers of these functions need are importable from here too.
Nothing here talks to a cluster; :func:`to_yaml` gives the text for ``kubectl apply -f -``.
Only :func:`render_secret` ever puts a credential into a manifest.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import replace
from typing import Any, Literal

import yaml

from dsm.config import Config
from dsm.deploy_spec import (
    CREDENTIALS_SECRET,
    EARTHDATA_SECRET,
    GPU_NODE_SELECTOR,
    GPU_TOLERATIONS,
    SCRATCH_MOUNT,
    UID,
    DeploySpec,
    container_security,
    env_from,
    pod_security,
    scheduler_spec,
    worker_args,
    worker_spec,
)
from dsm.errors import ConfigError
from dsm.k8s_resources import GPU_RESOURCE, MEMORY_FRACTION, Resources, dask_memory_limit, parse_quantity
from dsm.storage_credentials import (
    AWS_ENV,
    CREDENTIAL_WORDS,
    config_yaml,
    credential_env,
    inline_credentials,
    is_credential,
    split_storage_options,
)

__all__ = [
    "API_VERSION", "AWS_ENV", "CONFIG_KEY", "CONFIG_MOUNT", "CREDENTIALS_SECRET", "CREDENTIAL_WORDS", "DAILY_SCHEDULE",
    "EARTHDATA_SECRET", "GPU_NODE_SELECTOR", "GPU_RESOURCE", "GPU_TOLERATIONS", "LABELS", "MEMORY_FRACTION",
    "SCRATCH_MOUNT", "UID", "DeploySpec", "Resources", "config_yaml", "credential_env", "credentials_notice",
    "dask_memory_limit", "inline_credentials", "is_credential", "job_config", "parse_quantity", "render",
    "render_cluster", "render_daily", "render_gpu_worker_group", "render_job", "render_secret", "scheduler_address",
    "scheduler_spec", "split_storage_options", "to_yaml", "worker_args", "worker_spec",
]

API_VERSION = "kubernetes.dask.org/v1"
CONFIG_MOUNT = "/config"
CONFIG_KEY = "config.yaml"
LABELS: dict[str, str] = {"app.kubernetes.io/name": "dsm", "app.kubernetes.io/part-of": "dsm"}
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _replicas(config: Config, spec: DeploySpec) -> int:
    return config.cluster.n_workers if spec.workers is None else spec.workers


def _metadata(name: str, component: str) -> dict[str, Any]:
    return {"name": name, "labels": {**LABELS, "app.kubernetes.io/component": component}}


def render_cluster(config: Config, spec: DeploySpec) -> list[dict[str, Any]]:
    """An interactive DaskCluster, plus a GPU DaskWorkerGroup when ``cluster.device`` is cuda.

    Parameters
    ----------
    config
        The dsm configuration (worker count, device).
    spec
        Image, name, sizes, secrets.

    Returns
    -------
    list of dict
        The resources, JSON-plain (ready for :func:`to_yaml`).
    """
    _check_remote(config)  # the workers read and write every store
    docs: list[dict[str, Any]] = [{
        "apiVersion": API_VERSION, "kind": "DaskCluster", "metadata": _metadata(spec.name, "cluster"),
        "spec": {"idleTimeout": spec.idle_timeout, "worker": worker_spec(spec, _replicas(config, spec)),
                 "scheduler": scheduler_spec(spec, spec.name)},
    }]  # fmt: skip
    if config.cluster.device == "cuda" and spec.gpu_workers:
        docs.append(render_gpu_worker_group(spec))
    return docs


def render_gpu_worker_group(spec: DeploySpec, cluster_name: str | None = None) -> dict[str, Any]:
    """A DaskWorkerGroup of GPU workers attached to an existing DaskCluster.

    Parameters
    ----------
    spec
        Deployment settings (``gpu_workers``, ``gpu_worker``).
    cluster_name
        The DaskCluster to join; default ``spec.name``.
    """
    cluster = cluster_name or spec.name
    return {"apiVersion": API_VERSION, "kind": "DaskWorkerGroup", "metadata": _metadata(f"{cluster}-gpu", "workergroup"),
            "spec": {"cluster": cluster, "worker": worker_spec(spec, spec.gpu_workers, gpu=True)}}  # fmt: skip


def scheduler_address(name: str, namespace: str | None = None) -> str:
    """The in-cluster address of the scheduler Service the operator creates for ``name``.

    Without a namespace the short name resolves in the pod's own namespace.
    """
    host = f"{name}-scheduler" + (f".{namespace}.svc.cluster.local" if namespace else "")
    return f"tcp://{host}:8786"


def _check_remote(config: Config) -> None:
    """Pods share no disk with the machine that rendered them: every store must be a URL."""
    local = [f"stores.{k}" for k, v in config.stores.model_dump().items()
             if k != "storage_options" and isinstance(v, str) and "://" not in v]  # fmt: skip
    if config.inputs is not None:
        for key, src in config.inputs.model_dump().items():
            srcs = src.items() if key == "geotiff" else [(key, src)]
            for sub, s in srcs:
                if not isinstance(s, dict):
                    continue
                paths = [p for k in ("paths", "b2", "b4", "b6", "b7", "state") for p in (s.get(k) or [])]
                paths += [s.get(k) for k in ("sand", "silt", "clay", "soilgrids") if s.get(k)]
                local += [f"inputs.{sub}" for p in paths if "://" not in p][:1]
    if local:
        raise ConfigError(f"{', '.join(local)}: local paths do not exist in the pods; use object storage "
                          "URLs (s3://bucket/...) for every store and input")


def job_config(config: Config, name: str) -> Config:
    """The configuration a DaskJob runs: ``cluster.address`` set to the job's own scheduler."""
    _check_remote(config)
    cluster = config.cluster.model_copy(update={"address": scheduler_address(name)})
    return config.model_copy(update={"cluster": cluster})


def render_secret(config: Config, name: str = CREDENTIALS_SECRET) -> dict[str, Any]:
    """An Opaque Secret holding the inline credentials of ``config`` as ``AWS_*`` variables.

    The only function here whose output contains credentials (base64 in ``data``); the pods
    get its keys through ``envFrom``. Call it only when asked and never commit its output.

    Parameters
    ----------
    config
        A configuration with credentials in its ``storage_options`` (:func:`credential_env`).
    name
        The Secret's name, the one ``DeploySpec.secrets`` references.

    Raises
    ------
    ConfigError
        When ``name`` is not a Kubernetes name or :func:`credential_env` fails.
    """
    if not _SUBDOMAIN.match(name) or len(name) > 253:
        raise ConfigError(f"Secret name {name!r}: lower-case letters, digits, '-' and '.'")
    data = {k: base64.b64encode(v.encode()).decode() for k, v in credential_env(config).items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _metadata(name, "credentials"),
            "type": "Opaque", "data": data}  # fmt: skip


def credentials_notice(config: Config, spec: DeploySpec, config_path: str = "CONFIG") -> str | None:
    """One line for stderr when ``config`` carries credentials that the manifests leave out."""
    left_out = inline_credentials(config)
    if not left_out:
        return None
    secret = spec.secrets[0] if spec.secrets else CREDENTIALS_SECRET
    return (f"{', '.join(left_out)}: left out of the manifests; the pods read credentials only from the Secret "
            f"{', '.join(spec.secrets) or secret}: create it with `dsm deploy secret {config_path} --name {secret} "
            f"| kubectl apply -f -` or `kubectl create secret generic {secret} --from-literal=AWS_ACCESS_KEY_ID=... "
            "--from-literal=AWS_SECRET_ACCESS_KEY=...`")


def _config_map(name: str, config: Config) -> tuple[str, dict[str, Any]]:
    """The name and the ConfigMap holding ``config`` (:func:`config_yaml`: no credentials) for
    the resources called ``name``."""
    cm_name = f"{name}-config"
    return cm_name, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(cm_name, "config"),
                     "data": {CONFIG_KEY: config_yaml(config)}}


def render_job(config: Config, spec: DeploySpec) -> list[dict[str, Any]]:
    """A ConfigMap with the configuration and a DaskJob running ``dsm run /config/config.yaml``.

    Credentials in the configuration's ``storage_options`` are left out of the ConfigMap; the
    runner and workers get them from ``spec.secrets`` (:func:`render_secret`).

    With ``cluster.device: cuda`` the job's workers are GPU workers (``spec.gpu_workers``
    of them unless ``spec.workers`` is given).

    Parameters
    ----------
    config
        The dsm configuration; every store and input must be a URL.
    spec
        Image, name, sizes, secrets.

    Returns
    -------
    list of dict
        ``[ConfigMap, DaskJob]``, JSON-plain.
    """
    cfg = job_config(config, spec.name)
    gpu = cfg.cluster.device == "cuda"
    if gpu:  # one environment for runner, scheduler and GPU workers
        spec = replace(spec, image=spec.cuda_image, gpu_image=spec.cuda_image)
    replicas = spec.workers if spec.workers is not None else (spec.gpu_workers if gpu else cfg.cluster.n_workers)
    cm_name, configmap = _config_map(spec.name, cfg)
    runner = {
        "restartPolicy": "Never",  # the operator finishes the job when this pod Succeeds/Fails
        "securityContext": pod_security(),
        "containers": [{
            "name": "job", "image": spec.image, "imagePullPolicy": spec.image_pull_policy,
            "args": ["dsm", "run", f"{CONFIG_MOUNT}/{CONFIG_KEY}"],
            "envFrom": env_from(spec.secrets, spec.optional_secrets),
            "resources": spec.runner.to_k8s(), "securityContext": container_security(),
            "volumeMounts": [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
        }],
        "volumes": [{"name": "config", "configMap": {"name": cm_name}}],
    }  # fmt: skip
    if spec.node_selector:
        runner["nodeSelector"] = dict(spec.node_selector)
    job = {
        "apiVersion": API_VERSION, "kind": "DaskJob", "metadata": _metadata(spec.name, "job"),
        "spec": {"job": {"spec": runner},
                 "cluster": {"spec": {"worker": worker_spec(spec, replicas, gpu=gpu),
                                      "scheduler": scheduler_spec(spec, spec.name)}}},
    }  # fmt: skip
    return [configmap, job]


DAILY_SCHEDULE = "0 6 * * *"
"""When the daily CronJob runs (cron, UTC)."""
_CRON = re.compile(r"^(@(daily|hourly|weekly|monthly|yearly)|(\S+\s+){4}\S+)$")


def render_daily(config: Config, spec: DeploySpec, schedule: str = DAILY_SCHEDULE) -> list[dict[str, Any]]:
    """A ConfigMap and a CronJob running ``dsm run /config/config.yaml --until today`` on ``schedule``.

    Each run extends the stores to the day it runs (UTC) and exits; one pod of ``spec.worker``
    size (``spec.gpu_worker`` with ``cluster.device: cuda``) runs the client and a LocalCluster
    of one worker process with all its cores and 75 % of its memory (the client shares the
    container). Runs never overlap (``concurrencyPolicy: Forbid``, and dsm's run lock); a
    failed run is retried twice (``dsm run`` resumes), and the next day's run catches up.

    Parameters
    ----------
    config
        The dsm configuration; every store and input must be a URL.
    spec
        Image, name, the pod's size, secrets.
    schedule
        Cron expression, evaluated in UTC (``timeZone: Etc/UTC``).

    Returns
    -------
    list of dict
        ``[ConfigMap, CronJob]``, JSON-plain.
    """
    _check_remote(config)
    if not _CRON.match(schedule.strip()):
        raise ConfigError(f"schedule {schedule!r}: give a cron expression of five fields, e.g. {DAILY_SCHEDULE!r}")
    gpu = config.cluster.device == "cuda"
    res, image = (spec.gpu_worker, spec.cuda_image) if gpu else (spec.worker, spec.image)
    local = config.cluster.model_copy(update={"address": None, "n_workers": 1, "threads_per_worker": res.cpu,
                                              "memory_limit": dask_memory_limit(res.memory, 0.75)})  # fmt: skip
    cm_name, configmap = _config_map(spec.name, config.model_copy(update={"cluster": local}))
    pod: dict[str, Any] = {
        "restartPolicy": "Never", "securityContext": pod_security(),
        "containers": [{
            "name": "dsm", "image": image, "imagePullPolicy": spec.image_pull_policy,
            "args": ["dsm", "run", f"{CONFIG_MOUNT}/{CONFIG_KEY}", "--until", "today"],
            "env": [{"name": "DASK_TEMPORARY_DIRECTORY", "value": SCRATCH_MOUNT}],
            "envFrom": env_from(spec.secrets, spec.optional_secrets),
            "resources": res.to_k8s(), "securityContext": container_security(),
            "volumeMounts": [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
                             {"name": "scratch", "mountPath": SCRATCH_MOUNT}],
        }],
        "volumes": [{"name": "config", "configMap": {"name": cm_name}},
                    {"name": "scratch", "emptyDir": {"sizeLimit": spec.scratch}}],
    }  # fmt: skip
    selector = {**spec.node_selector, **(GPU_NODE_SELECTOR if gpu else {})}
    if selector:
        pod["nodeSelector"] = selector
    if gpu:
        pod["tolerations"] = [dict(t) for t in GPU_TOLERATIONS]
    cronjob = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": _metadata(spec.name, "daily"),
        "spec": {"schedule": schedule.strip(), "timeZone": "Etc/UTC", "concurrencyPolicy": "Forbid",
                 "startingDeadlineSeconds": 6 * 3600, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
                 "jobTemplate": {"metadata": {"labels": {**LABELS, "app.kubernetes.io/component": "daily"}},
                                 "spec": {"backoffLimit": 2, "template": {"spec": pod}}}},
    }  # fmt: skip
    return [configmap, cronjob]


def render(config: Config, spec: DeploySpec, kind: Literal["cluster", "job", "daily"] = "cluster",
           schedule: str = DAILY_SCHEDULE) -> list[dict[str, Any]]:  # fmt: skip
    """The resources of one deployment ``kind``: an interactive cluster, a ``dsm run`` job, or
    the daily CronJob extending the stores (``schedule``)."""
    if kind == "cluster":
        return render_cluster(config, spec)
    if kind == "job":
        return render_job(config, spec)
    if kind == "daily":
        return render_daily(config, spec, schedule)
    raise ValueError(f"kind {kind!r}: expected 'cluster', 'job' or 'daily'")


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings (the ConfigMap's config.yaml) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(docs: list[dict[str, Any]]) -> str:
    """Multi-document YAML for ``kubectl apply -f -`` (keys in the order they were built)."""
    return yaml.dump_all([copy.deepcopy(d) for d in docs], Dumper=_Dumper, sort_keys=False, width=120)
