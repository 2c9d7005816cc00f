"""The catalog: every object the workflow writes to the bucket, declared once.

Steps, the CLI, the web app, the DAG and the tests name artifacts through this module and never
type a key. A run's artifacts live under ``runs/<run id>/<step>/<name>``; each step commits them
with ``_COMMITTED.json`` last, and readers trust nothing under a step's prefix without it. The
model registry lives under ``models/``; versions there are immutable.
"""

from __future__ import annotations

from dataclasses import dataclass

DAG_ID = "numtadb_transfer_learning"
RUNS_PREFIX = "runs/"
STEPS = ("validate", "sample", "featurize", "train", "evaluate")
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
                   f"the {name} input's images that passed validation, with their bytes")
    for name in ("train", "eval")
}
# --- sample --------------------------------------------------------------------------------
SAMPLED_IMAGES = {
    "train": Artifact("sample", "train.parquet", PARQUET, "per_class images per digit from the training input"),
    "eval": Artifact("sample", "eval.parquet", PARQUET, "eval_per_class independent images per digit"),
}
# --- featurize -----------------------------------------------------------------------------
FEATURES = {
    "train": Artifact("featurize", "train.parquet", PARQUET, "features of the sample and its distorted copies"),
    "eval": Artifact("featurize", "eval.parquet", PARQUET, "features of the evaluation images (test views averaged)"),
}
# --- train ---------------------------------------------------------------------------------
MODEL = Artifact("train", "model", SPARK_MODEL, "the fitted MLlib logistic regression")
PIPELINE = Artifact("train", "pipeline", SPARK_MODEL,
                    "image bytes to digit: the featurizer stage, the logistic regression, the digit (ml.py)")
HOLDOUT = Artifact("train", "holdout.parquet", PARQUET, "features of the 20% split held out from training")
TRAIN_PARAMS = Artifact("train", "params.json", JSON, "LR parameters, cross-validation table, row counts",
                        in_report=True)
# --- evaluate ------------------------------------------------------------------------------
METRICS = Artifact("evaluate", "metrics.json", JSON, "metrics on both sets, the gate decision, step timings",
                   served_as="metrics.json", in_report=True)
GATE = Artifact("evaluate", "gate.json", JSON, "the gate's decision and reasons", in_report=True)
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

ARTIFACTS: tuple[Artifact, ...] = (
    VALIDATION_REPORT, VALIDATION_HTML, *VALIDATED_IMAGES.values(), *SAMPLED_IMAGES.values(), *FEATURES.values(),
    MODEL, PIPELINE, HOLDOUT, TRAIN_PARAMS, METRICS, GATE, *CONFUSION.values(), *PER_CLASS.values(), LINEAGE,
    BATCH_SELECTION,
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
CHAMPION_ASSET = "numtadb_champion"  # the Airflow Asset a promotion updates; other DAGs can schedule on it
# --- inputs and scratch space --------------------------------------------------------------
DATASETS_PREFIX = "datasets/numtadb"  # where ``numtaflow load-data`` puts NumtaDB folders
STAGING_PREFIX = "staging/"  # zips unpacked for Spark
INCOMING_ASSET = "numtadb_incoming"  # the Airflow Asset of the landing prefix
# names under the landing prefix (``incoming_input``), beside its ``dt=YYYY-MM-DD/<batch>/`` folders
BATCH_MARKER = "_BATCH.json"  # in a batch's folder, written last: the batch is committed
ANNOUNCED = "_ANNOUNCED.json"  # the batches that started a run (the watcher's ledger, compare-and-set)


def champion_uri(bucket: str) -> str:
    return f"s3://{bucket}/{CHAMPION_KEY}"


@dataclass(frozen=True)
class RunLayout:
    """Where one run's artifacts are: ``runs/<run id>/<step>/<name>``."""

    bucket: str
    run_id: str

    @property
    def root(self) -> str:
        return f"{RUNS_PREFIX}{self.run_id}/"

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
