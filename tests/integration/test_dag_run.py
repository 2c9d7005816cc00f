"""The whole DAG under `airflow dags test`, on a small real input, against the real S3 server."""

from __future__ import annotations

import os

import pytest

from numtaflow.catalog import CHAMPION_KEY, LINEAGE, METRICS, STEPS, TRAIN_PARAMS
from numtaflow.services import migrated_airflow_home
from tests.conftest import commit, dags_test, layout, make_numtadb, run_for, upload_folder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory, storage, s3_env, featurizer_env):
    home = tmp_path_factory.mktemp("airflow")
    inputs = tmp_path_factory.mktemp("dag-inputs")
    train = upload_folder(storage, make_numtadb(inputs / "training-a", 8), "datasets/dag")
    evaluation = upload_folder(storage, make_numtadb(inputs / "training-c", 3, source="training-c"), "datasets/dag")
    return migrated_airflow_home(home, {**os.environ, **s3_env, **featurizer_env,
                                        "NUMTAFLOW_TRAIN_INPUT": train, "NUMTAFLOW_EVAL_INPUT": evaluation,
                                        "NUMTAFLOW_PER_CLASS": "6", "NUMTAFLOW_EVAL_PER_CLASS": "3",
                                        "NUMTAFLOW_MIN_ACCURACY": "0.2", "NUMTAFLOW_MIN_F1": "0.2",
                                        "NUMTAFLOW_MAX_REGRESSION": "1"})


def test_full_dag_run_then_a_rejected_candidate(airflow_env, storage):
    first, log, command_lines = dags_test(airflow_env, "2026-02-01T00:00:00+00:00")
    assert first.returncode == 0, log[-5000:]
    assert "state=success" in log
    run_id = run_for(storage, "2026-02-01T00:00:00+00:00")
    metrics = storage.get_json(layout(run_id).key(METRICS))
    assert metrics["gate"]["promoted"] is True
    assert storage.get_json(CHAMPION_KEY)["run_id"] == run_id
    record = storage.get_json(layout(run_id).key(LINEAGE))
    assert set(record["steps"]) == {"validate", "sample", "featurize", "train", "canary"}  # those before evaluate
    for secret in (airflow_env["AWS_SECRET_ACCESS_KEY"], airflow_env["AWS_ACCESS_KEY_ID"]):
        assert secret not in log  # task logs, spark-submit's "cmd" line included
        assert not any(secret in line for line in command_lines)  # ps / /proc/<pid>/cmdline

    # a second run that cannot pass the gate ends green, says why, and leaves the champion alone
    second, log, _ = dags_test(airflow_env, "2026-02-02T00:00:00+00:00", {"min_accuracy": 1.0, "lr_preset": "study"})
    assert second.returncode == 0, log[-5000:]
    rejected = run_for(storage, "2026-02-02T00:00:00+00:00")
    second_metrics = storage.get_json(layout(rejected).key(METRICS))
    assert second_metrics["accuracy"] < 1.0  # so the gate's minimum of 1.0 must reject it
    gate = second_metrics["gate"]
    assert gate["promoted"] is False and gate["champion_after"] == run_id
    assert any("below the minimum 1.0000" in reason for reason in gate["reasons"])
    assert storage.get_json(CHAMPION_KEY)["run_id"] == run_id
    # only training and gate settings changed: the steps before train took the first run's output
    assert {step: commit(storage, rejected, step).reused_from for step in STEPS} == {
        **dict.fromkeys(("validate", "sample", "featurize"), run_id), "train": None, "canary": None, "evaluate": None}
    assert "reused the committed output of run" in log
    assert storage.get_json(layout(rejected).key(TRAIN_PARAMS))["params"]["preset"] == "study"  # the conf reached train


def test_airflow_commands_wait_for_a_busy_metadata_database(airflow_env):
    """The embedded SQLite is shared by the scheduler, API server and CLI: a command that meets a lock
    held for 20 s waits for it (Python's default gives up after 5 s: 'database is locked')."""
    import sqlite3
    import subprocess
    import threading
    import time
    from pathlib import Path

    database = sqlite3.connect(Path(airflow_env["AIRFLOW_HOME"]) / "airflow.db", isolation_level=None,
                               check_same_thread=False)
    database.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(20, database.execute, ["COMMIT"])
    release.start()
    started = time.monotonic()
    try:
        command = subprocess.run(["airflow", "variables", "set", "lock_probe", "waited"], env=airflow_env,
                                 capture_output=True, text=True, timeout=120)
    finally:
        waited = time.monotonic() - started
        release.join()
        database.close()
    assert command.returncode == 0, command.stderr[-2000:]
    assert waited >= 15, f"the command finished after {waited:.1f} s: it never met the 20 s lock"
    read = subprocess.run(["airflow", "variables", "get", "lock_probe"], env=airflow_env, capture_output=True,
                          text=True, timeout=120)
    assert read.stdout.strip() == "waited"


def test_generated_keys_reach_no_tracked_file_nor_a_report(airflow_env, storage, tmp_path):
    """The keys are generated per install into the git-ignored state folder; nothing the project writes
    into the work tree (a run's report copied by ``numtaflow report``) or tracks in git holds them."""
    import subprocess
    from pathlib import Path

    from numtaflow.registry import read_index

    run_id = max(read_index(storage), key=lambda r: r.get("finished_at") or "")["run_id"]
    report = subprocess.run(["python", "-m", "numtaflow", "report", "--run-id", run_id, "--reports", str(tmp_path)],
                            env=airflow_env, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr[-2000:]
    steps = next(line for line in report.stdout.splitlines() if line.startswith("steps (s):"))
    assert [part.split()[0] for part in steps.removeprefix("steps (s):").split(", ")] == list(STEPS), steps
    root = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True).stdout.split("\0")
    files = [root / name for name in tracked if name and (root / name).is_file()]
    files += [path for path in tmp_path.rglob("*") if path.is_file()]
    assert len(files) > 50 and any(path.name == "metrics.json" for path in files)
    for secret in (airflow_env["AWS_SECRET_ACCESS_KEY"], airflow_env["AWS_ACCESS_KEY_ID"]):
        assert secret not in report.stdout
        assert not [str(path) for path in files if secret.encode() in path.read_bytes()]
    ignored = subprocess.run(["git", "check-ignore", "-q", ".local/credentials.env"], cwd=root)
    assert ignored.returncode == 0, "the state folder holding the keys is not git-ignored"


@pytest.mark.parametrize("status, outcome", [(0, None), (1, "AirflowException"), (3, "AirflowFailException"),
                                             (4, "AirflowSkipException")])
def test_a_jobs_exit_status_decides_retry_failure_or_skip(status, outcome, tmp_path):
    """spark-submit passes the job's exit status through (``contracts.JobExit``): 1 leaves the task to
    its retries, 3 (refused input) fails it at once, 4 (nothing to do) skips it and the tasks after it."""
    from numtaflow.contracts import JobExit
    from numtaflow.tasks import SparkStep

    assert {JobExit.FAILED, JobExit.REFUSED, JobExit.NOTHING_TO_DO} == {1, 3, 4}
    job = tmp_path / "job.py"
    job.write_text(f"import sys\nprint('the reason')\nsys.exit({status})\n")
    task = SparkStep(task_id="probe", application=str(job), conn_id="spark_default")
    if outcome is None:
        task.execute({})
        return
    with pytest.raises(Exception) as raised:
        task.execute({})
    assert type(raised.value).__name__ == outcome
