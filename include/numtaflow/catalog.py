"""The catalog: every object the workflow writes to the bucket, declared once.

Steps, the CLI, the web app, the DAGs and the tests name artifacts through this module and never
type a key. A training run's artifacts live under ``runs/<run id>/<step>/<name>``, a scoring run's
under ``predictions/<run id>/<step>/<name>``; each step commits them with ``_COMMITTED.json`` last,
and readers trust nothing under a step's prefix without it. The model registry lives under
``models/``; versions there are immutable.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

DAG_ID = "numtadb_transfer_learning"
RUNS_PREFIX = "runs/"
STEPS = ("validate", "sample", "featurize", "train", "canary", "evaluate")
COMMIT_MARKER = "_COMMITTED.json"

PARQUET = "application/vnd.apache.parquet"
JSON = "application/json"
HTML = "text/html; charset=utf-8"
PNG = "image/png"
CSV = "text/csv"
SPARK_MODEL = "application/x-spark-ml-model"  # a folder written by MLlib's save()


@dataclass(frozen=True)
class Artifact:
    """One output of a run: which step writes it, its name under that step's prefix, its format."""

    step: str  # the step that writes it; "" for the run's lineage record beside the steps
    name: str
    media_type: str
    description: str
    served_as: str | None = None  # its name on the run's page in the Models UI, when served there
    in_report: bool = False  # copied to reports/<run>/ by ``numtaflow report``
    # working data only the later steps of the same run read: ``numtaflow models prune`` deletes it from
    # finished runs, which keep their evidence (``retention.py``)
    intermediate: bool = False

    @property
    def is_folder(self) -> bool:
        """Parquet datasets and saved models are folders of part files."""
        return self.media_type in (PARQUET, SPARK_MODEL)


# --- validate ------------------------------------------------------------------------------
VALIDATION_REPORT = Artifact("validate", "report.json", JSON, "Great Expectations results per input", in_report=True)
VALIDATION_HTML = Artifact("validate", "report.html", HTML, "the validation report for people",
                           served_as="validation.html", in_report=True)
VALIDATED_IMAGES = {
    name: Artifact("validate", f"{name}_images.parquet", PARQUET,
                   f"the {name} input's images that passed validation, with their bytes", intermediate=True)
    for name in ("train", "eval")
}
# --- sample --------------------------------------------------------------------------------
SAMPLED_IMAGES = {
    "train": Artifact("sample", "train.parquet", PARQUET, "per_class images per digit from the training input",
                      intermediate=True),
    "eval": Artifact("sample", "eval.parquet", PARQUET, "eval_per_class independent images per digit",
                     intermediate=True),
}
# --- featurize -----------------------------------------------------------------------------
FEATURES = {
    "train": Artifact("featurize", "train.parquet", PARQUET, "features of the sample and its distorted copies",
                      intermediate=True),
    "eval": Artifact("featurize", "eval.parquet", PARQUET, "features of the evaluation images (test views averaged)",
                     intermediate=True),
}
FEATURIZER = Artifact("featurize", "featurizer", SPARK_MODEL,
                      "the featurizer stage that computed the evaluation features: the pipeline's first stage")
# --- train ---------------------------------------------------------------------------------
MODEL = Artifact("train", "model", SPARK_MODEL, "the fitted MLlib logistic regression")
PIPELINE = Artifact("train", "pipeline", SPARK_MODEL,
                    "image bytes to digit: the featurizer stage, the logistic regression, the digit (ml.py)")
HOLDOUT = Artifact("train", "holdout.parquet", PARQUET, "features of the 20% split held out from training",
                   intermediate=True)
TRAIN_PARAMS = Artifact("train", "params.json", JSON, "LR parameters, cross-validation table, row counts",
                        in_report=True)
# --- canary --------------------------------------------------------------------------------
CANARY = Artifact("canary", "canary.json", JSON, "the saved pipeline's digits and probabilities on a stratified "
                  "canary of the evaluation images, scored in its own process (or why it could not be)",
                  in_report=True)
# --- evaluate ------------------------------------------------------------------------------
EVAL_PREDICTIONS = Artifact("evaluate", "predictions.parquet", PARQUET,
                            "per evaluation image: id, label, predicted digit, probability of each digit")
MISCLASSIFIED = Artifact("evaluate", "misclassified.png", PNG, "real evaluation images of the most confused "
                         "digit pairs", served_as="misclassified.png", in_report=True)
