"""The DAG on a Spark standalone cluster (master + worker on 127.0.0.1), losing its worker mid-featurize.

One `airflow dags test` run: while featurize's tasks are in the executor's Python workers, the worker
is killed with its executor, and a new worker is started. The executors run a Python that has every
dependency of the jobs but not this package, as a worker image without the project's code would:
they can import numtaflow only from the archive that spark-submit ships with ``--py-files``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sysconfig
import threading
import time
import venv

import pytest

from numtaflow.catalog import FEATURES, METRICS, STEPS
from numtaflow.services import SparkPorts, migrated_airflow_home
from tests.conftest import TEST_PORT_OFFSET, commit, dags_test, layout, make_numtadb, run_for, upload_folder

pytestmark = pytest.mark.integration
LOGICAL_DATE = "2026-03-01T00:00:00+00:00"
WORKER_CORES, WORKER_MEMORY = 2, "4g"
PORTS = SparkPorts.offset(TEST_PORT_OFFSET)  # never the ports of a cluster started with `make cluster`


@pytest.fixture(scope="module")
def worker_python(tmp_path_factory):
    """A virtual environment that sees this one's site-packages as a plain path: its ``.pth`` files,
    the editable install of numtaflow among them, are not read."""
    home = tmp_path_factory.mktemp("worker-python")
    venv.create(home, with_pip=False)
    python = home / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (home / site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert subprocess.run([python, "-c", "import pyarrow, pyspark"]).returncode == 0
    assert subprocess.run([python, "-c", "import numtaflow"], capture_output=True).returncode != 0
    return str(python)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from numtaflow.services import start_spark_cluster, stop_spark_cluster

    state = tmp_path_factory.mktemp("spark")
    master = start_spark_cluster(state, WORKER_CORES, WORKER_MEMORY, PORTS)
    yield state, master
    stop_spark_cluster(state)


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory, cluster, worker_python, storage, s3_env, featurizer_env):
    inputs = tmp_path_factory.mktemp("cluster-inputs")
    train = upload_folder(storage, make_numtadb(inputs / "training-a", 6), "datasets/cluster")
    evaluation = upload_folder(storage, make_numtadb(inputs / "training-c", 2, source="training-c"),
                               "datasets/cluster")
    _, master = cluster
    return migrated_airflow_home(tmp_path_factory.mktemp("airflow"), {
        **os.environ, **s3_env, **featurizer_env,
        "AIRFLOW_CONN_SPARK_DEFAULT": f'{{"conn_type": "spark", "host": "{master}"}}',
        "NUMTAFLOW_SPARK_MASTER": master, "NUMTAFLOW_EXECUTOR_PYTHON": worker_python,
        "NUMTAFLOW_TRAIN_INPUT": train, "NUMTAFLOW_EVAL_INPUT": evaluation,
        "NUMTAFLOW_PER_CLASS": "5", "NUMTAFLOW_EVAL_PER_CLASS": "2",
        "NUMTAFLOW_MIN_ACCURACY": "0", "NUMTAFLOW_MIN_F1": "0",
        # every step and feature computed on the executors, whatever earlier tests left in the caches
        "NUMTAFLOW_FEATURE_CACHE": "false", "NUMTAFLOW_REUSE_STEPS": "false"})


def executor_udf_running(app_id: str) -> bool:
    """Whether an executor of ``app_id`` has started a Python worker (only the featurize UDF does).
    Processes come and go while this looks (zombies included): one that has gone counts as not there."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if "CoarseGrainedExecutorBackend" in command and app_id in command:
            try:
                return any("pyspark.daemon" in " ".join(child.cmdline()) for child in process.children(recursive=True))
            except psutil.Error:
                return False
    return False


