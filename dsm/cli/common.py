"""Running a command: on the configured cluster, under the output store's lock."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from dsm import config as config_mod

T = TypeVar("T")


def _on_cluster(cfg: config_mod.Config, stage: Callable[[Any], T], err: bool = True) -> T:
    """Run ``stage(client)`` on the configured cluster, naming the cluster (and its dashboard)
    on stderr (``err``) or stdout, except under ``dsm -q``."""
    from dsm import cluster
    from dsm.cli.bars import quiet

    with cluster.connect(cfg.cluster) as client:
        if not quiet():
            click.echo(cluster.describe(client), err=err)
        return stage(client)


@contextmanager
def _locked(cfg: config_mod.Config, break_lock: bool = False) -> Iterator[Any]:
    """Hold ``cfg``'s output-store lock (:mod:`dsm.runlock`) around a writing command, with
    SIGTERM/SIGINT turned into a clean stop that releases it; yields the lock (the lease)."""
    from dsm.chain import lock_for
    from dsm.interrupt import stop_on_signals

    with stop_on_signals(), lock_for(cfg, break_lock=break_lock) as lock:
        yield lock


def _run_locked(cfg: config_mod.Config, break_lock: bool, stage: Callable[[Any, Any], bool]) -> None:
    """Run ``stage(client, lease)`` on the cluster under the lock (:func:`_locked`,
    :func:`_on_cluster`); exit status 1 when it returns False (some of its items failed)."""
    with _locked(cfg, break_lock) as lease:
        ok = _on_cluster(cfg, lambda client: stage(client, lease))
    if not ok:
        sys.exit(1)


_break_lock = click.option("--break-lock", is_flag=True,
                           help="Take the output store's lock from a run known to be dead.")
