"""The same jobs on a Spark standalone cluster (master + worker on 127.0.0.1), not local mode."""

from __future__ import annotations

import pytest

from tests.conftest import make_numtadb, run_job, upload_folder

pytestmark = pytest.mark.integration
RUN_ID = "manual__cluster"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from numtaflow.services import start_spark_cluster, stop_spark_cluster

    state = tmp_path_factory.mktemp("spark")
    master = start_spark_cluster(state, worker_cores=2, worker_memory="4g")
    yield master
    stop_spark_cluster(state)


def test_pipeline_runs_on_the_standalone_cluster(cluster, tmp_path, storage, s3_env, featurizer_env):
    from numtaflow.services import SPARK_WORKER_UI, master_status

    train = upload_folder(storage, make_numtadb(tmp_path / "training-a", 6), "datasets/cluster")
    evaluation = upload_folder(storage, make_numtadb(tmp_path / "training-c", 2, source="training-c"),
                               "datasets/cluster")
    env = {**featurizer_env, "NUMTAFLOW_SPARK_MASTER": cluster, "NUMTAFLOW_TRAIN_INPUT": train,
           "NUMTAFLOW_EVAL_INPUT": evaluation, "NUMTAFLOW_PER_CLASS": "5", "NUMTAFLOW_EVAL_PER_CLASS": "2",
           "NUMTAFLOW_MIN_ACCURACY": "0", "NUMTAFLOW_MIN_F1": "0"}
    for step in ("validate", "sample", "featurize", "train", "evaluate"):
        result = run_job(step, RUN_ID, env)
        assert result.returncode == 0, (step, (result.stdout + result.stderr)[-4000:])
    metrics = storage.get_json(f"runs/{RUN_ID}/evaluate/metrics.json")
    assert metrics["n_eval"] == 20

    # every job ran as an application of the master, with its executors on the worker
    finished = {app["name"]: app for app in master_status()["completedapps"]}
    ours = {step: finished.get(f"numtaflow-{step}-{RUN_ID}") for step in ("validate", "sample", "featurize", "train",
                                                                          "evaluate")}
    assert all(ours.values()), sorted(finished)
    assert {app["state"] for app in ours.values()} == {"FINISHED"}
    worker = master_status(SPARK_WORKER_UI)
    executor_apps = {executor["appid"] for executor in worker["finishedexecutors"] + worker["executors"]}
    assert {app["id"] for app in ours.values()} <= executor_apps