def wait_until(check, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def lose_the_worker_mid_featurize(cluster, record: dict) -> None:
    """Kill the worker's process group (worker, executor, Python workers) once featurize's UDF runs,
    then start a replacement with the services' code; what was seen goes into ``record``."""
    from numtaflow.services import master_status, running_pid

    state, _ = cluster
    try:
        record["app_id"] = wait_until(lambda: next((a["id"] for a in master_status(PORTS.master_ui)["activeapps"]
                                                    if a["name"].startswith("numtaflow-featurize-")), None),
                                      600, "the featurize application")
        wait_until(lambda: executor_udf_running(record["app_id"]), 300, "featurize tasks in Python workers")
        record["lost_worker"] = master_status(PORTS.worker_ui)
        os.killpg(running_pid("spark-worker", state), signal.SIGKILL)
        record["killed_at"] = time.time()
    except BaseException as error:  # reported by the tests, not lost in this thread
        record["error"] = repr(error)
    finally:  # whatever happened above, the DAG run must not be left without a worker
        replace_the_worker(state, record)


def replace_the_worker(state, record: dict, attempts: int = 5) -> None:
    """Start a worker unless this state folder's still runs; a failed start is recorded and tried again."""
    from numtaflow.services import running_pid, start_spark_worker

    for attempt in range(attempts):
        try:
            wait_until(lambda: not running_pid("spark-worker", state) or "killed_at" not in record, 60,
                       "the killed worker to exit")
            start_spark_worker(state, WORKER_CORES, WORKER_MEMORY, PORTS)
            return
        except Exception as error:
            record.setdefault("replacement_errors", []).append(repr(error))
            time.sleep(5 * (attempt + 1))


@pytest.fixture(scope="module")
def dag_run(cluster, cluster_env, storage):
    record: dict = {}
    saboteur = threading.Thread(target=lose_the_worker_mid_featurize, args=(cluster, record), daemon=True)
    saboteur.start()
    process, log, command_lines = dags_test(cluster_env, LOGICAL_DATE)
    saboteur.join(timeout=60)
    assert process.returncode == 0, f"worker loss: {record}\n{log[-5000:]}{cluster_logs(cluster)}"
    assert "error" not in record and "replacement_errors" not in record and "killed_at" in record, record
    return run_for(storage, LOGICAL_DATE), command_lines, record


def cluster_logs(cluster, lines: int = 40) -> str:
    """The last lines of the master's and the workers' logs, for a failure message."""
    state, _ = cluster
    tails = [f"\n--- {log.name} ---\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
             for log in sorted(state.glob("spark-*.log"))]
    return "".join(tails)


def our_apps(run_id: str) -> dict[str, list[dict]]:
    """The master's finished applications of each task of ``run_id``."""
    from numtaflow.services import master_status

    finished = master_status(PORTS.master_ui)["completedapps"]
    return {step: [app for app in finished if app["name"] == f"numtaflow-{step}-{run_id}"] for step in STEPS}


def test_the_dag_runs_on_the_cluster_with_the_package_shipped(cluster, dag_run, storage):
    from numtaflow.services import master_status
    from numtaflow.spark import package_archive

    state, master = cluster
    run_id, command_lines, record = dag_run
    assert storage.get_json(layout(run_id).key(METRICS))["n_eval"] == 20
    submits = [line for line in command_lines if "org.apache.spark.deploy.SparkSubmit" in line and master in line]
    assert submits and all(f"--py-files {package_archive()}" in line for line in submits), submits

    # every task ran once, as an application of the master, with executors on a worker: the lost
    # worker before the loss, featurize on both, the replacement after it
    apps = our_apps(run_id)
    assert {step: [app["state"] for app in found] for step, found in apps.items()} == {
        step: ["FINISHED"] for step in STEPS}
    ids = {step: found[0]["id"] for step, found in apps.items()}
    lost = {e["appid"] for e in record["lost_worker"]["finishedexecutors"] + record["lost_worker"]["executors"]}
    replacement = {e["appid"] for e in master_status(PORTS.worker_ui)["finishedexecutors"]}
    assert {ids["validate"], ids["sample"], ids["featurize"]} <= lost
    assert {ids["featurize"], ids["train"], ids["evaluate"]} <= replacement
    # the archive was fetched into each executor's folder: the only numtaflow its Python could import
    archive = os.path.basename(package_archive())
    assert all(list((state / "work" / app_id).glob(f"*/{archive}")) for app_id in ids.values())


def test_a_worker_lost_mid_featurize_is_replaced_and_the_step_commits_once(dag_run, storage):
    from numtaflow.services import master_status

    run_id, _, record = dag_run
    workers = {w["id"]: w["state"] for w in master_status(PORTS.master_ui)["workers"]}
    assert workers[record["lost_worker"]["id"]] == "DEAD"
    assert record["app_id"] == our_apps(run_id)["featurize"][0]["id"]  # Spark re-ran the tasks, not Airflow

    # committed once, after the loss, and completely: every image and view exactly once
    run = layout(run_id)
    featurize = commit(storage, run_id, "featurize")
    assert featurize.finished_at >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record["killed_at"]))
    keys = [item["Key"] for item in storage.list_objects(run.prefix("featurize"))]
    assert not any("_temporary" in key for key in keys)
    for part, expected in (("train", 5 * 10 * 2), ("eval", 2 * 10)):  # train: each image and 1 distorted view
        frame = storage.get_folder_frame(run.key(FEATURES[part]), columns=["image_id", "view"])
        assert len(frame) == expected == getattr(featurize.summary, part).rows
        assert not frame.duplicated(["image_id", "view"]).any()
