"""One settings object for the whole workflow.

Every setting has a default here, can be set by an environment variable named
``NUMTAFLOW_<FIELD>`` (upper case), and the per-run ones can be overridden by the
DAG's trigger form (``Settings.with_overrides``). Secrets are not settings: S3
credentials come only from ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

ENV_PREFIX = "NUMTAFLOW_"


def _project_root() -> Path:
    """The checkout holding this package, also when a Spark driver imports the package from the
    archive shipped with ``--py-files`` (``<root>/.cache/py-files/<name>.zip``, see ``spark.py``)."""
    package = Path(__file__).resolve().parent
    if package.parent.suffix == ".zip":
        return package.parent.parents[2]
    return package.parents[1]


PROJECT_ROOT = _project_root()
SHARED_DIR = PROJECT_ROOT.parent / "shared"

BACKBONES = (
    "MobileNetV2",
    "EfficientNetB0",
    "InceptionV3",
    "Xception",
    "ResNet50",
    "VGG16",
    "VGG19",
)
LR_PRESETS = ("tuned", "study", "cv")
MAX_POOL_GRID = 7
FEATURE_LAYER = re.compile(rf"[A-Za-z0-9_./-]+(:[1-{MAX_POOL_GRID}])?")
STEPS = ("validate", "sample", "featurize", "train", "evaluate")
DAG_ID = "numtadb_transfer_learning"


@dataclass(frozen=True)
class Settings:
    """Effective configuration of one run (or of the services, for the non-run fields)."""

    # --- storage -------------------------------------------------------------------------
    s3_endpoint: str = "http://127.0.0.1:8333"
    s3_region: str = "us-east-1"
    bucket: str = "numtaflow"
    # --- inputs --------------------------------------------------------------------------
    train_input: str = "s3://numtaflow/datasets/numtadb/training-a"
    eval_input: str = "s3://numtaflow/datasets/numtadb/training-c"
    # landing prefix for new labelled batches (dt=YYYY-MM-DD/<batch>/); "" to train on train_input only
    incoming_input: str = "s3://numtaflow/incoming"
    incoming_poll_seconds: int = 60  # how often the triggerer looks for newly landed batches
    # --- sampling ------------------------------------------------------------------------
    per_class: int = 50
    eval_per_class: int = 200
    seed: int = 42
    max_image_pixels: int = 4096 * 4096
    # --- features ------------------------------------------------------------------------
    backbone: str = "MobileNetV2"
    image_size: int = 0  # 0: the backbone's recommended size (MobileNetV2: 128), else its native one
    # "auto" (the backbone's recommended layers), "last", or comma-separated layer names, each
    # average-pooled ("name") or averaged over a g x g grid of cells ("name:g"), then concatenated
    feature_layers: str = "auto"
    crop_to_ink: bool = True
    train_views: int = 12  # distorted copies added per training image (0: none)
    test_views: int = 4  # distorted views averaged with each evaluated image (0: none)
    weights: str = "imagenet"  # "imagenet" (from weights_dir, or downloaded if allowed) or "random"
    weights_dir: str = str(SHARED_DIR / "models")
    allow_weight_download: bool = False
    udf_batch_size: int = 16  # against 32: 5% faster, a fifth less memory per worker (make bench)
    # rows per Arrow batch handed to the pandas UDF (spark.sql.execution.arrow.maxRecordsPerBatch); it
    # counts rows, not bytes: a small multiple of udf_batch_size bounds each Python worker's memory
    arrow_batch_rows: int = 128
    tf_intra_op_threads: int = 0  # 0: spark.task.cpus
    # images through the CNN per featurize task: bounds what a lost task redoes on large inputs
    featurize_task_images: int = 2000
    # --- training ------------------------------------------------------------------------
    lr_preset: str = "tuned"
    train_fraction: float = 0.8
    split_seed: int = 42
    # --- gate ----------------------------------------------------------------------------
    min_accuracy: float = 0.85
    min_f1: float = 0.85
    max_regression: float = 0.01
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
    shuffle_partitions: int = 8  # small data: Spark's default of 200 makes each MLlib iteration 20x slower
    spark_jars: str = str(PROJECT_ROOT / ".cache" / "jars")
    spark_packages: str = ""
    # zip this package at submit time and send it with --py-files, so executors run the submitter's
    # code rather than whatever the workers have installed
    ship_package: bool = True
    executor_python: str = ""  # Python on the workers; empty: the submitting interpreter's path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from defaults overlaid with ``NUMTAFLOW_*`` environment variables."""
        environ = os.environ if environ is None else environ
        values = {
            f.name: environ[ENV_PREFIX + f.name.upper()]
            for f in fields(cls)
            if ENV_PREFIX + f.name.upper() in environ
        }
        return cls().with_overrides(values)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """Return a copy with ``overrides`` applied, each coerced to the field's type.

        Unknown keys raise: a typo in a trigger form must not silently fall back to a default.
        """
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        coerced = {name: _coerce(name, known[name].type, value) for name, value in overrides.items()}
        updated = dataclasses.replace(self, **coerced)
        updated.check()
        return updated

    def check(self) -> None:
        """Reject values no run could use, naming the setting."""
        problems = []
        if self.backbone not in BACKBONES:
            problems.append(f"backbone={self.backbone!r} is not one of {', '.join(BACKBONES)}")
        if self.lr_preset not in LR_PRESETS:
            problems.append(f"lr_preset={self.lr_preset!r} is not one of {', '.join(LR_PRESETS)}")
        if self.weights not in ("imagenet", "random"):
            problems.append(f"weights={self.weights!r} must be 'imagenet' or 'random'")
        if self.per_class < 2:
            problems.append(f"per_class={self.per_class} must be at least 2")
        if self.eval_per_class < 1:
            problems.append(f"eval_per_class={self.eval_per_class} must be at least 1")
        if not 0.0 < self.train_fraction < 1.0:
            problems.append(f"train_fraction={self.train_fraction} must be between 0 and 1")
        for name in ("min_accuracy", "min_f1", "max_regression"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name}={getattr(self, name)} must be between 0 and 1")
        if not (0 <= self.train_views <= 20 and 0 <= self.test_views <= 20):
            problems.append("train_views and test_views must be between 0 and 20")
        if self.featurize_task_images < 1:
            problems.append(f"featurize_task_images={self.featurize_task_images} must be at least 1")
        if self.arrow_batch_rows < 1:
            problems.append(f"arrow_batch_rows={self.arrow_batch_rows} must be at least 1")
        for entry in self.feature_layers.split(","):
            if entry.strip() and not FEATURE_LAYER.fullmatch(entry.strip()):
                problems.append(f"feature_layers entry {entry.strip()!r} must be a layer name, optionally "
                                f"followed by ':' and a grid of 1 to {MAX_POOL_GRID}")
        if self.image_size and self.image_size < 32:
            problems.append(f"image_size={self.image_size} must be 0 (the backbone's recommended size) or at least 32")
        for name in ("driver_memory", "executor_memory"):
            if not re.fullmatch(r"\d+[kmgt]?", getattr(self, name).strip().lower()):
                problems.append(f"{name}={getattr(self, name)!r} must be a JVM memory size such as 4g or 2048m")
        if problems:
            raise ValueError("invalid settings: " + "; ".join(problems))

    def run_settings(self) -> dict[str, Any]:
        """Every effective setting as plain JSON values (recorded with each run)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.run_settings(), sort_keys=True)


def _coerce(name: str, type_name: Any, value: Any) -> Any:
    type_name = type_name if isinstance(type_name, str) else type_name.__name__
    try:
        if type_name == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if type_name == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if type_name == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"setting {name}={value!r} is not a valid {type_name}") from None
