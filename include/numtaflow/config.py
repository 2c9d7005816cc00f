"""The settings schema: every setting declared once, with its type, bounds, title and form section.

Two audiences, two schemas:

* ``RunSettings``: what defines a run's result (inputs, sampling, features, training, gate). It is
  recorded with each run; a run's overrides (the trigger form, ``--settings-json``) may set only
  these, and the DAG's trigger form is generated from the fields that name a ``section``.
* ``PlatformSettings``: where and how the workflow runs (S3 endpoint, Spark, jars, folders,
  performance knobs that do not change results). They come only from the environment.

``Settings`` is both. Precedence, lowest first: the defaults here, then ``NUMTAFLOW_<FIELD>``
environment variables of the process that runs the step, then the run's overrides. Secrets are
not settings: S3 credentials come only from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from .catalog import DATASETS_PREFIX
from .vocabulary import BACKBONES, LR_PRESET_NAMES, MAX_POOL_GRID

ENV_PREFIX = "NUMTAFLOW_"


class SettingsError(ValueError):
    """Settings that cannot be taken (a value out of range, an unknown name); the message names each."""


def settings_object(option: str, text: str | None) -> dict[str, Any]:
    """The JSON object of settings passed as ``option`` (none: empty), or a ``SettingsError`` saying why not."""
    try:
        values = json.loads(text or "{}")
    except ValueError as error:
        raise SettingsError(f"{option} is not JSON: {error}") from None
    if not isinstance(values, dict):
        raise SettingsError(f"{option} must be a JSON object of settings, not {text}")
    return values


def _project_root() -> Path:
    """The checkout holding this package, also when a Spark driver imports the package from the
    archive shipped with ``--py-files`` (``<root>/.cache/py-files/<name>.zip``, see ``spark.py``)."""
    package = Path(__file__).resolve().parent
    if package.parent.suffix == ".zip":
        return package.parent.parents[2]
    return package.parents[1]


PROJECT_ROOT = _project_root()
SHARED_DIR = PROJECT_ROOT.parent / "shared"

FEATURE_LAYER = re.compile(rf"[A-Za-z0-9_./-]+(:[1-{MAX_POOL_GRID}])?")
JVM_MEMORY = re.compile(r"\d+[kmgt]?")

_FROZEN = ConfigDict(frozen=True, extra="forbid", validate_default=True, coerce_numbers_to_str=True)


def _on_form(default: Any, section: str, title: str, description: str, form_pattern: str | None = None,
             **bounds: Any) -> Any:
    """A run setting shown on the trigger form, in ``section``; ``form_pattern``: a regular expression the
    form checks the text against (the field's own validator says why a value is refused)."""
    extra = {"section": section, **({"pattern": form_pattern} if form_pattern else {})}
    return Field(default, title=title, description=description, json_schema_extra=extra, **bounds)


class RunSettings(BaseModel):
    """What defines a run's result; recorded in each step's commit marker and in ``run.json``."""

    model_config = _FROZEN

    # --- inputs --------------------------------------------------------------------------
    train_input: str = _on_form(f"s3://numtaflow/{DATASETS_PREFIX}/training-a", "Data", "Training input",
                                "NumtaDB folder (CSV beside it), folder per class, or .zip; local path or s3:// URI.",
                                min_length=1)
    eval_input: str = _on_form(f"s3://numtaflow/{DATASETS_PREFIX}/training-c", "Data", "Evaluation input",
                               "Independent images for evaluation and the gate (same forms as the training input).",
                               min_length=1)
    # landing prefix for new labelled batches (dt=YYYY-MM-DD/<batch>/); "" to train on train_input only
    incoming_input: str = "s3://numtaflow/incoming"
    # --- sampling ------------------------------------------------------------------------
    per_class: int = _on_form(50, "Data", "Images per class", "Stratified training sample size per digit.",
                              ge=2, le=100_000)
    eval_per_class: int = _on_form(200, "Data", "Evaluation images per class",
                                   "Size of the independent evaluation set per digit.", ge=1, le=100_000)
    seed: int = _on_form(42, "Data", "Sampling seed", "Same seed and input give the same sample.", ge=0)
    max_image_pixels: int = Field(4096 * 4096, ge=1)  # larger images are refused (decompression bombs)
    # --- features ------------------------------------------------------------------------
    backbone: Literal[tuple(BACKBONES)] = _on_form("MobileNetV2", "Features", "Backbone",
                                                   "Pretrained Keras CNN used as feature extractor.")
    image_size: int = _on_form(0, "Features", "Image size",
                               "Pixels per side fed to the CNN; 0 uses the backbone's recommended size "
                               "(MobileNetV2: 128; the others: their native 224 or 299).", ge=0, le=1024)
    # "auto" (the backbone's recommended layers), "last", or comma-separated layer names, each
    # average-pooled ("name") or averaged over a g x g grid of cells ("name:g"), then concatenated
    feature_layers: str = _on_form("auto", "Features", "Feature layers",
                                   "'auto', 'last', or comma-separated layer names to pool and concatenate; "
                                   "'name:2' averages a 2 x 2 grid of cells instead of the whole map.",
                                   form_pattern=rf"^\s*({FEATURE_LAYER.pattern}\s*)?(,\s*({FEATURE_LAYER.pattern}\s*)?)*$")
    crop_to_ink: bool = True
    train_views: int = Field(12, ge=0, le=20)  # distorted copies added per training image (0: none)
    test_views: int = Field(4, ge=0, le=20)  # distorted views averaged with each evaluated image (0: none)
    weights: Literal["imagenet", "random"] = "imagenet"  # "imagenet": from weights_dir (or downloaded if allowed)
    # --- training ------------------------------------------------------------------------
    lr_preset: Literal[LR_PRESET_NAMES] = _on_form(
        "tuned", "Training", "Logistic regression preset",
        "tuned (default, chosen by CV inside samples), study (maxIter=5, regParam=0.03, elasticNetParam=0.5) "
        "or cv (cross-validate inside this run's training split).")
    train_fraction: float = Field(0.8, gt=0, lt=1)
    split_seed: int = 42
    # --- gate ----------------------------------------------------------------------------
    min_accuracy: float = _on_form(0.85, "Gate", "Gate: minimum accuracy",
                                   "Absolute accuracy the candidate needs on the evaluation set.", ge=0, le=1)
    min_f1: float = _on_form(0.85, "Gate", "Gate: minimum F1", "Absolute weighted F1 needed.", ge=0, le=1)
    max_regression: float = _on_form(0.01, "Gate", "Gate: tolerance",
                                     "Largest accuracy/F1 drop against the champion that still promotes.",
                                     ge=0, le=1)
    # servability: the saved pipeline, loaded in its own process, scores this many evaluation images per
    # digit; each must get evaluate's digit, and every probability within the tolerance of evaluate's
    canary_per_class: int = Field(20, ge=1)
    canary_tolerance: float = Field(1e-4, gt=0, lt=1)
    # --- reuse (how the result is reached, not what it is: left out of step fingerprints) -----
    reuse_steps: bool = _on_form(True, "Reuse", "Reuse unchanged steps",
                                 "A step whose inputs, settings and code equal those of a step committed "
                                 "earlier takes that output instead of computing it (validate, sample, "
                                 "featurize, train). Off: every step computes.")

    @field_validator("feature_layers")
    @classmethod
    def _layer_entries(cls, value: str) -> str:
        for entry in (part.strip() for part in value.split(",")):
            if entry and not FEATURE_LAYER.fullmatch(entry):
                raise ValueError(f"entry {entry!r} must be a layer name, optionally followed by ':' and a grid "
                                 f"of 1 to {MAX_POOL_GRID}")
        return value

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, value: int, info: ValidationInfo) -> int:
        backbone = info.data.get("backbone")  # validated before: declared above
        smallest = BACKBONES[backbone].min_size if backbone in BACKBONES else 32
        if 0 < value < smallest:
            raise ValueError(f"must be 0 (the backbone's recommended size) or at least {smallest}, the smallest input "
                             f"{backbone} is built for")
        return value


