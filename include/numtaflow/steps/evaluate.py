"""evaluate: metrics on the 20% hold-out and the independent set, then the promotion gate.

Outputs ``metrics.json``, ``gate.json``, ``confusion_eval.png``, ``confusion_split.png``,
``per_class_eval.csv`` and the run's lineage record ``runs/<run>/run.json``. The champion
pointer changes only here, only through the gate, only by compare-and-set.
"""

from __future__ import annotations

import platform
import subprocess
import time
from importlib import metadata

import numpy as np

from ..config import PROJECT_ROOT, STEPS
from ..evaluation import compute_metrics, confusion_png, per_class_csv
from ..gating import GateDecision, GateThresholds, decide
from ..jobs import StepContext
from ..model import with_vector
from ..registry import read_champion, set_champion, update_index
from ..storage import PreconditionFailed

# settings that change the evaluation features: a champion is re-scored only if all are equal
FEATURE_SETTINGS = ("backbone", "image_size", "feature_layers", "crop_to_ink", "weights", "test_views")
FEATURIZER_FIELDS = ("backbone", "image_size", "layers", "weights", "weights_sha256")


def feature_signature(settings: dict, featurizer: dict | None) -> dict:
    """What must match for a model to score this run's evaluation features: the settings that
    shape them, and the layers they came from (what ``feature_layers=auto`` means can change)."""
    return {**{k: settings.get(k) for k in FEATURE_SETTINGS}, "layers": (featurizer or {}).get("layers")}


def predict(model, frame) -> tuple[np.ndarray, np.ndarray]:
    """Labels and class probabilities (only these small columns reach the driver)."""
    from pyspark.ml.functions import vector_to_array

    scored = model.transform(with_vector(frame)).select("label", vector_to_array("probability").alias("p"))
    rows = scored.toPandas()
    if rows.empty:
        return np.zeros(0, dtype=int), np.zeros((0, 10))
    return rows["label"].to_numpy(dtype=int), np.stack(rows["p"].to_numpy())


def champion_metrics(context: StepContext, champion: dict, eval_frame, featurizer: dict) -> tuple[dict | None, str]:
    """The champion's metrics on this run's evaluation images, and how they were obtained."""
    from pyspark.ml.classification import LogisticRegressionModel

    ours = feature_signature(context.settings.run_settings(), featurizer)
    if ours == feature_signature(champion.get("settings", {}), champion.get("backbone")):
        try:
            model = LogisticRegressionModel.load(champion["model_uri"].replace("s3://", "s3a://", 1))
            labels, probabilities = predict(model, eval_frame)
            return compute_metrics(labels, probabilities), "champion re-scored on this run's evaluation set"
        except Exception as error:  # an unreadable champion must not block every future run
            return champion.get("metrics"), f"champion could not be re-scored ({error}); recorded metrics used"
    if champion.get("eval_ids_sha256") == context.storage.require_step(context.layout, "sample")["summary"]["eval"]["ids_sha256"]:
        return champion.get("metrics"), "champion's recorded metrics on the same evaluation images"
    return champion.get("metrics"), "champion uses other features and other evaluation images; recorded metrics used"


def gate_and_promote(context: StepContext, metrics: dict, record: dict, eval_frame) -> dict:
    """Decide against the current champion and promote by compare-and-set; re-judge on a lost race."""
    thresholds = GateThresholds.from_settings(context.settings)
    for _ in range(5):
        champion, etag = read_champion(context.storage)
        if champion and champion.get("run_id") == context.run_id:
            return {"promoted": True, "reasons": ["this run is already the champion (task retried)"],
                    "champion_before": champion.get("previous_run_id"), "champion_after": context.run_id,
                    "compared_with": None}
        baseline, how = ((None, "no champion yet") if champion is None
                         else champion_metrics(context, champion, eval_frame, record["backbone"]))
        decision = decide(metrics, baseline, thresholds)
        before = champion.get("run_id") if champion else None
        result = {**decision.to_json(), "champion_before": before, "champion_after": before, "compared_with": how,
                  "champion_metrics": {k: baseline.get(k) for k in ("accuracy", "f1")} if baseline else None}
        if not decision.promoted:
            return result
        try:
            set_champion(context.storage, {**record, "previous_run_id": before, "reasons": decision.reasons},
                         etag, action="promote")
            return {**result, "champion_after": context.run_id}
        except PreconditionFailed:
            continue  # another run changed the champion meanwhile: judge against the new one
    return {**GateDecision(False, ["champion kept changing; gave up after 5 attempts"]).to_json(),
            "champion_before": None, "champion_after": None, "compared_with": None}


