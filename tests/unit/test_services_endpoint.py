"""`s3 start` serves the endpoint the jobs use (``s3_endpoint``), or refuses one it cannot serve."""

import argparse
import os
import subprocess
import sys
from dataclasses import astuple

import pytest

from numtaflow.services import S3Ports, port_open

MOVED_PORT = 8733  # away from the demo's 8333 and the tests' 8433 (and their +10000 gRPC ports)


def test_default_endpoint_gives_the_default_ports():
    assert S3Ports.for_endpoint("http://127.0.0.1:8333") == S3Ports()
    assert S3Ports.for_endpoint("http://localhost:8433/") == S3Ports.offset(100)


def test_moved_endpoint_moves_every_port_together():
    ports = S3Ports.for_endpoint(f"http://127.0.0.1:{MOVED_PORT}")
    assert ports == S3Ports.offset(MOVED_PORT - 8333) and ports.s3 == MOVED_PORT
    assert len(set(astuple(ports))) == 5


@pytest.mark.parametrize("endpoint", ["https://127.0.0.1:8333", "http://minio:9000", "http://10.0.0.5:8333",
                                      "http://[::1]:8333", "", "http://127.0.0.1:8333/bucket"])
def test_endpoints_the_embedded_server_cannot_serve_are_refused(endpoint):
    with pytest.raises(ValueError, match=r"serves only http://127\.0\.0\.1:<port>; a remote endpoint needs no"):
        S3Ports.for_endpoint(endpoint)


@pytest.mark.parametrize("port", [80, 1023, 40223, 65000])
def test_ports_whose_companions_do_not_fit_are_refused(port):
    """weed opens gRPC ports at HTTP port + 10000: the admin port's must stay below 65536."""
    with pytest.raises(ValueError, match="choose a port from 1024 to 40222"):
        S3Ports.for_endpoint(f"http://127.0.0.1:{port}")
    assert max(astuple(S3Ports.for_endpoint("http://127.0.0.1:40222"))) + 10000 == 65535


def test_cli_refuses_a_remote_endpoint_before_starting_anything(monkeypatch, tmp_path):
    from numtaflow import cli

    monkeypatch.setenv("NUMTAFLOW_S3_ENDPOINT", "https://s3.example.com")
    monkeypatch.setattr(cli, "STATE_DIR", tmp_path)
    with pytest.raises(SystemExit, match="s3 start: .*serves only http://127.0.0.1:<port>"):
        cli.cmd_s3(argparse.Namespace(action="start"))
    assert not any(tmp_path.iterdir())


@pytest.mark.integration
@pytest.mark.skipif(port_open(MOVED_PORT), reason=f"port {MOVED_PORT} is in use")
def test_s3_start_serves_a_moved_endpoint(tmp_path):
    """The real CLI and SeaweedFS: the bucket is reachable with boto3 at the moved endpoint."""
    import boto3

    from numtaflow.services import ensure_credentials

    endpoint = f"http://127.0.0.1:{MOVED_PORT}"
    env = {**os.environ, "NUMTAFLOW_STATE_DIR": str(tmp_path), "NUMTAFLOW_S3_ENDPOINT": endpoint,
           "NUMTAFLOW_BUCKET": "moved"}
    cli = [sys.executable, "-m", "numtaflow", "s3"]
    try:
        started = subprocess.run([*cli, "start"], env=env, capture_output=True, text=True, timeout=120)
        assert started.returncode == 0, started.stderr
        assert f"at {endpoint}, bucket moved" in started.stdout
        keys = ensure_credentials(tmp_path / "credentials.env")
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])
        assert "moved" in [bucket["Name"] for bucket in client.list_buckets()["Buckets"]]
    finally:
        subprocess.run([*cli, "stop"], env=env, capture_output=True, timeout=60)
    assert not port_open(MOVED_PORT)


def test_a_pid_file_names_only_the_process_it_started(tmp_path):
    """After a reboot a pid file's pid may belong to another process: neither taken for the service
    nor stopped. The start time in the file tells them apart."""
    from numtaflow.services import running_pid, start_background, stop_background

    pid = start_background("sleeper", ["sleep", "60"], tmp_path)
    assert running_pid("sleeper", tmp_path) == pid
    recorded = (tmp_path / "sleeper.pid").read_text()
    (tmp_path / "sleeper.pid").write_text(f"{pid} 1")  # as if another process now had that pid
    assert running_pid("sleeper", tmp_path) is None and not stop_background("sleeper", tmp_path)
    assert os.path.exists(f"/proc/{pid}") and running_pid("sleeper", tmp_path) is None  # left running
    (tmp_path / "sleeper.pid").write_text(recorded)
    assert stop_background("sleeper", tmp_path) and running_pid("sleeper", tmp_path) is None