# Run settings only the later steps read: the steps before them reuse their output whatever these are
# (jobs.Reuse). tests/unit/test_jobs.py checks which modules read them.
SAMPLING_SETTINGS = ("seed",)  # from sample on
FEATURIZER_SETTINGS = ("backbone", "weights", "image_size", "feature_layers", "crop_to_ink", "train_views",
                       "test_views")  # from featurize on
TRAINING_SETTINGS = ("lr_preset", "train_fraction", "split_seed")  # from train on
GATE_SETTINGS = ("min_accuracy", "min_f1", "max_regression", "canary_per_class", "canary_tolerance")  # canary, evaluate


class PlatformSettings(BaseModel):
    """Where and how the workflow runs; from the environment only, never from a run's overrides."""

    model_config = _FROZEN

    # --- storage -------------------------------------------------------------------------
    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_region: str = "us-east-1"
    bucket: str = "numtaflow"
    incoming_poll_seconds: int = Field(60, ge=1)  # how often the triggerer looks for newly landed batches
    # landing prefix for unlabelled batches to score (dt=YYYY-MM-DD/<batch>/ with _BATCH.json); "": none
    inbox_input: str = "s3://numtaflow/inbox"
    # --- weights -------------------------------------------------------------------------
    weights_dir: str = str(SHARED_DIR / "models")
    allow_weight_download: bool = False
    # --- featurizer performance (never changes the features) -----------------------------
    udf_batch_size: int = Field(16, ge=1)  # against 32: as fast, a tenth less memory per worker (make bench)
    # rows per Arrow batch handed to the featurizer's UDF (spark.sql.execution.arrow.maxRecordsPerBatch); it
    # counts rows, not bytes: a small multiple of udf_batch_size bounds each Python worker's memory
    arrow_batch_rows: int = Field(128, ge=1)
    tf_intra_op_threads: int = Field(0, ge=0)  # 0: spark.task.cpus x the backbone's tf_threads_per_core
    # images through the CNN per featurize task: bounds what a lost task redoes on large inputs
    featurize_task_images: int = Field(2000, ge=1)
    # reuse features computed by earlier runs (same image bytes, featurizer and view; feature_cache.py)
    feature_cache: bool = True
    # validate reads and decodes only files no earlier run inspected in their present version
    # (inspection_cache.py); false: every file
    validation_cache: bool = True
    # --- orchestration -------------------------------------------------------------------
    schedule: str = "@weekly"  # retraining schedule (cron or preset); "none": no time-based runs
    # --- spark ---------------------------------------------------------------------------
    spark_master: str = "local[*]"
    spark_driver_host: str = "127.0.0.1"  # the address executors use to reach the driver
    spark_bind_address: str = "127.0.0.1"
    # JVM heaps: the driver's (in local mode also the executors': training on all 44,000 NumtaDB
    # images needs more than Spark's 1g) and each cluster executor's
    driver_memory: str = "4g"
    executor_memory: str = "2g"
    shuffle_partitions: int = Field(8, ge=1)  # small data: Spark's default of 200 makes MLlib 20x slower
    spark_jars: str = str(PROJECT_ROOT / ".cache" / "jars")
    spark_packages: str = ""
    # zip this package at submit time and send it with --py-files, so executors run the submitter's
    # code rather than whatever the workers have installed
    ship_package: bool = True
    # the driver JVM maps the classes it starts with from an archive made by ``make setup``
    # (spark.class_archive_path): each job starts about 6 s sooner; false: every job reads the jars
    class_archive: bool = True
    class_archive_dir: str = str(PROJECT_ROOT / ".cache" / "jvm")
    executor_python: str = ""  # Python on the workers; empty: the submitting interpreter's path

    @field_validator("driver_memory", "executor_memory")
    @classmethod
    def _jvm_memory(cls, value: str) -> str:
        if not JVM_MEMORY.fullmatch(value.strip().lower()):
            raise ValueError("must be a JVM memory size such as 4g or 2048m")
        return value