def artifact_uris(storage, run_id: str) -> list[str]:
    """Every artifact of the run, a Parquet dataset or saved model counted once (its folder)."""
    uris = set()
    for obj in storage.list_objects(f"runs/{run_id}/"):
        parts = obj["Key"].split("/")
        folder = next((depth for depth, part in enumerate(parts[:-1]) if part.endswith(".parquet") or part == "model"),
                      None)
        key = obj["Key"] if folder is None else "/".join(parts[: folder + 1]) + "/"
        uris.add(f"s3://{storage.bucket}/{key}")
    return sorted(uris)


def versions() -> dict:
    packages = {}
    for name in ("pyspark", "tensorflow-cpu", "tensorflow", "keras", "apache-airflow", "great-expectations",
                 "scikit-learn", "numtaflow"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), **packages}


def code_version() -> str:
    try:
        return subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "numtaflow " + metadata.version("numtaflow")


def run(context: StepContext) -> dict:
    from pyspark.ml.classification import LogisticRegressionModel

    started = time.time()
    storage, layout, spark, settings = context.storage, context.layout, context.spark, context.settings
    markers = {step: storage.require_step(layout, step) for step in STEPS if step != "evaluate"}
    model = LogisticRegressionModel.load(context.s3a("model", step="train"))
    holdout = spark.read.parquet(context.s3a("holdout.parquet", step="train"))
    eval_frame = spark.read.parquet(context.s3a("eval.parquet", step="featurize")).cache()
    split_metrics = compute_metrics(*predict(model, holdout))
    eval_metrics = compute_metrics(*predict(model, eval_frame))
    for name, values in (("eval", eval_metrics), ("split", split_metrics)):
        title = (f"{settings.backbone}, {'independent' if name == 'eval' else '20% split'} set: n={values['n']}, "
                 f"accuracy {values['accuracy']:.3f}\nrun {context.run_id}")
        storage.put_bytes(layout.key("evaluate", f"confusion_{name}.png"), confusion_png(values["confusion_matrix"], title),
                          "image/png")
        storage.put_bytes(layout.key("evaluate", f"per_class_{name}.csv"), per_class_csv(values).encode(), "text/csv")
    sample_summary = markers["sample"]["summary"]
    featurizer = {k: markers["featurize"]["summary"][k] for k in FEATURIZER_FIELDS}
    record = {
        "run_id": context.run_id,
        "model_uri": context.uri("model", step="train"),
        "metrics": {k: eval_metrics[k] for k in ("accuracy", "f1", "precision", "recall", "roc_auc")},
        "settings": settings.run_settings(),
        "backbone": featurizer,
        "eval_ids_sha256": sample_summary["eval"]["ids_sha256"],
    }
    gate = gate_and_promote(context, eval_metrics, record, eval_frame)
    timings = {step: markers[step]["seconds"] for step in markers}
    timings["evaluate"] = round(time.time() - started, 2)
    metrics = {
        **{k: eval_metrics[k] for k in ("accuracy", "f1", "precision", "recall", "roc_auc", "per_class",
                                         "confusion_matrix")},
        "split": {k: split_metrics[k] for k in ("accuracy", "f1", "precision", "recall", "roc_auc", "per_class",
                                                "confusion_matrix")},
        "n_train": markers["train"]["summary"]["n_train"],
        "n_split_test": split_metrics["n"],
        "n_eval": eval_metrics["n"],
        "backbone": settings.backbone,
        "per_class_sample": settings.per_class,
        "seed": settings.seed,
        "lr_params": markers["train"]["summary"]["params"],
        "gate": gate,
        "timings": timings,
    }
    storage.put_json(layout.key("evaluate", "metrics.json"), metrics)
    storage.put_json(layout.key("evaluate", "gate.json"), gate)
    lineage = {
        "run_id": context.run_id,
        "logical_date": context.logical_date,
        "run_type": context.run_type,
        "inputs": markers["validate"]["summary"]["inputs"],
        "data_until": markers["validate"]["summary"].get("data_until"),
        "sample": sample_summary,
        "settings": settings.run_settings(),
        "code_version": code_version(),
        "versions": versions(),
        "backbone": featurizer,
        "steps": {step: {"started_at": m["started_at"], "finished_at": m["finished_at"], "seconds": m["seconds"]}
                  for step, m in markers.items()},
        "artifacts": artifact_uris(storage, context.run_id),
    }
    storage.put_json(layout.run_record_key, lineage)
    update_index(storage, context.run_id, {
        "run_id": context.run_id, "logical_date": context.logical_date, "run_type": context.run_type,
        "finished_at": markers["train"]["finished_at"], "backbone": settings.backbone,
        "metrics": record["metrics"], "split_accuracy": split_metrics["accuracy"],
        "promoted": gate["promoted"], "reasons": gate["reasons"],
    })
    eval_frame.unpersist()
    return {"accuracy": eval_metrics["accuracy"], "f1": eval_metrics["f1"], "promoted": gate["promoted"]}
