"""docker-compose.yaml cannot be started here (no Docker engine): check that it hangs together."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from numtaflow.config import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_required_services_exist(compose):
    services = compose["services"]
    for name in ("minio", "minio-init", "postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler",
                 "airflow-dag-processor", "airflow-triggerer", "spark-master", "spark-worker"):
        assert name in services, name


def test_references_resolve(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("$", ".", "/")):
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
        for secret in service.get("secrets", []):
            assert secret in compose["secrets"]
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").is_file()


def test_every_variable_is_documented_or_defaulted():
    text = (ROOT / "docker-compose.yaml").read_text()
    documented = {line.split("=")[0] for line in (ROOT / ".env.example").read_text().splitlines()
                  if "=" in line and not line.startswith("#")}
    for name, default in re.findall(r"\$\{([A-Z0-9_]+)(:-[^}]*)?", text):
        assert name in documented or default, f"${{{name}}} is neither in .env.example nor defaulted"


def test_settings_and_paths_exist(compose):
    env = compose["x-numtaflow-env"]
    fields = set(Settings().all_settings())
    for key in env:
        if key.startswith(ENV_PREFIX):
            assert key[len(ENV_PREFIX):].lower() in fields, key
    airflow_env = compose["x-airflow-common"]["environment"]
    for key in ("AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER"):
        relative = airflow_env[key].removeprefix("/opt/numtaflow/src/")
        assert (ROOT / relative).is_dir(), key
    assert compose["services"]["spark-worker"]["volumes"] == compose["x-airflow-common"]["volumes"], \
        "executors must see the paths the drivers name"


def test_project_image_commands_survive_its_entrypoint(compose):
    """apache/airflow's entrypoint runs a command other than bash or python as `airflow <command>`:
    a service of this image that runs anything else must replace the entrypoint."""
    for name, service in compose["services"].items():
        if service.get("image") != "numtaflow:latest":
            continue
        command = service.get("command", [])
        if "entrypoint" in service:
            assert service["entrypoint"][0] == "/usr/bin/dumb-init", f"{name} loses the image's init process"
        else:
            assert command and command[0] in ("airflow", "bash", "python"), f"{name} would run `airflow {command}`"


def test_the_image_holds_no_secret_and_finds_its_jobs(compose):
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    secret_files = [Path(spec["file"].split(":-")[-1].rstrip("}")).name for spec in compose["secrets"].values()]
    for secret in [".env", *secret_files]:
        assert secret in ignored, f"{secret} would be copied into an image layer"
    # installed in place, the package resolves PROJECT_ROOT (and spark_jobs/) to the copied checkout;
    # a plain install would put it in site-packages, far from spark_jobs/
    assert "pip install --no-cache-dir --no-deps -e /opt/numtaflow/src" in (ROOT / "Dockerfile").read_text()


def test_the_airflow_containers_share_their_keys_from_env(compose):
    """Unset, each container writes its own random key into its own airflow.cfg: the triggerer could not
    decrypt the watchers the DAG processor stored, nor the API server read the scheduler's task logs."""
    airflow_env = compose["x-airflow-common"]["environment"]
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY"):
        assert airflow_env.get(key, "").startswith("${") and ":?" in airflow_env[key], f"{key} must come from .env"


def test_no_literal_secrets_and_ports_on_loopback(compose):
    env = compose["x-numtaflow-env"]
    assert env["AWS_SECRET_ACCESS_KEY"].startswith("${") and env["AWS_ACCESS_KEY_ID"].startswith("${")
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_no_container_passes_a_secret_on_a_command_line(compose):
    """A process's arguments are world-readable (``ps``, ``/proc/<pid>/cmdline``): a secret may reach a
    command only through the shell's own ``printf`` feeding a pipe, never as another program's argument."""
    secrets = re.compile(r"\$\$?\{?(AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID|NUMTAFLOW_S3_\w+|POSTGRES_PASSWORD|"
                         r"MINIO_ROOT_\w+|AIRFLOW_\w*(SECRET|FERNET)\w*)")
    for name, service in compose["services"].items():
        for part in ("entrypoint", "command"):
            words = service.get(part) or []
            for segment in re.split(r"&&|\|\||[;|]", " ".join([words] if isinstance(words, str) else words)):
                if secrets.search(segment):
                    assert segment.split()[0] == "printf", f"{name}'s {part} passes a secret to: {segment.strip()}"