class ScoringSettings(BaseModel):
    """What defines a scoring run (the numtadb_batch_predict DAG's form); recorded with each of its steps."""

    model_config = _FROZEN

    scoring_input: str = _on_form("", "Batch", "Images to score",
                                  "A folder of images (no labels, no class folders), a .zip, or an s3:// prefix. "
                                  "Empty: the inbox batches no run has scored yet.")
    model: str = _on_form("champion", "Model", "Model",
                          "champion (pinned when the run starts), a registered version (16 hex digits), or the id "
                          "of a training run whose model to use.", min_length=1)
    confidence_threshold: float = _on_form(0.7, "Review", "Low-confidence threshold",
                                           "Predictions whose top probability is below this are counted as "
                                           "low-confidence and compared with the same share on the model's own "
                                           "evaluation set.", ge=0, le=1)
    drift_threshold: float = _on_form(0.2, "Review", "Drift threshold (PSI)",
                                      "Population stability index of the predicted digits against the model's "
                                      "training distribution above which the batch is flagged (when a chi-square "
                                      "test also rejects the training distribution at p < 0.01).", ge=0)
    gallery_size: int = _on_form(24, "Review", "Review gallery size",
                                 "How many of the least confident images the report shows.", ge=0, le=500)


RUN_FIELDS = tuple(RunSettings.model_fields)


