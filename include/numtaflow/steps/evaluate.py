"""evaluate: metrics on the 20% hold-out and the independent set, the evidence, then the gate.

Outputs ``predictions.parquet`` (each evaluation image's digit and probabilities), ``metrics.json``,
``gate.json``, ``confusion_*.png``, ``per_class_*.csv``, ``misclassified.png`` and the run's lineage
record ``run.json``, all before the champion pointer may move (evidence first, pointer last). The
gate also holds the canary step's scores against these predictions. Promotion itself belongs to the
registry: this step supplies the judge.
"""

from __future__ import annotations

import time

import numpy as np

from ..catalog import (CANARY, CONFUSION, EVAL_PREDICTIONS, FEATURES, GATE, HOLDOUT, LINEAGE, METRICS, MISCLASSIFIED,
                       MODEL, PER_CLASS, SAMPLED_IMAGES, STEPS)
from ..contracts import EvaluateSummary
from ..evaluation import (compute_metrics, confused_pairs, confusion_png, misclassified_ids, misclassified_png,
                          per_class_csv)
from ..gating import CanaryCheck, GateThresholds, check_canary, decide, feature_signature
from ..jobs import StepContext
from ..lineage import run_record
from ..model import with_vector
from ..registry import HEADLINE_METRICS, Champion, ModelVersion, candidate_version, register, switch_champion, update_index
from ..vocabulary import DIGITS

REPORTED_METRICS = (*HEADLINE_METRICS, "per_class", "confusion_matrix")


def scored(model, frame):
    """Each image's id, label, predicted digit and probabilities (lazy; small columns only)."""
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    return model.transform(with_vector(frame)).select(
        "image_id", "label", F.col("prediction").cast("int").alias("digit"), vector_to_array("probability").alias("p"))


def predict(model, frame) -> tuple[np.ndarray, np.ndarray]:
    """Labels and class probabilities, for the metrics."""
    return label_and_probabilities(scored(model, frame).toPandas())


def label_and_probabilities(rows) -> tuple[np.ndarray, np.ndarray]:
    if rows.empty:
        return np.zeros(0, dtype=int), np.zeros((0, len(DIGITS)))
    return rows["label"].to_numpy(dtype=int), np.stack(rows["p"].to_numpy())


def champion_metrics(champion: Champion, candidate: ModelVersion, eval_frame) -> tuple[dict, str]:
    """The champion's metrics on the candidate's evaluation images, and how they were obtained."""
    from pyspark.ml.classification import LogisticRegressionModel

    if feature_signature(candidate.settings, candidate.featurizer) == feature_signature(champion.settings,
                                                                                         champion.featurizer):
        try:
            model = LogisticRegressionModel.load(champion.model_uri.replace("s3://", "s3a://", 1))
            return compute_metrics(*predict(model, eval_frame)), "champion re-scored on this run's evaluation set"
        except Exception as error:  # an unreadable champion must not block every future run
            return champion.metrics.model_dump(), f"champion could not be re-scored ({error}); recorded metrics used"
    if champion.eval_ids_sha256 == candidate.eval_ids_sha256:
        return champion.metrics.model_dump(), "champion's recorded metrics on the same evaluation images"
    return champion.metrics.model_dump(), "champion uses other features and other evaluation images; recorded metrics used"


def judge(context: StepContext, candidate: ModelVersion, metrics: dict, eval_frame, current: Champion | None,
          canary: CanaryCheck) -> dict:
    """The gate's verdict on the candidate against ``current``, as written to ``gate.json``."""
    before = {"champion_before": current.run_id if current else None,
              "champion_version_before": current.version if current else None,
              "candidate_version": candidate.version}
    if current and current.model_sha256 == candidate.model_sha256:
        return {"promoted": True, "reasons": [f"this model is already the champion: the same bytes as version "
                                              f"{current.version} (a retried task, or a run that reused train)"],
                **before, "champion_after": current.run_id,
                "compared_with": None, "champion_metrics": None}
    baseline, how = (None, "no champion yet") if current is None else champion_metrics(current, candidate, eval_frame)
    decision = decide(metrics, baseline, GateThresholds.from_settings(context.settings), canary)
    return {**decision.to_json(), **before,
            "champion_after": context.run_id if decision.promoted else before["champion_before"],
            "compared_with": how, "champion_metrics": {k: baseline.get(k) for k in ("accuracy", "f1")} if baseline else None}


def write_plots(context: StepContext, results: dict[str, dict], predictions) -> None:
    storage, layout, settings = context.storage, context.layout, context.settings
    for name, values in results.items():
        title = (f"{settings.backbone}, {'independent' if name == 'eval' else '20% split'} set: n={values['n']}, "
                 f"accuracy {values['accuracy']:.3f}\nrun {context.run_id}")
        storage.put_bytes(layout.key(CONFUSION[name]), confusion_png(values["confusion_matrix"], title), CONFUSION[name].media_type)
        storage.put_bytes(layout.key(PER_CLASS[name]), per_class_csv(values).encode(), PER_CLASS[name].media_type)
    title = f"Misclassified evaluation images, run {context.run_id}"
    storage.put_bytes(layout.key(MISCLASSIFIED), misclassified_png(misclassified_examples(context, results["eval"],
                                                                                         predictions), title),
                      MISCLASSIFIED.media_type)


