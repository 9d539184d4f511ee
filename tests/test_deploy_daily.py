"""The daily CronJob (deploy/k8s/cronjob-daily.yaml, `dsm deploy render --kind daily`): what it runs, and how.

Its schema, security, sizes, secrets and drift from the renderer are checked with every other
manifest in tests/test_deploy.py; here: the command, the schedule, and the configuration in its
ConfigMap (a LocalCluster sized from the pod).
"""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from dask.utils import parse_bytes

from dsm import config as config_mod
from dsm import deploy
from dsm.cli import main as dsm_cli
from dsm.errors import ConfigError

K8S = Path(__file__).resolve().parents[1] / "deploy" / "k8s"
IMAGE = "registry.example.org/dsm:0.1.0"


def _docs() -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / "cronjob-daily.yaml").read_text()) if d]


def test_the_cronjob_runs_dsm_run_until_today_daily_without_overlap() -> None:
    cm, cron = _docs()
    spec = cron["spec"]
    assert (spec["schedule"], spec["timeZone"], spec["concurrencyPolicy"]) == ("0 6 * * *", "Etc/UTC", "Forbid")
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and spec["jobTemplate"]["spec"]["backoffLimit"] >= 1
    (c,) = pod["containers"]
    assert c["args"] == ["dsm", "run", "/config/config.yaml", "--until", "today"]
    ctx = dsm_cli.commands["run"].make_context("dsm run", [str(K8S / "config.yaml"), *c["args"][3:]])
    assert ctx.params["until"] == "today"
    # the configuration it reads: the ConfigMap, mounted at /config
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["config"] == "/config" and volumes["config"]["configMap"]["name"] == cm["metadata"]["name"]
    cfg = config_mod.from_dict(yaml.safe_load(cm["data"]["config.yaml"]), source="configmap")
    original = config_mod.load(K8S / "config.yaml")
    assert cfg.model_dump(exclude={"cluster"}) == original.model_dump(exclude={"cluster"})
    # a LocalCluster in the pod: all its cores, memory left to the client sharing the container
    limits = c["resources"]["limits"]
    assert cfg.cluster.address is None and cfg.cluster.n_workers == 1
    assert cfg.cluster.threads_per_worker == int(limits["cpu"])
    assert parse_bytes(cfg.cluster.memory_limit) <= 0.8 * deploy.parse_quantity(limits["memory"])
    env = {e["name"]: e["value"] for e in c["env"]}
    assert "emptyDir" in volumes[[n for n, p in mounts.items() if p == env["DASK_TEMPORARY_DIRECTORY"]][0]]


def test_cli_renders_the_daily_cronjob_and_refuses_what_cannot_run(tmp_path: Path) -> None:
    args = ["deploy", "render", str(K8S / "config.yaml"), "--kind", "daily", "--image", IMAGE]
    res = CliRunner().invoke(dsm_cli, [*args, "--worker-cpu", "4", "--worker-memory", "16Gi"])
    assert res.exit_code == 0, res.output
    assert [d for d in yaml.safe_load_all(res.output) if d] == _docs()
    res = CliRunner().invoke(dsm_cli, [*args, "--schedule", "30 2 * * 1-5", "--name", "nightly"])
    (cm, cron) = list(yaml.safe_load_all(res.output))
    assert cron["spec"]["schedule"] == "30 2 * * 1-5" and cron["metadata"]["name"] == "nightly"
    assert cm["metadata"]["name"] == "nightly-config"
    bad = CliRunner().invoke(dsm_cli, [*args, "--schedule", "every day"])
    assert bad.exit_code == 2 and "cron expression of five fields" in bad.output
    local = config_mod.load(K8S / "config.yaml")
    local = local.model_copy(update={"stores": config_mod.StoresConfig(cube=str(tmp_path / "cube.zarr"))})
    with pytest.raises(ConfigError, match="local paths do not exist in the pods"):
        deploy.render_daily(local, deploy.DeploySpec(image=IMAGE))


def test_the_kubernetes_schema_bites_on_the_cronjob() -> None:
    _, cron = _docs()
    for version in ("1.30", kubernetes_validate.latest_version()):
        kubernetes_validate.validate(cron, version, strict=True)
    typo = copy.deepcopy(cron)
    typo["spec"]["concurrencypolicy"] = typo["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, "1.30", strict=True)