METRICS = Artifact("evaluate", "metrics.json", JSON, "metrics on both sets, the gate decision, step timings",
                   served_as="metrics.json", in_report=True)
GATE = Artifact("evaluate", "gate.json", JSON, "the gate's decision and reasons", in_report=True)
TRAINED_ON = Artifact("evaluate", "trained_on.json", JSON, "the sha256 of every image in the training sample: "
                      "registered with the model, so that no later candidate's gate judges it on images it saw")
CONFUSION = {
    "eval": Artifact("evaluate", "confusion_eval.png", PNG, "confusion matrix on the independent set",
                     served_as="confusion_eval.png", in_report=True),
    "split": Artifact("evaluate", "confusion_split.png", PNG, "confusion matrix on the 20% split",
                      served_as="confusion_split.png", in_report=True),
}
PER_CLASS = {
    "eval": Artifact("evaluate", "per_class_eval.csv", CSV, "per-digit metrics on the independent set",
                     in_report=True),
    "split": Artifact("evaluate", "per_class_split.csv", CSV, "per-digit metrics on the 20% split", in_report=True),
}
# --- the run as a whole --------------------------------------------------------------------
LINEAGE = Artifact("", "run.json", JSON, "lineage: inputs, sample, settings, versions, step times, artifacts",
                   served_as="run.json", in_report=True)
BATCH_SELECTION = Artifact("", "batches.json", JSON, "the landed batches the run trains on and those it refused: "
                           "written once by its first validate, read back by retries and re-runs", in_report=True)
# in both areas: the Airflow run id that owns the prefix, claimed by the run's first step, since
# ``safe_run_id`` maps ids such as ``exp:1`` and ``exp_1`` to one prefix and the second must not overwrite the first
RUN_OWNER = Artifact("", "run_id.json", JSON, "the Airflow run id whose artifacts the prefix holds")

ARTIFACTS: tuple[Artifact, ...] = (
    VALIDATION_REPORT, VALIDATION_HTML, *VALIDATED_IMAGES.values(), *SAMPLED_IMAGES.values(), *FEATURES.values(),
    FEATURIZER, MODEL, PIPELINE, HOLDOUT, TRAIN_PARAMS, CANARY, EVAL_PREDICTIONS, MISCLASSIFIED, METRICS, GATE,
    TRAINED_ON, *CONFUSION.values(), *PER_CLASS.values(), LINEAGE, BATCH_SELECTION,
)
SERVED = {artifact.served_as: artifact for artifact in ARTIFACTS if artifact.served_as}
REPORTED = tuple(artifact for artifact in ARTIFACTS if artifact.in_report)

# --- the model registry (see registry.py) --------------------------------------------------
REGISTRY_PREFIX = "models/"
CHAMPION_KEY = f"{REGISTRY_PREFIX}champion.json"
HISTORY_PREFIX = f"{REGISTRY_PREFIX}history/"
INDEX_KEY = f"{REGISTRY_PREFIX}index.json"
VERSIONS_PREFIX = f"{REGISTRY_PREFIX}versions/"
# beside each version's model/ and pipeline/: its record (written last) and its model card
VERSION_RECORD = "version.json"
MODEL_CARD_FACTS = "model_card.json"
MODEL_CARD_TEXT = "model_card.md"
MODEL_CARD_EXAMPLES = "misclassified.png"  # the run's misclassified.png, copied
VERSION_FILES = {MODEL_CARD_TEXT: "text/markdown; charset=utf-8", MODEL_CARD_EXAMPLES: PNG}  # served by the web app
CHAMPION_ASSET = "numtadb_champion"  # the Airflow Asset a promotion updates; other DAGs can schedule on it
# --- caches -----------------------------------------------------------------------------------
FEATURE_CACHE_PREFIX = "cache/features/"  # <featurizer>/<cache_part>/: see feature_cache.py
INSPECTION_CACHE_PREFIX = "cache/inspections/"  # <inspection>/<cache_part>/: see inspection_cache.py
STEP_CACHE_PREFIX = "cache/steps/"  # <step>/<fingerprint>.json: the run that committed it (jobs.py)


def cache_part(run_id: str, name: str) -> str:
    """A new part's folder in a cache, ``<run>-<pass or input>-<attempt>``: every attempt writes its own,
    so a committed part is never rewritten (not under a scan reading it, nor losing its entries when a
    re-run of its run computes fewer)."""
    return f"{run_id}-{name}-{uuid.uuid4().hex[:8]}"


