"""The commands around a configuration: ``dsm config check|schema`` and ``dsm deploy render|secret``."""

from __future__ import annotations

import json

import click

from dsm import config as config_mod


@click.group("config")
def config_group() -> None:
    """Work with configuration files."""


@config_group.command("check")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
def config_check(config_path: str) -> None:
    """Validate CONFIG and print it with defaults filled in and paths resolved.

    Every training grid value (and XGBoost setting) is also tried on its estimator. An
    unknown or misspelt key is named with the keys valid at its place (`dsm config schema`
    describes them all).
    """
    cfg = config_mod.load(config_path)
    from dsm.models.estimators import check_training_grids

    check_training_grids(cfg.training)
    click.echo(config_mod.dump(cfg), nl=False)
    r = cfg.grid_region
    click.echo(f"# region: {r.nrows} x {r.ncols} SMAP cells, 1 km {r.fine_shape[0]} x {r.fine_shape[1]}")


@config_group.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the configuration: every section and key, its type, default
    and description (for editors' YAML validation, e.g. yaml-language-server)."""
    from dsm.config_help import schema

    click.echo(json.dumps(schema(), indent=1))


@click.group("deploy")
def deploy_group() -> None:
    """Kubernetes manifests for the dask-kubernetes operator (see deploy/README.md)."""


@deploy_group.command("render")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--image", required=True, help="Image with a pinned tag, e.g. registry.example.org/dsm:0.1.0.")
@click.option("--kind", type=click.Choice(["cluster", "job", "daily"]), default="job", show_default=True,
              help="job: ConfigMap + DaskJob running `dsm run`; cluster: interactive DaskCluster; daily: ConfigMap + "
                   "CronJob running `dsm run --until today` in one pod (worker size) on --schedule.")
@click.option("--name", default=None, help="Resource name (default: dsm-run for a job, dsm-daily for daily, dsm for "
              "a cluster).")
@click.option("--schedule", default="0 6 * * *", show_default=True, help="With --kind daily: cron schedule, UTC.")
@click.option("--workers", type=int, default=None, help="Worker replicas (default: cluster.n_workers).")
@click.option("--worker-cpu", type=int, default=2, show_default=True, help="Cores per worker (= --nthreads).")
@click.option("--worker-memory", default="8Gi", show_default=True, help="Memory limit per worker container.")
@click.option("--gpu-workers", type=int, default=1, show_default=True, help="GPU workers when cluster.device is cuda.")
@click.option("--gpu-worker-cpu", type=int, default=4, show_default=True)
@click.option("--gpu-worker-memory", default="16Gi", show_default=True)
@click.option("--gpu-image", default=None, help="Image of GPU pods (default: IMAGE-cuda).")
@click.option("--secret", "secrets", multiple=True, metavar="NAME",
              help="Secret passed to workers and runner with envFrom (repeatable; default dsm-s3-credentials).")
@click.option("--idle-timeout", type=int, default=0, show_default=True,
              help="Seconds idle before the operator deletes a DaskCluster (0: never).")
def deploy_render(config_path: str, image: str, kind: str, name: str | None, workers: int | None,
                  worker_cpu: int, worker_memory: str, gpu_workers: int, gpu_worker_cpu: int,
                  gpu_worker_memory: str, gpu_image: str | None, secrets: tuple[str, ...],
                  idle_timeout: int, schedule: str) -> None:
    """Print the Kubernetes resources for CONFIG as YAML (pipe into `kubectl apply -f -`)."""
    from dsm import deploy

    cfg = config_mod.load(config_path)
    try:
        spec = deploy.DeploySpec(
            image=image, name=name or {"job": "dsm-run", "daily": "dsm-daily"}.get(kind, "dsm"), workers=workers,
            worker=deploy.Resources(worker_cpu, worker_memory), gpu_workers=gpu_workers,
            gpu_worker=deploy.Resources(gpu_worker_cpu, gpu_worker_memory, gpu=1), gpu_image=gpu_image,
            secrets=secrets or (deploy.CREDENTIALS_SECRET,), idle_timeout=idle_timeout,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    click.echo(deploy.to_yaml(deploy.render(cfg, spec, kind, schedule)), nl=False)  # type: ignore[arg-type]
    notice = deploy.credentials_notice(cfg, spec, config_path)
    if notice:
        click.echo(notice, err=True)


@deploy_group.command("secret")
@click.argument("config_path", metavar="CONFIG", type=click.Path(exists=True, dir_okay=False))
@click.option("--name", default="dsm-s3-credentials", show_default=True,
              help="Secret name (the one `render --secret` references).")
def deploy_secret(config_path: str, name: str) -> None:
    """Print a Secret with the credentials in CONFIG's storage_options as AWS_* variables.

    Its output contains the credentials: pipe it into `kubectl apply -f -`, never commit it.
    `render` never writes them; without this command create the Secret with
    `kubectl create secret generic NAME --from-literal=AWS_ACCESS_KEY_ID=...`.
    """
    from dsm import deploy

    doc = deploy.render_secret(config_mod.load(config_path), name)
    click.echo(deploy.to_yaml([doc]), nl=False)
