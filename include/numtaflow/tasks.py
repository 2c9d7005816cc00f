"""The Airflow task every step runs as, for both DAGs: a SparkSubmitOperator over ``spark_jobs/<step>.py``
(``SparkStep``, which reads the job's exit status).

One place for what each step's task passes to its job (the run id, the form's values, the logical
date, the run type, the data cut-off) and how it is submitted (the connection, the package archive,
the s3a jars, the Spark conf), so the training and the scoring DAG cannot drift apart.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Asset, AssetWatcher, Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
from pydantic import BaseModel

from .config import PROJECT_ROOT, RunSettings, Settings, env_name, form_fields
from .contracts import JobExit
from .spark import py_files, shipped_jars, spark_conf

JOBS = PROJECT_ROOT / "spark_jobs"


def failure_line(context, then: str) -> None:
    """One clear line in the task log naming the run, the task, where its outputs are and what comes next."""
    task_instance = context["task_instance"]
    print(
        f"numtaflow: task '{task_instance.task_id}' of run {context['run_id']} failed "
        f"(try {task_instance.try_number}); its outputs under the run's {task_instance.task_id}/ prefix "
        f"are not committed, {then}. Cause: see the lines above."
    )


def on_retry(context) -> None:
    failure_line(context, "and the retry that follows rewrites them")


def on_failure(context) -> None:
    """Airflow calls this once no retry is left, or at once for a refused input (``SparkStep``)."""
    refused = isinstance(context.get("exception"), AirflowFailException)
    why = ("it is not retried: the step refused its input or settings, as any retry would" if refused
           else "no retry is left")
    failure_line(context, f"and {why}; clearing the task after fixing the cause rewrites them")


DEFAULT_ARGS = {
    "owner": "numtaflow",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=5),
    "on_retry_callback": on_retry,
    "on_failure_callback": on_failure,
}


def form_params(schema_model: type[BaseModel]) -> dict[str, Param]:
    """A DAG's trigger form, generated from a settings schema: typed ``Param``s in sections. It shows the
    schema's defaults; for run settings, an untouched field leaves the worker's environment in force."""
    fallback = schema_model is RunSettings
    return {name: Param(default, description=description + (
                f" Unchanged: the worker's {env_name(name)} if set, else this default." if fallback else ""),
                        **schema)
            for name, (default, description, schema) in form_fields(schema_model).items()}


class SparkStep(SparkSubmitOperator):
    """spark-submit of a step's job, whose exit status (``JobExit``) says what Airflow does next: a refused
    input fails the task without the retries (they would refuse it again, minutes later), and a run
    with nothing left to do skips this task and the tasks after it."""

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowException as error:
            # the provider's hook keeps the spark-submit process; in client mode its status is the job's
            status = getattr(getattr(getattr(self, "_hook", None), "_submit_sp", None), "returncode", None)
            if status == JobExit.REFUSED:
                raise AirflowFailException(f"step '{self.task_id}' refused its input or settings (the reason "
                                           "is in the job's output above): not retried") from error
            if status == JobExit.NOTHING_TO_DO:
                raise AirflowSkipException(f"step '{self.task_id}' has nothing to do (the reason is in the "
                                           "job's output above)") from error
            raise


def spark_step(step: str, settings: Settings, doc: str, timeout_minutes: int,
               outlets: list | None = None) -> SparkStep:
    """The task of ``step``: its job, submitted with this platform's Spark settings and package."""
    return SparkStep(
        task_id=step,
        doc_md=doc,
        application=str(JOBS / f"{step}.py"),
        conn_id="spark_default",
        conf=spark_conf(settings),
        jars=",".join(shipped_jars(settings)) or None,
        packages=settings.spark_packages or None,
        py_files=",".join(py_files(settings)) or None,  # the package archive, rebuilt only when the code changes
        name=f"numtaflow-{step}",
        application_args=[
            "--run-id", "{{ run_id }}",
            "--form-json", "{{ params | tojson }}",
            # runs triggered from the UI or API may have no logical date (Airflow 3)
            "--logical-date", "{{ dag_run.logical_date.isoformat() if dag_run.logical_date else '' }}",
            "--run-type", "{{ dag_run.run_type }}",
            "--data-until", "{{ (dag_run.logical_date or dag_run.run_after).isoformat() }}",
            "--retries-left", "{{ ti.max_tries - ti.try_number + 1 }}",  # Airflow retries while try_number <= max_tries
        ],
        execution_timeout=timedelta(minutes=timeout_minutes),
        outlets=outlets or [],
    )


def landing_asset(name: str, prefix: str, watcher: str, poll_seconds: float) -> Asset:
    """The Asset of a landing prefix, watched by the triggerer: a DAG scheduled on it starts a run when a
    committed batch lands there (``triggers.NewBatchTrigger``)."""
    from .triggers import NewBatchTrigger  # only DAGs with a landing prefix pay for the trigger's imports

    return Asset(name=name, uri=prefix.rstrip("/") + "/",
                 watchers=[AssetWatcher(name=watcher, trigger=NewBatchTrigger(prefix, poll_seconds))])