def step_record_key(step: str, fingerprint: str) -> str:
    """Where the run holding a committed output of ``step`` with ``fingerprint`` is named."""
    return f"{STEP_CACHE_PREFIX}{step}/{fingerprint}.json"


# --- inputs and scratch space --------------------------------------------------------------
DATASETS_PREFIX = "datasets/numtadb"  # where ``numtaflow load-data`` puts NumtaDB folders
STAGING_PREFIX = "staging/"  # zips unpacked for Spark
INCOMING_ASSET = "numtadb_incoming"  # the Airflow Asset of the landing prefix
# names under the landing prefix (``incoming_input``), beside its ``dt=YYYY-MM-DD/<batch>/`` folders
BATCH_MARKER = "_BATCH.json"  # in a batch's folder, written last: the batch is committed
ANNOUNCED = "_ANNOUNCED.json"  # the batches that started a run (the watcher's ledger, compare-and-set)


# --- scoring: the numtadb_batch_predict DAG -----------------------------------------------------
SCORING_DAG_ID = "numtadb_batch_predict"
SCORING_STEPS = ("check_batch", "score_batch", "report_batch")
PREDICTIONS_PREFIX = "predictions/"  # predictions/<scoring run id>/<step>/<name>
SCORING_INDEX_KEY = f"{PREDICTIONS_PREFIX}index.json"  # one line per scoring run, for the Models pages
SCORED_BATCHES_KEY = f"{PREDICTIONS_PREFIX}_SCORED.json"  # inbox batch -> the scoring run that claimed it
INBOX_ASSET = "numtadb_inbox"  # the Airflow Asset of the inbox prefix (unlabelled batches)
MODEL_PIN = Artifact("", "model.json", JSON, "the model version a scoring run uses: pinned by its first check, "
                     "read back by score and by retries and re-runs", served_as="model.json")
SCORING_BATCHES = Artifact("", "batches.json", JSON, "the inbox batches a scoring run scores: chosen once")
SCORABLE = Artifact("check_batch", "images.parquet", PARQUET, "the images that can be scored: id, source path, "
                    "bytes, sha256", intermediate=True)
REJECTED = Artifact("check_batch", "rejected.csv", CSV, "each file that cannot be scored, with the reason",
                    served_as="rejected.csv")
PREDICTIONS = {
    "parquet": Artifact("score_batch", "predictions.parquet", PARQUET, "per image: id, source path, digit, the "
                        "probability of each digit, the margin between the top two, the model version"),
    "csv": Artifact("score_batch", "predictions.csv", CSV, "the same as CSV", served_as="predictions.csv"),
}
SCORING_REPORT = Artifact("report_batch", "report.json", JSON, "images scored and rejected, the predicted-digit "
                          "distribution and its drift, the low-confidence share, the review gallery",
                          served_as="report.json")
GALLERY = Artifact("report_batch", "gallery", PNG, "thumbnails of the least confident images, <n>.png")
SCORING_ARTIFACTS: tuple[Artifact, ...] = (MODEL_PIN, SCORING_BATCHES, SCORABLE, REJECTED, *PREDICTIONS.values(),
                                           SCORING_REPORT, GALLERY)
SCORING_SERVED = {artifact.served_as: artifact for artifact in SCORING_ARTIFACTS if artifact.served_as}


def champion_uri(bucket: str) -> str:
    return f"s3://{bucket}/{CHAMPION_KEY}"


@dataclass(frozen=True)
class RunLayout:
    """Where one run's artifacts are: ``<area><run id>/<step>/<name>``, the area being ``runs/`` for
    training runs and ``predictions/`` for scoring runs."""

    bucket: str
    run_id: str
    area: str = RUNS_PREFIX

    @classmethod
    def scoring(cls, bucket: str, run_id: str) -> "RunLayout":
        return cls(bucket, run_id, PREDICTIONS_PREFIX)

    @property
    def root(self) -> str:
        return f"{self.area}{self.run_id}/"

    def prefix(self, step: str) -> str:
        return f"{self.root}{step}/"

    def key(self, artifact: Artifact) -> str:
        return (self.prefix(artifact.step) if artifact.step else self.root) + artifact.name

    def uri(self, artifact: Artifact) -> str:
        return f"s3://{self.bucket}/{self.key(artifact)}"

    def s3a(self, artifact: Artifact) -> str:
        """The path Spark reads and writes."""
        return f"s3a://{self.bucket}/{self.key(artifact)}"

    def marker_key(self, step: str) -> str:
        return self.prefix(step) + COMMIT_MARKER