class Settings(RunSettings, PlatformSettings):
    """The effective configuration of one run: its run settings and the platform it runs on."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Defaults overlaid with ``NUMTAFLOW_*`` environment variables (run and platform settings)."""
        environ = os.environ if environ is None else environ
        values = {name: environ[env_name(name)] for name in cls.model_fields if env_name(name) in environ}
        return _validated(lambda: cls(**values), lambda name: env_name(name) if name in values else name)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """A copy with a run's ``overrides`` applied and validated.

        Only run settings may be overridden, and unknown keys raise: a typo in a trigger form must
        not silently fall back to a default.
        """
        unknown = sorted(set(overrides) - set(RUN_FIELDS))
        if unknown:
            platform = [name for name in unknown if name in PlatformSettings.model_fields]
            raise SettingsError(f"unknown run setting(s): {', '.join(unknown)}"
                             + (f" ({', '.join(platform)}: platform settings come from NUMTAFLOW_* environment "
                                "variables)" if platform else ""))
        return _validated(lambda: type(self)(**{**self.model_dump(), **overrides}))

    def run_settings(self) -> dict[str, Any]:
        """The run settings as plain JSON values (recorded with each run)."""
        return self.model_dump(include=set(RUN_FIELDS))

    def all_settings(self) -> dict[str, Any]:
        """Every effective setting, run and platform (no secrets: those are never settings)."""
        return self.model_dump()

    def to_json(self) -> str:
        return json.dumps(self.all_settings(), sort_keys=True)


def form_fields(schema_model: type[BaseModel] = RunSettings) -> dict[str, tuple[Any, str, dict[str, Any]]]:
    """A trigger form: ``{name: (default, description, JSON schema)}`` for each setting of
    ``schema_model`` with a section, in declaration order. The DAGs turn each into an Airflow ``Param``."""
    schema = schema_model.model_json_schema()["properties"]
    form = {}
    for name, field in schema_model.model_fields.items():
        if not (field.json_schema_extra or {}).get("section"):
            continue
        spec = {k: v for k, v in schema[name].items() if k not in ("default", "description")}
        form[name] = (field.default, field.description, spec)
    return form


def form_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """What a user changed on the trigger form: the values that differ from the form's defaults.

    The form shows the schema's defaults; an untouched field must not override the environment of
    the process that runs the step (form > environment > default).
    """
    fields = RunSettings.model_fields
    return {name: value for name, value in values.items() if name not in fields or value != fields[name].default}


def scoring_settings(values: Mapping[str, Any]) -> ScoringSettings:
    """A scoring run's settings from its form (form > default; unknown names are refused)."""
    return _validated(lambda: ScoringSettings(**values))


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` (``per_class``: ``NUMTAFLOW_PER_CLASS``)."""
    return ENV_PREFIX + field.upper()


def _validated(build, named_by: Callable[[str], str] = str):
    """Build settings, turning pydantic's error into one line that names each setting (as ``named_by``
    spells it: where its value came from) and value."""
    try:
        return build()
    except ValidationError as error:
        problems = [f"{'.'.join(named_by(str(part)) for part in e['loc'])}={e['input']!r}: "
                    f"{e['msg'].removeprefix('Value error, ')}" for e in error.errors()]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None
