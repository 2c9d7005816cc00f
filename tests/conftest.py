"""Shared fixtures: a local Spark session, a real SeaweedFS S3 server on test ports, small datasets.

Integration fixtures start real services; nothing here mocks S3, Spark or Airflow.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
SHARED_NUMTADB = ROOT.parent / "shared" / "numtadb"
SHARED_MODELS = ROOT.parent / "shared" / "models"
# S3 on 8433 etc. (weed adds 10000 for gRPC ports), never the demo's 8333; a second checkout can pick another
TEST_PORT_OFFSET = int(os.environ.get("NUMTAFLOW_TEST_PORT_OFFSET", "100"))
TEST_BUCKET = "numtaflow-test"
DAG_ID = "numtadb_transfer_learning"
DAG_RUN_TIMEOUT_S = 1200  # a cold run on the test data takes 3-5 min; past this it is hung


def digit_png(label: int, size: int = 28, mode: str = "L", seed: int = 0) -> bytes:
    """A synthetic handwritten-looking digit (used only when the real NumtaDB is absent)."""
    rng = random.Random(seed * 31 + label)
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    jitter = lambda: rng.randint(-2, 2)  # noqa: E731
    draw.text((size // 3 + jitter(), size // 4 + jitter()), str(label), fill=0)
    draw.arc((4 + jitter(), 4 + jitter(), size - 4, size - 4), 20 * label, 20 * label + 200, fill=0, width=2)
    out = io.BytesIO()
    image.convert(mode).save(out, format="PNG")
    return out.getvalue()


def make_numtadb(folder: Path, per_class: int, source: str = "training-a", offset: int = 0) -> Path:
    """A NumtaDB-layout folder + CSV with ``per_class`` images per digit (real images if available)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    real_csv = SHARED_NUMTADB / f"{source}.csv"
    if real_csv.exists():
        frame = pd.read_csv(real_csv)
        for digit in range(10):
            for name in frame[frame["digit"] == digit]["filename"].iloc[offset : offset + per_class]:
                shutil.copyfile(SHARED_NUMTADB / source / name, folder / name)
                rows.append((name, digit))
    else:
        for digit in range(10):
            for index in range(per_class):
                name = f"{source[-1]}{digit}{index + offset:04d}.png"
                (folder / name).write_bytes(digit_png(digit, seed=index + offset))
                rows.append((name, digit))
    csv = pd.DataFrame(rows, columns=["filename", "digit"])
    csv.insert(1, "original filename", "")
    csv.insert(2, "scanid", "")
    csv["database name"] = folder.name
    csv.to_csv(folder.parent / f"{folder.name}.csv", index=False)
    return folder


