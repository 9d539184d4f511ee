"""deploy/: the image, the Kubernetes manifests, the Helm values and dsm.deploy, checked offline.

Kubernetes cannot run here, so every manifest in deploy/k8s and every spec dsm.deploy renders
is validated against

* the custom resource schemas (openAPIV3Schema) of DaskCluster, DaskJob and DaskWorkerGroup
  shipped inside the installed dask_kubernetes package, made strict: a field the CRD does not
  declare is an error (the API server would silently prune it, so a typo would vanish);
* the Kubernetes object schemas of kubernetes-validate (strict) for every embedded pod spec,
  the scheduler Service and the ConfigMap, at the oldest and newest version we support;
* distributed's own ``dask worker`` / ``dask scheduler`` command-line parsers for the container
  arguments (thread count and memory limit against the container limits).

The Dockerfile and .dockerignore are checked as text; the Helm values by building the worker
arguments and pod specs the way the Dask chart's templates do.
"""

from __future__ import annotations

import base64
import copy
import importlib.metadata as md
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask_kubernetes
import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from dask.utils import parse_bytes
from distributed.cli.dask_scheduler import main as dask_scheduler_cli
from distributed.cli.dask_worker import main as dask_worker_cli
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dsm import config as config_mod
from dsm import deploy
from dsm.cli import main as dsm_cli
from dsm.cluster import WORKER_ENVIRON
from dsm.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
HELM_VALUES = REPO / "deploy" / "helm" / "values.yaml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
IMAGE = "registry.example.org/dsm:0.1.0"
K8S_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CRD_DIR = Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator/crds"
SECRETISH = re.compile(r"(SECRET|PASSWORD|TOKEN|ACCESS_KEY|PRIVATE|CREDENTIAL)", re.I)


# ----------------------------------------------------------------------------- schemas


def _strict(schema: Any) -> Any:
    """The CRD schema with ``additionalProperties: false`` wherever it lists properties."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: _strict(v) for k, v in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"])
    if "items" in out:
        out["items"] = _strict(out["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in out:
            out[key] = [_strict(s) for s in out[key]]
    return out


def _load_crds() -> dict[str, dict[str, Any]]:
    crds: dict[str, dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v.get("storage")]
        crds[crd["spec"]["names"]["kind"]] = {
            "apiVersion": f"{crd['spec']['group']}/{version['name']}",
            "schema": version["schema"]["openAPIV3Schema"],
        }
    return crds


CRDS = _load_crds()


def validate_crd(doc: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError unless ``doc`` is a valid instance of its CRD."""
    crd = CRDS[doc["kind"]]
    assert doc["apiVersion"] == crd["apiVersion"]
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    jsonschema.Draft7Validator(_strict(crd["schema"])).validate(body)


def validate_k8s(obj: dict[str, Any]) -> None:
    """Raise kubernetes_validate.ValidationError unless ``obj`` is valid at every version tested."""
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


# ----------------------------------------------------------------------------- documents


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def static_docs() -> list[tuple[str, dict[str, Any]]]:
    """Every Kubernetes resource in deploy/k8s (config.yaml is a dsm configuration)."""
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in ("config.yaml", "kustomization.yaml"):
            continue
        out += [(f"{path.name}:{d['kind']}", d) for d in _yaml_docs(path)]
    return out


def _config(**cluster: Any) -> config_mod.Config:
    raw = yaml.safe_load((K8S / "config.yaml").read_text())
    raw["cluster"].update(cluster)
    return config_mod.from_dict(raw, source="test")


def rendered_docs() -> list[tuple[str, dict[str, Any]]]:
    """Specs from dsm.deploy over CPU/GPU configurations, default and custom sizes."""
    small = deploy.DeploySpec(image=IMAGE, name="small", workers=3, worker=deploy.Resources(1, "3Gi"),
                              gpu_worker=deploy.Resources(8, "61Gi", gpu=2), node_selector={"pool": "dsm"})
    cases = {
        "cluster-cpu": deploy.render(_config(), deploy.DeploySpec(image=IMAGE), "cluster"),
        "cluster-cuda": deploy.render(_config(device="cuda"), deploy.DeploySpec(image=IMAGE), "cluster"),
        "job-cpu": deploy.render(_config(), deploy.DeploySpec(image=IMAGE, name="dsm-run"), "job"),
        "job-cuda": deploy.render(_config(device="cuda"), deploy.DeploySpec(image=IMAGE, name="dsm-run"), "job"),
        "job-small": deploy.render(_config(), small, "job"),
        "cluster-small-cuda": deploy.render(_config(device="cuda"), small, "cluster"),
        "daily-cpu": deploy.render(_config(), deploy.DeploySpec(image=IMAGE, name="dsm-daily"), "daily"),
        "daily-cuda": deploy.render(_config(device="cuda"), deploy.DeploySpec(image=IMAGE, name="dsm-daily"), "daily"),
        "daily-small": deploy.render(_config(), small, "daily", "30 2 * * 1-5"),
    }
    return [(f"{case}:{d['kind']}", d) for case, docs in cases.items() for d in docs]


