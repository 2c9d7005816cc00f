"""
### NumtaDB batch scoring

New, unlabelled Bengali digit images classified by a registered model: **check** the batch (every
file decoded and prepared as scoring will; each refused file listed with its reason) → **score** it
with the model pinned when the run started → **report** (digit distribution and its drift against
the model's training data, low-confidence share, a review gallery of the least confident images).

Every task is a `SparkSubmitOperator` running `spark_jobs/<task id>.py`; tasks pass data only through
S3, under `predictions/<run id>/<task id>/`. Runs start from the trigger form (a folder, a zip or an
`s3://` prefix of images; a day's inbox folder scores its batches again), or by themselves when a batch
lands under the inbox prefix (`dt=YYYY-MM-DD/<batch>/` with `_BATCH.json` written last; each batch is
scored by exactly one run).
"""

from __future__ import annotations

from airflow.sdk import DAG, chain

from numtaflow.catalog import INBOX_ASSET, SCORING_DAG_ID, SCORING_STEPS
from numtaflow.config import ScoringSettings, Settings
from numtaflow.tasks import DEFAULT_ARGS, form_params, landing_asset, spark_step

SETTINGS = Settings.from_env()  # the platform this DAG processor sees: inbox prefix, Spark

STEP_DOCS = {
    "check_batch": "Pins the model (the champion, or the version or run chosen in the form) in `model.json`, then "
    "decodes and prepares every file exactly as scoring will. Refused files go to `rejected.csv` with their "
    "reason; the task fails only when nothing is scorable. A run started by a batch that an earlier run already "
    "took has nothing to do: its tasks are skipped.",
    "score_batch": "The pinned version's saved pipeline (featurizer + logistic regression) classifies every "
    "scorable image: `predictions.parquet` and `predictions.csv` (digit, each digit's probability, margin, "
    "model version).",
    "report_batch": "`report.json` and the report page: images scored and rejected, predicted digits against the "
    "training distribution (PSI and chi-square; flagged when both say it shifted), the low-confidence share "
    "against the model's own evaluation set, and thumbnails of the least confident images for review.",
}
assert tuple(STEP_DOCS) == SCORING_STEPS
TIMEOUTS = {"check_batch": 30, "score_batch": 90, "report_batch": 15}


def _schedule(settings: Settings):
    """Runs start by themselves when a committed batch lands in the inbox (none without an inbox)."""
    if not settings.inbox_input:
        return None
    return [landing_asset(INBOX_ASSET, settings.inbox_input, "numtadb_inbox_batches", settings.incoming_poll_seconds)]


with DAG(
    dag_id=SCORING_DAG_ID,
    description="Classify new unlabelled NumtaDB images with a registered model: check, score, report",
    doc_md=__doc__,
    schedule=_schedule(SETTINGS),
    catchup=False,
    max_active_runs=2,
    params=form_params(ScoringSettings),
    tags=["numtadb", "scoring", "spark", "tensorflow"],
    default_args=DEFAULT_ARGS,
) as dag:
    chain(*(spark_step(step, SETTINGS, STEP_DOCS[step], TIMEOUTS[step]) for step in SCORING_STEPS))