def misclassified_examples(context: StepContext, metrics: dict, predictions, per_pair: int = 6) -> list:
    """The most confused pairs, each with the bytes of up to ``per_pair`` of its images."""
    from pyspark.sql import functions as F

    pairs = confused_pairs(metrics["confusion_matrix"])
    chosen = misclassified_ids(predictions, pairs, per_pair)
    ids = [image_id for group in chosen for image_id in group]
    images = context.spark.read.parquet(context.s3a(SAMPLED_IMAGES["eval"]))
    content = {row["image_id"]: bytes(row["content"])
               for row in images.where(F.col("image_id").isin(ids)).select("image_id", "content").collect()}
    return [(pair, [content[i] for i in group]) for pair, group in zip(pairs, chosen)]


def metrics_record(context: StepContext, results: dict[str, dict], commits: dict, gate: dict, started: float) -> dict:
    """``metrics.json``: both sets' metrics, what was trained, the gate's verdict, each step's seconds."""
    settings, train = context.settings, commits["train"].summary
    return {**{k: results["eval"][k] for k in REPORTED_METRICS},
            "split": {k: results["split"][k] for k in REPORTED_METRICS},
            "n_train": train.n_train, "n_split_test": results["split"]["n"], "n_eval": results["eval"]["n"],
            "backbone": settings.backbone, "per_class_sample": settings.per_class, "seed": settings.seed,
            "lr_params": train.params, "gate": gate,
            "timings": {**{step: commit.seconds for step, commit in commits.items()},
                        "evaluate": round(time.time() - started, 2)}}


def gate_and_promote(context: StepContext, candidate: ModelVersion, results: dict, commits: dict, eval_frame,
                     canary: CanaryCheck, started: float) -> dict:
    """Judge the candidate against the champion as it is, write the evidence, and only then let the
    registry move the pointer (re-judged on a lost race). Returns the final verdict."""
    storage, layout = context.storage, context.layout
    record = run_record(storage, layout, commits, context.logical_date, context.run_type,
                        context.settings.run_settings())
    verdicts = []

    def choose(current: Champion | None):
        gate = judge(context, candidate, results["eval"], eval_frame, current, canary)
        verdicts.append(gate)
        metrics = metrics_record(context, results, commits, gate, started)
        storage.put_json(layout.key(METRICS), metrics)
        storage.put_json(layout.key(GATE), gate)
        storage.put_json(layout.key(LINEAGE), record)
        if not gate["promoted"] or (current and current.model_sha256 == candidate.model_sha256):
            return None
        return register(storage, candidate, (metrics, record)), "promote", gate["reasons"]

    switch_champion(storage, choose, f"promotion of run {context.run_id}")
    return verdicts[-1]


def run(context: StepContext) -> EvaluateSummary:
    from pyspark.ml.classification import LogisticRegressionModel

    started = time.time()
    spark, settings = context.spark, context.settings
    commits = {step: context.require(step) for step in STEPS if step != "evaluate"}
    model = LogisticRegressionModel.load(context.s3a(MODEL))
    eval_frame = spark.read.parquet(context.s3a(FEATURES["eval"])).cache()
    scored(model, eval_frame).write.mode("overwrite").parquet(context.s3a(EVAL_PREDICTIONS))
    predictions = spark.read.parquet(context.s3a(EVAL_PREDICTIONS)).toPandas()
    results = {"eval": compute_metrics(*label_and_probabilities(predictions)),
               "split": compute_metrics(*predict(model, spark.read.parquet(context.s3a(HOLDOUT))))}
    write_plots(context, results, predictions)
    evaluated = {row.image_id: (int(row.digit), list(row.p)) for row in predictions.itertuples()}
    canary = check_canary(context.storage.get_json(context.layout.key(CANARY)), evaluated, settings.canary_tolerance)
    candidate = candidate_version(context.storage, context.layout, results["eval"], settings.run_settings(),
                                  commits["featurize"].summary.featurizer(), commits["sample"].summary.eval.ids_sha256)
    gate = gate_and_promote(context, candidate, results, commits, eval_frame, canary, started)
    update_index(context.storage, context.run_id, {
        "run_id": context.run_id, "logical_date": context.logical_date, "run_type": context.run_type,
        "finished_at": commits["train"].finished_at, "backbone": settings.backbone,
        "metrics": candidate.metrics.model_dump(), "split_accuracy": results["split"]["accuracy"],
        "promoted": gate["promoted"], "reasons": gate["reasons"], "version": candidate.version,
    })
    eval_frame.unpersist()
    return EvaluateSummary(accuracy=results["eval"]["accuracy"], f1=results["eval"]["f1"], promoted=gate["promoted"])
