"""
### NumtaDB transfer learning

Bengali handwritten digits: validate the input with Great Expectations, draw a stratified
sample, featurize it with a pretrained Keras CNN inside Spark, train a Spark MLlib logistic
regression, evaluate it and promote it only through the gate.

Every task is a `SparkSubmitOperator` running `spark_jobs/<task id>.py`; tasks pass data only
through S3, under `runs/<run id>/<task id>/`. Runs start from the trigger form, on the retraining
schedule, from `airflow backfill create`, or by themselves when a new batch of labelled images
lands under the incoming prefix (`dt=YYYY-MM-DD/<batch>/`); a run trains on the batches committed
by its data cut-off or dated on or before it, and a re-run on exactly the batches its first run
chose (`runs/<run id>/batches.json`). A rejected candidate ends the run green with
`gate.promoted = false` in `metrics.json`; bad input fails the run at `validate`.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, AssetWatcher, CronTriggerTimetable, Param

from numtaflow.catalog import CHAMPION_ASSET, DAG_ID, INCOMING_ASSET, STEPS, champion_uri
from numtaflow.config import Settings, form_fields
from numtaflow.spark import py_files, s3a_jar_paths, spark_conf

JOBS = Path(__file__).resolve().parents[1] / "spark_jobs"
SETTINGS = Settings.from_env()  # the platform this DAG processor sees: schedule, landing prefix, Spark
PY_FILES = ",".join(py_files(SETTINGS)) or None  # the package archive, rebuilt only when the code changes

STEP_DOCS = {
    "validate": "Great Expectations suites over both inputs (files present, labels 0-9, images decode, "
    "CSV and files agree, enough images per class). Writes `report.json` / `report.html`; fails naming "
    "the expectations and example files.",
    "sample": "Exactly `per_class` images per class from the training input (seeded, reproducible) and "
    "an independent evaluation set of `eval_per_class` per class.",
    "featurize": "Pretrained CNN features (backbone, layers and image size from the settings) in batched "
    "pandas UDFs; one model per Python worker.",
    "train": "Exact per-class 80/20 split (seed 42) and Spark MLlib logistic regression on the 80%.",
    "evaluate": "Accuracy, weighted F1/precision/recall, one-vs-rest ROC AUC, per-class report and "
    "confusion matrices on the 20% split and the independent set; the evidence, then the promotion gate, "
    "which copies a promoted model into the registry's immutable versions and moves the champion pointer.",
}
assert tuple(STEP_DOCS) == STEPS
TIMEOUTS = {"validate": 30, "sample": 20, "featurize": 90, "train": 30, "evaluate": 20}
# updated whenever evaluate succeeds (promoted or not): consumers read models/champion.json for the version
CHAMPION = Asset(name=CHAMPION_ASSET, uri=champion_uri(SETTINGS.bucket))

# The trigger form, generated from the run settings' schema. It shows the schema's defaults; only the
# fields a user changes override the settings of the worker that runs the step (form > NUMTAFLOW_* > default).
PARAMS = {name: Param(default, description=f"{description} Unchanged: the worker's NUMTAFLOW_{name.upper()} "
                      "if set, else this default.", **schema)
          for name, (default, description, schema) in form_fields().items()}


def _schedule(settings: Settings):
    """The retraining timetable, or-ed with the arrival of new batches when a landing prefix is set."""
    timetable = None
    if settings.schedule.lower() != "none":
        timetable = CronTriggerTimetable(settings.schedule, timezone="UTC")
    if not settings.incoming_input:
        return timetable
    from numtaflow.triggers import NewBatchTrigger

    new_batches = Asset(
        name=INCOMING_ASSET,
        uri=settings.incoming_input.rstrip("/") + "/",
        watchers=[AssetWatcher(name="numtadb_new_batches",
                               trigger=NewBatchTrigger(settings.incoming_input, settings.incoming_poll_seconds))],
    )
    return [new_batches] if timetable is None else AssetOrTimeSchedule(timetable=timetable, assets=[new_batches])


def _on_failure(context) -> None:
    """One clear line in the task log naming the run, the task and where its outputs are."""
    task_instance = context["task_instance"]
    print(
        f"numtaflow: task '{task_instance.task_id}' of run {context['run_id']} failed "
        f"(try {task_instance.try_number}); its outputs under runs/<run id>/{task_instance.task_id}/ "
        "are not committed and will be rewritten by a retry. Cause: see the lines above."
    )


with DAG(
    dag_id=DAG_ID,
    description="Validate, sample, featurize (Keras CNN), train (MLlib LR), evaluate and gate NumtaDB digits",
    doc_md=__doc__,
    schedule=_schedule(SETTINGS),
    # no start_date: with catchup off, unpausing the DAG waits for the schedule's next slot instead of
    # running the latest past one at once (the timetable's run_immediately=False needs no start date)
    catchup=False,
    max_active_runs=2,
    params=PARAMS,
    tags=["numtadb", "transfer-learning", "spark", "tensorflow"],
    default_args={
        "owner": "numtaflow",
        "retries": 2,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=5),
        "on_failure_callback": _on_failure,
    },
) as dag:
    previous = None
    for step in STEPS:
        task = SparkSubmitOperator(
            task_id=step,
            doc_md=STEP_DOCS[step],
            application=str(JOBS / f"{step}.py"),
            conn_id="spark_default",
            conf=spark_conf(SETTINGS),
            jars=",".join(s3a_jar_paths(SETTINGS)) or None,
            packages=SETTINGS.spark_packages or None,
            py_files=PY_FILES,
            name=f"numtaflow-{step}",
            application_args=[
                "--run-id", "{{ run_id }}",
                "--form-json", "{{ params | tojson }}",
                # runs triggered from the UI or API may have no logical date (Airflow 3)
                "--logical-date", "{{ dag_run.logical_date.isoformat() if dag_run.logical_date else '' }}",
                "--run-type", "{{ dag_run.run_type }}",
                "--data-until", "{{ (dag_run.logical_date or dag_run.run_after).isoformat() }}",
            ],
            execution_timeout=timedelta(minutes=TIMEOUTS[step]),
            outlets=[CHAMPION] if step == "evaluate" else [],
        )
        if previous is not None:
            previous >> task
        previous = task
