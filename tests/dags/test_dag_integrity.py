"""The DAG folder imports cleanly, cheaply, and every task is a documented, retried Spark job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "numtadb_transfer_learning"
STEPS = ["validate", "sample", "featurize", "train", "evaluate"]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert DAG_ID in dagbag.dags


def test_tasks_are_spark_jobs_in_order_with_docs_and_retries(dagbag):
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    from numtaflow.spark import package_archive

    dag = dagbag.dags[DAG_ID]
    assert dag.tags and dag.doc_md
    assert [t.task_id for t in dag.topological_sort()] == STEPS
    for task in dag.tasks:
        assert isinstance(task, SparkSubmitOperator)
        assert Path(task.application) == ROOT / "spark_jobs" / f"{task.task_id}.py"
        assert Path(task.application).is_file()
        assert task.retries >= 1 and task.retry_exponential_backoff
        assert task.execution_timeout is not None
        assert task.doc_md
        assert task.py_files == package_archive()  # executors import the shipped package
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


def test_params_are_the_run_settings_form(dagbag):
    from numtaflow.config import RunSettings, form_fields

    params = dagbag.dags[DAG_ID].params
    assert list(params.keys()) == list(form_fields())
    for name in params.keys():  # defaults are the schema's, never the DAG processor's environment
        assert params[name] == RunSettings.model_fields[name].default, name


def test_dag_file_does_not_import_heavy_libraries():
    probe = (
        "import runpy, sys, json; runpy.run_path(sys.argv[1]); "
        "print(json.dumps([m for m in ('pyspark', 'tensorflow', 'great_expectations', 'keras') if m in sys.modules]))"
    )
    result = subprocess.run([sys.executable, "-c", probe, str(ROOT / "dags" / f"{DAG_ID}.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_unpausing_waits_for_the_next_slot_of_the_schedule(dagbag):
    """No start date and catchup off: the first time-based run is the schedule's next slot, never a run
    of the latest past slot the moment the DAG is unpaused (a full run nobody asked for)."""
    import datetime

    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.timetables.base import TimeRestriction

    dag = DagSerialization.from_dict(DagSerialization.to_dict(dagbag.dags[DAG_ID]))
    assert dag.start_date is None and not dag.catchup
    first = dag.timetable.next_dagrun_info(last_automated_data_interval=None,
                                           restriction=TimeRestriction(earliest=None, latest=None, catchup=False))
    assert first.run_after > datetime.datetime.now(datetime.timezone.utc)


def test_the_failure_callback_names_the_task_the_run_and_the_retry(capsys):
    import runpy

    on_failure = runpy.run_path(str(ROOT / "dags" / f"{DAG_ID}.py"))["_on_failure"]

    class TaskInstance:
        task_id, try_number = "featurize", 2

    on_failure({"task_instance": TaskInstance(), "run_id": "manual__2026-01-01"})
    line = capsys.readouterr().out
    assert "task 'featurize' of run manual__2026-01-01 failed (try 2)" in line and "not committed" in line
