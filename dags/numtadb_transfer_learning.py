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

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, chain

from numtaflow.catalog import CHAMPION_ASSET, DAG_ID, INCOMING_ASSET, STEPS, champion_uri
from numtaflow.config import RunSettings, Settings
from numtaflow.tasks import DEFAULT_ARGS, form_params, landing_asset, spark_step

SETTINGS = Settings.from_env()  # the platform this DAG processor sees: schedule, landing prefix, Spark

STEP_DOCS = {
    "validate": "Great Expectations suites over both inputs (files present, labels 0-9, images decode, "
    "CSV and files agree, enough images per class). Writes `report.json` / `report.html`; fails naming "
    "the expectations and example files.",
    "sample": "Exactly `per_class` images per class from the training input (seeded, reproducible) and "
    "an independent evaluation set of `eval_per_class` per class.",
    "featurize": "Pretrained CNN features (backbone, layers and image size from the settings) in batched "
    "Arrow UDFs, one model per Python worker, through the pipeline's own featurizer stage; features an earlier "
    "run computed for the same image bytes, featurizer and view are read back from the feature cache.",
    "train": "Exact per-class 80/20 split (seed 42) and Spark MLlib logistic regression on the 80%; saves the "
    "model and the pipeline (featurizer stage + logistic regression: image bytes in, digit out).",
    "canary": "Loads the saved pipeline from the bucket in its own process, as any user would, and scores a "
    "stratified canary of the evaluation images (`canary_per_class` per digit). A pipeline that cannot load or "
    "run is recorded; evaluate's gate refuses it.",
    "evaluate": "Accuracy, weighted F1/precision/recall, one-vs-rest ROC AUC, per-class report and "
    "confusion matrices on the 20% split and the independent set; the evidence, then the promotion gate "
    "(thresholds, no regression, and the canary's digits and probabilities equal to evaluate's), which copies a "
    "promoted model into the registry's immutable versions and moves the champion pointer.",
}
assert tuple(STEP_DOCS) == STEPS
TIMEOUTS = {"validate": 30, "sample": 20, "featurize": 90, "train": 30, "canary": 15, "evaluate": 20}
# updated whenever evaluate succeeds (promoted or not): consumers read models/champion.json for the version
CHAMPION = Asset(name=CHAMPION_ASSET, uri=champion_uri(SETTINGS.bucket))

# The trigger form, generated from the run settings' schema. It shows the schema's defaults; only the
# fields a user changes override the settings of the worker that runs the step (form > NUMTAFLOW_* > default).
PARAMS = form_params(RunSettings)


def _schedule(settings: Settings):
    """The retraining timetable, or-ed with the arrival of new batches when a landing prefix is set."""
    timetable = None
    if settings.schedule.lower() != "none":
        # a zero window, not run_immediately=False: Airflow reads False as "run the past slot if it is within
        # 10% of the interval" (a daily schedule unpaused before 02:24 UTC would run at once; apache/airflow#64162)
        timetable = CronTriggerTimetable(settings.schedule, timezone="UTC", run_immediately=timedelta(0))
    if not settings.incoming_input:
        return timetable
    new_batches = landing_asset(INCOMING_ASSET, settings.incoming_input, "numtadb_new_batches",
                                settings.incoming_poll_seconds)
    return [new_batches] if timetable is None else AssetOrTimeSchedule(timetable=timetable, assets=[new_batches])


with DAG(
    dag_id=DAG_ID,
    description="Validate, sample, featurize (Keras CNN), train (MLlib LR), evaluate and gate NumtaDB digits",
    doc_md=__doc__,
    schedule=_schedule(SETTINGS),
    # no start_date: with catchup off, unpausing the DAG waits for the schedule's next slot instead of
    # running the latest past one at once (the timetable's zero run_immediately window needs no start date)
    catchup=False,
    max_active_runs=2,
    params=PARAMS,
    tags=["numtadb", "transfer-learning", "spark", "tensorflow"],
    default_args=DEFAULT_ARGS,
) as dag:
    chain(*(spark_step(step, SETTINGS, STEP_DOCS[step], TIMEOUTS[step], [CHAMPION] if step == "evaluate" else [])
            for step in STEPS))
