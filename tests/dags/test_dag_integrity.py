"""The DAG folder imports cleanly, cheaply, and every task is a documented, retried Spark job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "numtadb_transfer_learning"
SCORING_DAG_ID = "numtadb_batch_predict"
TASKS = {DAG_ID: ["validate", "sample", "featurize", "train", "canary", "evaluate"],
         SCORING_DAG_ID: ["check_batch", "score_batch", "report_batch"]}


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == set(TASKS)


@pytest.mark.parametrize("dag_id", TASKS)
def test_tasks_are_spark_jobs_in_order_with_docs_and_retries(dagbag, dag_id):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from numtaflow.config import Settings
    from numtaflow.spark import driver_class_path, package_archive, shipped_jars
    from numtaflow.tasks import SparkStep

    settings = Settings.from_env()
    dag = dagbag.dags[dag_id]
    assert dag.tags and dag.doc_md
    assert [t.task_id for t in dag.topological_sort()] == TASKS[dag_id]
    for task in dag.tasks:
        assert isinstance(task, SparkStep) and isinstance(task, SparkSubmitOperator)
        assert Path(task.application) == ROOT / "spark_jobs" / f"{task.task_id}.py"
        assert Path(task.application).is_file()
        assert task.retries >= 1 and task.retry_exponential_backoff
        assert task.on_retry_callback and task.on_failure_callback
        assert task.execution_timeout is not None
        assert task.doc_md
        assert task.py_files == package_archive()  # executors import the shipped package
        # the s3a jars: on the driver's class path always, shipped to executors only off local mode
        assert task.conf["spark.driver.extraClassPath"] == driver_class_path(settings)
        assert task.jars == (",".join(shipped_jars(settings)) or None)
        assert not any("secret" in k.lower() or "access.key" in k.lower() for k in (task.conf or {}))


def test_params_are_typed_and_validated(dagbag):
    params = dagbag.dags[DAG_ID].params
    for name in ("train_input", "eval_input", "per_class", "seed", "backbone", "lr_preset", "min_accuracy"):
        param = params.get_param(name)
        assert param.schema["type"] and param.schema["title"] and param.schema["section"] and param.description, name
    assert "MobileNetV2" in params.get_param("backbone").schema["enum"]
    params.validate()
    from airflow.sdk.definitions.param import ParamValidationError

    with pytest.raises(ParamValidationError):
        params.get_param("per_class").resolve(1)
    with pytest.raises(ParamValidationError):
        params.get_param("backbone").resolve("AlexNet")


@pytest.mark.parametrize("dag_id, schema", [(DAG_ID, "RunSettings"), (SCORING_DAG_ID, "ScoringSettings")])
def test_params_are_the_settings_form(dagbag, dag_id, schema):
    from numtaflow import config

    model = getattr(config, schema)
    params = dagbag.dags[dag_id].params
    assert list(params.keys()) == list(config.form_fields(model))
    for name in params.keys():  # defaults are the schema's, never the DAG processor's environment
        assert params[name] == model.model_fields[name].default, name
        assert params.get_param(name).schema["section"] and params.get_param(name).schema["title"], name


def test_scoring_params_are_validated(dagbag):
    from airflow.sdk.definitions.param import ParamValidationError

    params = dagbag.dags[SCORING_DAG_ID].params
    params.validate()
    with pytest.raises(ParamValidationError):
        params.get_param("confidence_threshold").resolve(1.5)
    with pytest.raises(ParamValidationError):
        params.get_param("model").resolve("")


@pytest.mark.parametrize("dag_id", TASKS)
def test_dag_file_does_not_import_heavy_libraries(dag_id):
    probe = (
        "import runpy, sys, json; runpy.run_path(sys.argv[1]); "
        "print(json.dumps([m for m in ('pyspark', 'tensorflow', 'great_expectations', 'keras') if m in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", probe, str(ROOT / "dags" / f"{dag_id}.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("minutes_after_a_slot", [1, 120])
def test_unpausing_waits_for_the_next_slot_of_the_schedule(dagbag, monkeypatch, minutes_after_a_slot):
    """No start date and catchup off: the first time-based run is the schedule's next slot, never a run
    of the latest past slot the moment the DAG is unpaused (a full run nobody asked for), even just after
    a slot, where Airflow's own run_immediately=False would still run it."""
    import datetime

    import airflow.timetables.trigger
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    dag = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags[DAG_ID]))
    assert dag.start_date is None and not dag.catchup
    no_runs_yet = {"last_automated_data_interval": None,
                   "restriction": TimeRestriction(earliest=None, latest=None, catchup=False)}
    slot = dag.timetable.next_dagrun_info(**no_runs_yet).run_after
    now = slot + datetime.timedelta(minutes=minutes_after_a_slot)
    monkeypatch.setattr(airflow.timetables.trigger, "utcnow", lambda: now)
    assert dag.timetable.next_dagrun_info(**no_runs_yet).run_after > now


def test_the_failure_callbacks_name_the_task_the_run_and_what_comes_next(capsys):
    from airflow.sdk.exceptions import AirflowFailException

    from numtaflow.tasks import on_failure, on_retry

    class TaskInstance:
        task_id, try_number = "featurize", 2

    on_retry({"task_instance": TaskInstance(), "run_id": "manual__2026-01-01"})
    line = capsys.readouterr().out
    assert "task 'featurize' of run manual__2026-01-01 failed (try 2)" in line and "not committed" in line
    assert "the retry that follows rewrites them" in line
    on_failure({"task_instance": TaskInstance(), "run_id": "manual__2026-01-01"})
    assert "no retry is left" in capsys.readouterr().out
    on_failure({"task_instance": TaskInstance(), "run_id": "manual__2026-01-01",
                "exception": AirflowFailException("step 'featurize' refused its input")})
    line = capsys.readouterr().out
    assert "it is not retried: the step refused its input" in line and "clearing the task" in line


@pytest.mark.parametrize("dag_id, asset, prefix_setting", [(DAG_ID, "numtadb_incoming", "incoming_input"),
                                                           (SCORING_DAG_ID, "numtadb_inbox", "inbox_input")])
def test_each_dag_also_runs_when_a_batch_lands_under_its_prefix(dagbag, dag_id, asset, prefix_setting):
    """The landing prefixes (set by default) are watched by the triggerer: a committed batch starts a run."""
    from numtaflow.config import Settings
    from numtaflow.triggers import NewBatchTrigger

    prefix = getattr(Settings.from_env(), prefix_setting)
    (landing,) = dagbag.dags[dag_id].timetable.asset_condition.objects
    assert landing.name == asset and landing.uri.rstrip("/") == prefix.rstrip("/")
    (watcher,) = landing.watchers
    assert isinstance(watcher.trigger, NewBatchTrigger) and watcher.trigger.incoming_uri == prefix