@pytest.fixture(scope="session")
def spark():
    import logging

    logging.getLogger("py4j").setLevel(logging.WARNING)  # its shutdown messages hit closed streams
    import pyspark.sql as pyspark_sql

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    session = (
        pyspark_sql.SparkSession.builder.master("local[1]")
        .appName("numtaflow-tests")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


class S3Server:
    """The test session's real SeaweedFS server; fault tests stop and restart it."""

    def __init__(self, state: Path):
        from numtaflow.services import S3Ports, ensure_credentials

        self.state = state
        self.ports = S3Ports.offset(TEST_PORT_OFFSET)
        self.credentials = ensure_credentials(state / "credentials.env")

    def start(self) -> None:
        from numtaflow.services import start_s3

        start_s3(self.state, self.credentials, self.ports)

    def stop(self) -> None:
        from numtaflow.services import stop_s3

        stop_s3(self.state)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_env(s3_server):
    """The environment (endpoint, bucket, generated keys) that the jobs and Airflow need."""
    from numtaflow.config import Settings
    from numtaflow.storage import Storage

    env = {
        **s3_server.credentials,
        "NUMTAFLOW_S3_ENDPOINT": f"http://127.0.0.1:{s3_server.ports.s3}",
        "NUMTAFLOW_BUCKET": TEST_BUCKET,
        "NUMTAFLOW_INCOMING_INPUT": f"s3://{TEST_BUCKET}/incoming",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    Storage(Settings.from_env()).ensure_bucket()
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def storage(s3_env):
    from numtaflow.config import Settings
    from numtaflow.storage import Storage

    return Storage(Settings.from_env())


@pytest.fixture(scope="session")
def featurizer_env():
    """Real MobileNetV2 weights at a small image size when available, else a random-init model."""
    views = {"NUMTAFLOW_TRAIN_VIEWS": "1", "NUMTAFLOW_TEST_VIEWS": "1"}
    if (SHARED_MODELS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5").exists():
        return {**views, "NUMTAFLOW_WEIGHTS_DIR": str(SHARED_MODELS), "NUMTAFLOW_IMAGE_SIZE": "96"}
    return {**views, "NUMTAFLOW_WEIGHTS": "random", "NUMTAFLOW_IMAGE_SIZE": "64"}


def upload_folder(storage, local: Path, prefix: str) -> str:
    """Copy a local NumtaDB folder and its CSV under ``prefix``; returns the folder's s3 URI."""
    for path in sorted(local.iterdir()):
        storage.put_bytes(f"{prefix}/{local.name}/{path.name}", path.read_bytes())
    csv = local.parent / f"{local.name}.csv"
    if csv.exists():
        storage.put_bytes(f"{prefix}/{local.name}.csv", csv.read_bytes())
    return f"s3://{storage.bucket}/{prefix}/{local.name}"


def run_job(step: str, run_id: str, env: dict, settings: dict | None = None, timeout: int = 600,
            data_until: str | None = None, retries_left: int = 0):
    """Run ``spark_jobs/<step>.py`` with spark-submit exactly as the CLI/DAG does."""
    command = [sys.executable, "-m", "numtaflow", "submit", step, "--run-id", run_id,
               "--settings-json", json.dumps(settings or {}), *(["--data-until", data_until] if data_until else []),
               "--retries-left", str(retries_left)]
    return subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


def command_lines_while(process, deadline: float) -> list[str]:
    """Every command line on the machine, sampled until ``process`` ends or ``deadline`` passes."""
    import psutil

    seen = set()
    while process.poll() is None and time.time() < deadline:
        for proc in psutil.process_iter(["cmdline"]):
            seen.add(" ".join(proc.info["cmdline"] or []))
        time.sleep(0.5)
    return sorted(seen)


def dags_test(env, logical_date, conf=None, timeout: float = DAG_RUN_TIMEOUT_S):
    """``airflow dags test`` of the workflow's DAG: (process, output, every command line seen meanwhile).

    A run still going after ``timeout`` seconds is killed with everything it started (its spark-submits
    too) and returned as failed, its output ending with that reason: a hang fails one test, not the suite."""
    command = ["airflow", "dags", "test", DAG_ID, logical_date]
    if conf:
        command += ["--conf", json.dumps(conf)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               cwd=ROOT, start_new_session=True)
    output = []
    reader = threading.Thread(target=lambda: output.append(process.stdout.read()))
    reader.start()
    try:
        command_lines = command_lines_while(process, time.time() + timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    reader.join(timeout=60)
    process.returncode = process.wait(timeout=60)
    if process.returncode == -signal.SIGKILL:
        output.append(f"\n[test] airflow dags test still running after {timeout:.0f} s: killed with its children\n")
    assert any("org.apache.spark.deploy.SparkSubmit" in line for line in command_lines), "no spark-submit seen"
    return process, "".join(output), command_lines


def layout(run_id: str):
    """Where a run's artifacts are in the test bucket (keys come from the catalog, never typed)."""
    from numtaflow.catalog import RunLayout
    from numtaflow.storage import safe_run_id

    return RunLayout(TEST_BUCKET, safe_run_id(run_id))


def commit(storage, run_id: str, step: str):
    """The typed commit record of a run's step."""
    from numtaflow.contracts import parse_commit

    return parse_commit(step, storage.require_step(layout(run_id), step))


def read_parquet(storage, run_id: str, artifact):
    """A run's Parquet artifact, read through boto3 (no Spark)."""
    return storage.get_folder_frame(layout(run_id).key(artifact))


def run_for(storage, logical_date):
    from numtaflow.cli import find_run

    return find_run(storage, None, logical_date)


def pytest_configure(config):
    """Airflow state of the test session lives in a temporary home, never the demo's."""
    import tempfile

    os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="numtaflow-airflow-")
