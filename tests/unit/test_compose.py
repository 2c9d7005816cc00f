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
    for name in ("spark-master", "spark-worker"):
        assert compose["services"][name]["command"][0] == "spark-class"


def test_no_literal_secrets_and_ports_on_loopback(compose):
    env = compose["x-numtaflow-env"]
    assert env["AWS_SECRET_ACCESS_KEY"].startswith("${") and env["AWS_ACCESS_KEY_ID"].startswith("${")
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