ALL = static_docs() + rendered_docs()
DASK = [(i, d) for i, d in ALL if d["apiVersion"].startswith("kubernetes.dask.org/")]
PODS = DASK + [(i, d) for i, d in ALL if d["kind"] == "CronJob"]  # every resource that makes pods


def pod_specs(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(role, pod spec) of every pod a dask resource makes (scheduler, worker, job) or a CronJob (daily)."""
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        yield "daily", spec["jobTemplate"]["spec"]["template"]["spec"]
        return
    if doc["kind"] == "DaskJob":
        yield "job", spec["job"]["spec"]
        spec = spec["cluster"]["spec"]
    if doc["kind"] in ("DaskCluster", "DaskJob"):
        yield "scheduler", spec["scheduler"]["spec"]
    yield "worker", spec["worker"]["spec"]


def containers(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for role, pod in pod_specs(doc):
        for c in pod["containers"]:
            yield role, pod, c


def _ids(items: list[tuple[str, Any]]) -> list[str]:
    return [i for i, _ in items]


# ----------------------------------------------------------------------------- validation


def test_the_crds_ship_with_dask_kubernetes() -> None:
    assert {"DaskCluster", "DaskJob", "DaskWorkerGroup"} <= set(CRDS)
    kinds = {d["kind"] for _, d in static_docs()}
    assert {"DaskCluster", "DaskJob", "DaskWorkerGroup"} <= kinds


@pytest.mark.parametrize(("where", "doc"), DASK, ids=_ids(DASK))
def test_dask_resources_match_the_crd_schema(where: str, doc: dict[str, Any]) -> None:
    validate_crd(doc)
    name = doc["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(f"{name}-scheduler") <= 63


@pytest.mark.parametrize(("where", "doc"), DASK, ids=_ids(DASK))
def test_embedded_pods_and_services_match_the_kubernetes_schemas(where: str, doc: dict[str, Any]) -> None:
    name = doc["metadata"]["name"]
    for role, pod in pod_specs(doc):
        validate_k8s({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-{role}"}, "spec": pod})
    spec = doc["spec"]["cluster"]["spec"] if doc["kind"] == "DaskJob" else doc["spec"]
    if "scheduler" in spec:
        service = spec["scheduler"]["service"]
        validate_k8s({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-scheduler"}, "spec": service})
        assert service["selector"]["dask.org/cluster-name"] == name


def test_plain_kubernetes_objects_validate() -> None:
    plain = [d for _, d in ALL if not d["apiVersion"].startswith("kubernetes.dask.org/")]
    assert {d["kind"] for d in plain} == {"ConfigMap", "CronJob"}  # the CronJob's pod spec is validated with it
    for d in plain:
        validate_k8s(d)


def test_the_validators_reject_what_the_api_server_would() -> None:
    (_, job) = next((i, d) for i, d in static_docs() if d["kind"] == "DaskJob")
    typo = copy.deepcopy(job)
    typo["spec"]["cluster"]["spec"]["worker"]["replica"] = 2  # pruned silently by the server
    with pytest.raises(jsonschema.ValidationError, match="replica"):
        validate_crd(typo)
    int_gpu = copy.deepcopy(job)  # the CRD types quantities as strings: 1 must be "1"
    int_gpu["spec"]["cluster"]["spec"]["worker"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_crd(int_gpu)
    pod = copy.deepcopy(job["spec"]["job"]["spec"])
    pod["containers"][0]["envfrom"] = pod["containers"][0].pop("envFrom")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": pod})


# ----------------------------------------------------------------------------- content


@pytest.mark.parametrize(("where", "doc"), PODS, ids=_ids(PODS))
def test_pods_run_non_root_with_pinned_images(where: str, doc: dict[str, Any]) -> None:
    for role, pod, c in containers(doc):
        ctx = pod["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == deploy.UID != 0, role
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault", role
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], role
        assert not sc.get("privileged") and not any("hostPath" in v for v in pod.get("volumes", []))
        repo, _, tag = c["image"].rpartition(":")
        assert repo and "/" not in tag and tag not in ("", "latest"), c["image"]


@pytest.mark.parametrize(("where", "doc"), PODS, ids=_ids(PODS))
def test_every_container_has_requests_equal_to_limits(where: str, doc: dict[str, Any]) -> None:
    for role, _, c in containers(doc):
        res = c["resources"]
        assert {"cpu", "memory"} <= set(res["limits"]), role
        assert res["requests"] == res["limits"], f"{role}: requests != limits (not Guaranteed QoS)"


@pytest.mark.parametrize(("where", "doc"), DASK, ids=_ids(DASK))
def test_worker_threads_and_memory_limit_follow_the_container_limits(where: str, doc: dict[str, Any]) -> None:
    for role, pod, c in containers(doc):
        if role != "worker":
            continue
        assert c["args"][:2] == ["dask", "worker"]
        params = dask_worker_cli.make_context("dask worker", c["args"][2:]).params  # dask's own parser
        limits = c["resources"]["limits"]
        container_bytes = deploy.parse_quantity(limits["memory"])
        assert params["nthreads"] == int(limits["cpu"])
        assert params["n_workers"] in (None, "1"), "--memory-limit is per worker process"
        assert params["nanny"] is True, "the nanny restarts a worker at 95 % of --memory-limit"
        worker_bytes = parse_bytes(params["memory_limit"])
        assert 0.85 * container_bytes <= worker_bytes <= deploy.MEMORY_FRACTION * container_bytes
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts[params["local_directory"]]], "spill to a pod-local volume"
        gpus = int(limits.get(deploy.GPU_RESOURCE, "0"))
        if gpus:
            assert c["image"].endswith("-cuda"), "GPU workers need the XGBOOST_VARIANT=cuda image"
            assert params["resources"] == f"GPU={gpus}"
            assert c["resources"]["requests"][deploy.GPU_RESOURCE] == limits[deploy.GPU_RESOURCE]
            assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
            assert any(t["key"] == "nvidia.com/gpu" and t["effect"] == "NoSchedule" for t in pod["tolerations"])
        else:
            assert not params["resources"] and "tolerations" not in pod


@pytest.mark.parametrize(("where", "doc"), DASK, ids=_ids(DASK))
def test_workers_start_with_dsms_worker_environment(where: str, doc: dict[str, Any]) -> None:
    workers = [c for role, _, c in containers(doc) if role == "worker"]
    assert workers
    for c in workers:
        assert {e["name"]: e["value"] for e in c["env"] if "value" in e} == WORKER_ENVIRON


@pytest.mark.parametrize(("where", "doc"), PODS, ids=_ids(PODS))
def test_commands_exist_in_the_image(where: str, doc: dict[str, Any]) -> None:
    dask_commands = {ep.name for ep in md.entry_points(group="dask_cli")}
    for role, _, c in containers(doc):
        assert "command" not in c, "keep the image ENTRYPOINT (tini)"
        program, sub, *rest = c["args"]
        if program == "dask":
            assert sub in dask_commands, f"`dask {sub}` is not installed"
            if sub == "scheduler":
                dask_scheduler_cli.make_context("dask scheduler", rest)
        else:
            assert [program, sub] == ["dsm", "run"] and role in ("job", "daily")


def _job_parts(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The DaskJob and the (configmap name, key) its runner reads its configuration from."""
    (job,) = [d for d in docs if d["kind"] == "DaskJob"]
    pod = job["spec"]["job"]["spec"]
    (c,) = pod["containers"]
    assert pod["restartPolicy"] == "Never", "the operator completes a job only when its runner pod ends"
    assert c["args"][:2] == ["dsm", "run"]
    path = Path(c["args"][2])
    (mount,) = [m for m in c["volumeMounts"] if Path(m["mountPath"]) == path.parent]
    (vol,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    return job, f"{vol['configMap']['name']}/{path.name}"


def test_the_static_job_reads_the_kustomize_configmap() -> None:
    docs = _yaml_docs(K8S / "daskjob.yaml")
    job, source = _job_parts(docs)
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert set(kust["resources"]) == {"daskjob.yaml"}
    (gen,) = kust["configMapGenerator"]
    assert kust["generatorOptions"]["disableNameSuffixHash"] is True  # names inside CRs are not rewritten
    (file,) = gen["files"]
    assert source == f"{gen['name']}/{Path(file).name}"
    cfg = config_mod.load(K8S / file)
    assert cfg.cluster.address == deploy.scheduler_address(job["metadata"]["name"])
    deploy.job_config(cfg, job["metadata"]["name"])  # every store is a URL


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_a_rendered_job_carries_its_configuration(device: str) -> None:
    cfg = _config(address=None, device=device)
    docs = deploy.render(cfg, deploy.DeploySpec(image=IMAGE, name="nightly"), "job")
    job, source = _job_parts(docs)
    (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
    name, key = source.split("/")
    assert cm["metadata"]["name"] == name
    inner = config_mod.from_dict(yaml.safe_load(cm["data"][key]), source="configmap")
    assert inner.cluster.address == "tcp://nightly-scheduler:8786"
    assert inner.model_dump(exclude={"cluster"}) == cfg.model_dump(exclude={"cluster"})
    workers = job["spec"]["cluster"]["spec"]["worker"]
    gpus = workers["spec"]["containers"][0]["resources"]["limits"].get(deploy.GPU_RESOURCE)
    assert (gpus == "1") == (device == "cuda")
    assert workers["replicas"] == (1 if device == "cuda" else cfg.cluster.n_workers)


def test_dsm_run_parses_the_job_arguments() -> None:
    job, _ = _job_parts(_yaml_docs(K8S / "daskjob.yaml"))
    args = job["spec"]["job"]["spec"]["containers"][0]["args"][1:]
    dsm_cli.commands["run"].make_context("dsm run", [str(K8S / "config.yaml")] + args[2:])


def _env_entries(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for role, _, c in containers(doc):
        for e in c.get("env", []):
            yield role, e


@pytest.mark.parametrize(("where", "doc"), PODS, ids=_ids(PODS))
def test_credentials_come_only_from_secrets(where: str, doc: dict[str, Any]) -> None:
    for role, e in _env_entries(doc):
        assert not (SECRETISH.search(e["name"]) and "value" in e), f"{role}: literal {e['name']}"
    for role, _, c in containers(doc):
        refs = {r["secretRef"]["name"]: r["secretRef"].get("optional", False) for r in c.get("envFrom", [])}
        if role == "scheduler":
            assert not refs, "the scheduler never touches data: no credentials"
        else:
            assert refs.get(deploy.CREDENTIALS_SECRET) is False, f"{role}: needs {deploy.CREDENTIALS_SECRET}"


_LEAKS = [
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),  # AWS access key id
    re.compile(r"(?i)(secret|password|token|access_key)\w*\s*[:=]\s*['\"]?[A-Za-z0-9/+]{16,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]


def _deploy_files() -> list[Path]:
    return sorted(p for p in (REPO / "deploy").rglob("*") if p.is_file()) + [REPO / ".dockerignore"]


def test_no_secret_values_in_any_file() -> None:
    texts = {str(p.relative_to(REPO)): p.read_text() for p in _deploy_files()}
    texts["rendered"] = deploy.to_yaml([d for _, d in rendered_docs()])
    for name, text in texts.items():
        for leak in _LEAKS:
            assert not leak.search(text), f"{name}: {leak.pattern}"
    for path in _deploy_files():
        if path.suffix == ".yaml":
            for d in yaml.safe_load_all(path.read_text()):
                assert not (isinstance(d, dict) and d.get("kind") == "Secret"), f"{path}: a Secret manifest"
    options = config_mod.load(K8S / "config.yaml").stores.storage_options
    assert not {"key", "secret", "token", "password"} & {k.lower() for k in options}
    # the check bites: a literal credential in an env entry is caught
    bad = copy.deepcopy(DASK[0][1])
    next(containers(bad))[2]["env"] = [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]
    with pytest.raises(AssertionError, match="literal"):
        test_credentials_come_only_from_secrets("bad", bad)


# the AWS documentation's example credentials (not real ones)
KEY, SECRET, TOKEN = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzEXAMPLEtoken"


def _inline_credentials_config(tmp_path: Path, **options: Any) -> Path:
    """deploy/k8s/config.yaml with credentials inline in stores and inputs storage_options."""
    raw = yaml.safe_load((K8S / "config.yaml").read_text())
    raw["stores"]["storage_options"] = {"endpoint_url": "https://s3.example.org", "key": KEY, "secret": SECRET,
                                        "token": TOKEN, "client_kwargs": {"region_name": "eu-1"}, **options}
    raw["inputs"] = {"storage_options": {"key": KEY, "secret": SECRET, "anon": False},
                     "mod11a1": {"paths": "s3://b/MOD11A1/*.hdf", "storage_options": {"requester_pays": True}}}
    path = tmp_path / "inline.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("kind", ["job", "cluster"])
def test_render_never_writes_inline_credentials(tmp_path: Path, kind: str, device: str) -> None:
    path = _inline_credentials_config(tmp_path)
    raw = yaml.safe_load(path.read_text())
    raw["cluster"]["device"] = device
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = config_mod.load(path)
    assert cfg.stores.storage_options["secret"] == SECRET  # dsm itself still reads them
    result = CliRunner().invoke(dsm_cli, ["deploy", "render", str(path), "--image", IMAGE, "--kind", kind])
    assert result.exit_code == 0, result.output
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert docs == deploy.render(cfg, deploy.DeploySpec(image=IMAGE, name="dsm-run" if kind == "job" else "dsm"),
                                 kind)  # type: ignore[arg-type]
    assert "Secret" not in {d["kind"] for d in docs}
    for d in docs:  # every document as YAML text, and the credentials in every usual encoding
        text = deploy.to_yaml([d])
        for value in (KEY, SECRET, TOKEN):
            for form in (value, base64.b64encode(value.encode()).decode(), json.dumps(value)):
                assert form not in text, f"{d['kind']}: a credential in a rendered manifest"
    for d in docs:
        if d["kind"] == "ConfigMap":
            validate_k8s(d)
            inner = yaml.safe_load(d["data"][deploy.CONFIG_KEY])
            assert inner["stores"]["storage_options"] == {"endpoint_url": "https://s3.example.org",
                                                          "client_kwargs": {"region_name": "eu-1"}}
            assert inner["inputs"]["storage_options"] == {"anon": False}
            assert inner["inputs"]["mod11a1"]["storage_options"] == {"requester_pays": True}
            config_mod.from_dict(inner, source="configmap")
        if not d["apiVersion"].startswith("kubernetes.dask.org/"):
            continue
        roles = {role for role, _ in pod_specs(d)}
        for role, _, c in containers(d):  # runner and workers reference the Secret; the scheduler reads no data
            refs = [r["secretRef"]["name"] for r in c.get("envFrom", []) if not r["secretRef"].get("optional")]
            assert refs == ([] if role == "scheduler" else [deploy.CREDENTIALS_SECRET]), role
            assert not any(e.get("value") in (KEY, SECRET, TOKEN) for e in c.get("env", [])), role
        assert roles >= ({"worker"} if d["kind"] == "DaskWorkerGroup" else {"scheduler", "worker"})
        assert "job" in roles or d["kind"] != "DaskJob"
    (line,) = result.stderr.splitlines()  # said once, on stderr: what was left out and how to provide it
    assert "stores.storage_options.secret" in line and "inputs.storage_options.key" in line
    assert f"Secret {deploy.CREDENTIALS_SECRET}" in line and "kubectl create secret generic" in line
    assert f"dsm deploy secret {path} --name {deploy.CREDENTIALS_SECRET}" in line
    assert not {KEY, SECRET, TOKEN} & set(re.findall(r"[\w/+]+", line))


def test_render_names_the_secret_it_references(tmp_path: Path) -> None:
    path = _inline_credentials_config(tmp_path)
    result = CliRunner().invoke(dsm_cli, ["deploy", "render", str(path), "--image", IMAGE, "--secret", "team-s3"])
    assert result.exit_code == 0, result.output
    (job,) = [d for d in yaml.safe_load_all(result.stdout) if d["kind"] == "DaskJob"]
    for role, _, c in containers(job):
        refs = [r["secretRef"]["name"] for r in c.get("envFrom", [])]
        assert role == "scheduler" or "team-s3" in refs, role
    assert "Secret team-s3:" in result.stderr and "--name team-s3" in result.stderr
    clean = CliRunner().invoke(dsm_cli, ["deploy", "render", str(K8S / "config.yaml"), "--image", IMAGE])
    assert clean.exit_code == 0 and clean.stderr == ""  # nothing inline, nothing to say


def test_the_secret_command_carries_the_credentials_only_on_request(tmp_path: Path) -> None:
    path = _inline_credentials_config(tmp_path, client_kwargs={"region_name": "eu-1", "aws_session_token": TOKEN})
    result = CliRunner().invoke(dsm_cli, ["deploy", "secret", str(path), "--name", "team-s3"])
    assert result.exit_code == 0, result.output
    (doc,) = [d for d in yaml.safe_load_all(result.stdout) if d]
    validate_k8s(doc)
    assert doc["kind"] == "Secret" and doc["type"] == "Opaque" and doc["metadata"]["name"] == "team-s3"
    assert {k: base64.b64decode(v).decode() for k, v in doc["data"].items()} == {
        "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN}
    default = CliRunner().invoke(dsm_cli, ["deploy", "secret", str(path)])
    assert yaml.safe_load(default.stdout)["metadata"]["name"] == deploy.CREDENTIALS_SECRET
    # nothing inline: no Secret, but how to make one
    none = CliRunner().invoke(dsm_cli, ["deploy", "secret", str(K8S / "config.yaml")])
    assert none.exit_code == 2 and none.stdout == "" and "kubectl create secret generic" in none.stderr
    # a credential with no AWS_* variable is refused by `secret` and still left out by `render`
    odd = _inline_credentials_config(tmp_path, password="hunter2-hunter2")
    refused = CliRunner().invoke(dsm_cli, ["deploy", "secret", str(odd)])
    assert refused.exit_code == 2 and "stores.storage_options.password" in refused.stderr
    assert "hunter2" not in CliRunner().invoke(dsm_cli, ["deploy", "render", str(odd), "--image", IMAGE]).stdout
    bad_name = CliRunner().invoke(dsm_cli, ["deploy", "secret", str(path), "--name", "Team_S3"])
    assert bad_name.exit_code == 2 and bad_name.stdout == ""


def test_credentials_are_told_apart_from_other_storage_options() -> None:
    options = {"endpoint_url": "https://s3.example.org", "anon": False, "use_ssl": True, "key": KEY,
               "client_kwargs": {"region_name": "eu-1", "aws_secret_access_key": SECRET},
               "config_kwargs": {"signature_version": "s3v4"}, "headers": {"Authorization": "Bearer x"},
               "s3_additional_kwargs": {"ACL": "private"}, "token": None}
    public, secret = deploy.split_storage_options(options)
    assert public == {"endpoint_url": "https://s3.example.org", "anon": False, "use_ssl": True,
                      "client_kwargs": {"region_name": "eu-1"}, "config_kwargs": {"signature_version": "s3v4"},
                      "s3_additional_kwargs": {"ACL": "private"}, "token": None}
    assert secret == {"key": KEY, "client_kwargs": {"aws_secret_access_key": SECRET},
                      "headers": {"Authorization": "Bearer x"}}
    assert deploy.split_storage_options({"client_kwargs": {}}) == ({"client_kwargs": {}}, {})
    raw = yaml.safe_load((K8S / "config.yaml").read_text())
    raw["stores"]["storage_options"] = {"key": KEY, "secret": SECRET}
    raw["inputs"] = {"storage_options": {"key": "AKIAOTHEROTHEROTHER1", "secret": SECRET}}
    with pytest.raises(ConfigError, match=r"inputs\.storage_options\.key: differs"):
        deploy.credential_env(config_mod.from_dict(raw, source="test"))


def test_static_manifests_are_what_the_renderer_makes() -> None:
    cfg = config_mod.load(K8S / "config.yaml")
    cluster = deploy.DeploySpec(image=IMAGE, name="dsm", workers=4, idle_timeout=3600)
    assert _yaml_docs(K8S / "daskcluster.yaml") == deploy.render_cluster(cfg, cluster)
    assert _yaml_docs(K8S / "daskworkergroup-gpu.yaml") == [deploy.render_gpu_worker_group(cluster)]
    assert _yaml_docs(K8S / "daskjob.yaml") == deploy.render_job(cfg, deploy.DeploySpec(image=IMAGE, name="dsm-run"))[1:]
    daily = deploy.DeploySpec(image=IMAGE, name="dsm-daily", worker=deploy.Resources(4, "16Gi"))
    assert _yaml_docs(K8S / "cronjob-daily.yaml") == deploy.render_daily(cfg, daily)


def test_cli_render_prints_the_same_yaml(tmp_path: Path) -> None:
    raw = yaml.safe_load((K8S / "config.yaml").read_text())
    raw["cluster"]["device"] = "cuda"
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(dsm_cli, ["deploy", "render", str(path), "--image", IMAGE, "--kind", "cluster",
                                          "--workers", "2", "--worker-memory", "12Gi"])
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all(result.output))
    assert [d["kind"] for d in docs] == ["DaskCluster", "DaskWorkerGroup"]
    for d in docs:
        validate_crd(d)
    args = docs[0]["spec"]["worker"]["spec"]["containers"][0]["args"]
    assert args[args.index("--memory-limit") + 1] == "11059MiB"
    bad = CliRunner().invoke(dsm_cli, ["deploy", "render", str(path), "--image", "dsm:latest"])
    assert bad.exit_code != 0 and "latest" in bad.output


def test_render_refuses_what_cannot_work_in_pods(tmp_path: Path) -> None:
    local = _config().model_copy(update={"stores": config_mod.StoresConfig(cube=str(tmp_path / "cube.zarr"))})
    for kind in ("job", "cluster"):
        with pytest.raises(ConfigError, match="stores.cube"):
            deploy.render(local, deploy.DeploySpec(image=IMAGE), kind)  # type: ignore[arg-type]
    raw = yaml.safe_load((K8S / "config.yaml").read_text())
    raw["inputs"] = {"smap": {"paths": "granules/*.h5"}, "mod11a1": {"paths": "s3://b/MOD11A1/*.hdf"}}
    with pytest.raises(ConfigError, match=r"inputs\.smap") as info:
        deploy.render(config_mod.from_dict(raw, base=tmp_path), deploy.DeploySpec(image=IMAGE), "job")
    assert "mod11a1" not in str(info.value)
    for bad in [{"name": "Dsm_1"}, {"name": "x" * 41}, {"image": "dsm"}, {"image": "r/dsm:latest"},
                {"gpu_image": "r/dsm:latest"}, {"image": "r/dsm@sha256:" + "0" * 64}]:
        with pytest.raises(ValueError):
            deploy.DeploySpec(**{"image": IMAGE, **bad})
    for cpu, memory in [(0, "8Gi"), (2, "512Mi"), (2, "8 GB")]:
        with pytest.raises(ValueError):
            deploy.Resources(cpu, memory)


@pytest.mark.parametrize("text", ["8Gi", "1.5Gi", "8G", "7372Mi", "128974848", "129e6", "1Ti"])
def test_quantities_agree_with_dask(text: str) -> None:
    assert deploy.parse_quantity(text) == parse_bytes(text)


def test_cpu_quantities_and_memory_limit() -> None:
    assert deploy.parse_quantity("500m") == 0.5 and deploy.parse_quantity(2) == 2.0
    assert deploy.dask_memory_limit("8Gi") == "7372MiB"
    assert parse_bytes(deploy.dask_memory_limit("16Gi")) <= 0.9 * 16 * 2**30


def test_config_device_option() -> None:
    assert _config().cluster.device == "cpu"
    assert _config(device="cuda").cluster.device == "cuda"
    with pytest.raises(ConfigError, match="cluster.device"):
        _config(device="gpu")


# ----------------------------------------------------------------------------- Helm values


def _merge(group: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """sprig ``merge group base``: the group's keys win, maps merge deeply, lists are replaced."""
    out = copy.deepcopy(base)
    for k, v in group.items():
        out[k] = _merge(v, out[k]) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _chart_worker_args(w: dict[str, Any]) -> list[str]:
    """Worker arguments after the command, as templates/dask-worker-deployment.yaml builds them."""
    args = ["dsm-scheduler:8786"]
    if w["resources"].get("limits"):
        args += ["--nthreads", str(w.get("threads_per_worker") or w["resources"]["limits"]["cpu"]),
                 "--memory-limit", str(w["resources"]["limits"]["memory"])]  # fmt: skip
    return args + ["--no-dashboard", "--dashboard-address", "8790"] + list(w.get("extraArgs") or [])


def _chart_pod(w: dict[str, Any], args: list[str]) -> dict[str, Any]:
    c = {"name": "worker", "image": f"{w['image']['repository']}:{w['image']['tag']}", "args": args,
         "resources": w["resources"], "env": w.get("env") or [], "volumeMounts": w["mounts"]["volumeMounts"]}  # fmt: skip
    pod = {"containers": [c], "volumes": w["mounts"]["volumes"], "securityContext": w["securityContext"]}
    for key in ("nodeSelector", "tolerations"):
        if w.get(key):
            pod[key] = w[key]
    return pod


def test_helm_values_size_workers_from_their_limits() -> None:
    values = yaml.safe_load(HELM_VALUES.read_text())
    assert values["jupyter"]["enabled"] is False
    groups = [values["worker"]] + [_merge(g, values["worker"]) for g in values["additional_worker_groups"]]
    assert any(deploy.GPU_RESOURCE in g["resources"]["limits"] for g in groups)
    shims = re.findall(r"/opt/dsm/bin/(dask-\w+)", DOCKERFILE.read_text())
    for w in groups:
        assert w["image"]["dask_worker"] in shims, "the chart calls dask_worker; the image must have it"
        args = _chart_worker_args(w)
        params = dask_worker_cli.make_context("dask worker", args).params  # the last --memory-limit wins
        limits = w["resources"]["limits"]
        assert params["nthreads"] == int(limits["cpu"])
        assert parse_bytes(params["memory_limit"]) == parse_bytes(deploy.dask_memory_limit(limits["memory"]))
        assert w["resources"]["requests"] == limits
        assert w["image"]["tag"] not in ("", "latest")
        gpus = limits.get(deploy.GPU_RESOURCE)
        assert (params["resources"] == f"GPU={gpus}") if gpus else not params["resources"]
        assert w["image"]["tag"].endswith("-cuda") == bool(gpus)
        pod = _chart_pod(w, [w["image"]["dask_worker"], *args])
        validate_k8s({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "w"}, "spec": pod})
        plain = {e["name"]: e["value"] for e in w["env"] if "value" in e}
        assert plain == WORKER_ENVIRON, "every worker starts with dsm's worker environment, and no other plain value"
        for e in w["env"]:
            assert "value" in e or (set(e) == {"name", "valueFrom"} and "secretKeyRef" in e["valueFrom"])
    s = values["scheduler"]
    scheduler = {"containers": [{"name": "s", "image": f"{s['image']['repository']}:{s['image']['tag']}",
                                 "args": ["dask-scheduler"], "resources": s["resources"]}],
                 "securityContext": s["securityContext"]}  # fmt: skip
    validate_k8s({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "s"}, "spec": scheduler})
    for pod in [scheduler] + [_chart_pod(w, []) for w in groups]:
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0


# ----------------------------------------------------------------------------- image


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        buf += line.rstrip()
        if buf.endswith("\\"):
            buf = buf[:-1] + " "
            continue
        op, _, rest = buf.strip().partition(" ")
        out.append((op.upper(), rest.strip()))
        buf = ""
    return out


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    start = max(i for i, (op, _) in enumerate(instructions) if op == "FROM")
    return instructions[start:]


def test_dockerfile_is_non_root_pinned_and_secret_free() -> None:
    ins = _instructions(DOCKERFILE.read_text())
    final = _final_stage(ins)
    users = [arg for op, arg in final if op == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and (not gid or (gid.isdigit() and int(gid) != 0)), \
        "numeric non-root uid, so runAsNonRoot can verify it"
    assert int(uid) == deploy.UID
    args = {a.split("=")[0]: a.partition("=")[2] for op, a in ins if op == "ARG"}
    base = args.get("PYTHON_IMAGE", "")
    assert base.startswith("python:3.11") and not base.endswith(":latest")
    pip_installs = [cmd for op, arg in ins if op == "RUN" for cmd in re.split(r"&&|;", arg) if "pip install" in cmd]
    assert pip_installs
    for cmd in pip_installs:
        words = shlex.split(cmd)
        targets = [w for w in words[words.index("install") + 1:] if not w.startswith("-") and w != "constraints.txt"]
        pinned_self = all(re.fullmatch(r"pip==[\d.]+", t) for t in targets)
        assert pinned_self or "-c constraints.txt" in cmd, f"unconstrained: {cmd.strip()}"
    assert any('".[k8s]"' in c for c in pip_installs)
    final_ops = dict(final)
    assert json.loads(final_ops["ENTRYPOINT"])[0].endswith("tini")
    for op, arg in ins:
        if op in ("ENV", "ARG"):
            assert not SECRETISH.search(arg), f"{op} {arg}: credentials come from Secrets at run time"
    copies = [arg.split()[:-1] for op, arg in ins if op == "COPY" and not arg.startswith("--from")]
    sources = [s for srcs in copies for s in srcs]
    for s in sources:
        assert (REPO / s).exists(), s
        assert not _dockerignored(s) and not _dockerignored(f"{s}/__init__.py" if (REPO / s).is_dir() else s)


def test_image_installs_dask_scheduler_and_worker_shims() -> None:
    text = DOCKERFILE.read_text()
    for sub in ("scheduler", "worker"):
        assert re.search(rf"exec dask {sub} \"\$@\".*> /opt/dsm/bin/dask-{sub}", text), sub
    assert "PATH=/opt/dsm/bin:$PATH" in text


def test_constraints_pin_everything_the_image_installs() -> None:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins[canonicalize_name(name)] = version
    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [("dsm", frozenset({"k8s"}))]
    missing = []
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if (key, extras) in seen:
            continue
        seen.add((key, extras))  # type: ignore[arg-type]
        if key != "dsm":
            if key not in pins:
                missing.append(key)
                continue
            assert md.version(name) == pins[key], f"{name}: venv {md.version(name)} != constraints {pins[key]}"
        for raw in md.requires(name) or []:
            req = Requirement(raw)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, frozenset(req.extras)))
    assert not missing, f"not pinned in constraints.txt: {sorted(set(missing))}"
    assert "xgboost-cpu" in pins and "sed -n 's/^xgboost-cpu==//p' constraints.txt" in DOCKERFILE.read_text()


def _dockerignored(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    patterns = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            neg = line.startswith("!")
            pat = line.lstrip("!").strip("/")
            rx = re.escape(pat).replace(r"\*\*", ".*").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            rx = rx.replace(r"\[", "[").replace(r"\]", "]")
            patterns.append((neg, re.compile(rx + "$")))
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for neg, rx in patterns:
        if any(rx.match(p) for p in prefixes):
            ignored = not neg
    return ignored


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    for kept in ("pyproject.toml", "constraints.txt", "README.md", "dsm/cli/__init__.py", "dsm/ingest/modis.py"):
        assert not _dockerignored(kept), kept
    for dropped in (".venv/bin/python", ".git/config", ".env", "dsm/.env", "tests/test_deploy.py", "work/demo/cube.zarr",
                    "dsm/__pycache__/cli.cpython-311.pyc", "notebooks/a.ipynb", ".aws/credentials", ".netrc",
                    "deploy/k8s/config.yaml", "secrets/id.pem"):  # fmt: skip
        assert _dockerignored(dropped), dropped
