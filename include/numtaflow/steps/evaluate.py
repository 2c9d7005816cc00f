"""evaluate: metrics on the 20% hold-out and the independent set, the evidence, then the gate.

Outputs ``predictions.parquet`` (each evaluation image's digit and probabilities), ``metrics.json``,
``gate.json``, ``trained_on.json`` (the training sample's image hashes, registered with the model),
``confusion_*.png``, ``per_class_*.csv``, ``misclassified.png`` and the run's lineage record
``run.json``, all before the champion pointer may move (evidence first, pointer last). The
gate also holds the canary step's scores against these predictions. Promotion itself belongs to the
registry: this step supplies the judge.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog import (CANARY, CONFUSION, EVAL_PREDICTIONS, FEATURES, GATE, HOLDOUT, LINEAGE, METRICS, MISCLASSIFIED,
                       MODEL, PER_CLASS, SAMPLED_IMAGES, STEPS, TRAINED_ON)
from ..contracts import EvaluateSummary
from ..evaluation import (compute_metrics, confused_pairs, confusion_png, misclassified_ids, misclassified_png,
                          per_class_csv)
from ..gating import CanaryCheck, GateThresholds, check_canary, decide, feature_signature
from ..jobs import StepContext
from ..lineage import run_record
from ..model import with_vector
from ..registry import (HEADLINE_METRICS, Champion, ModelVersion, RegistryError, candidate_version, register,
                        switch_champion, training_images, update_index)
from ..storage import error_line
from ..vocabulary import DIGITS

REPORTED_METRICS = (*HEADLINE_METRICS, "per_class", "confusion_matrix")
# the least share of the candidate's evaluation images outside the champion's training sample for the
# two to be compared on those: fewer, and a few images would decide (recorded metrics are used instead)
MIN_UNSEEN_SHARE = 0.5


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


@dataclass(frozen=True)
class EvaluationSet:
    """The candidate's evaluation set as the gate needs it to re-score the champion."""

    features: Any  # the Spark frame of the images' features
    predictions: Any  # the candidate's (pandas): image_id, label, digit, p
    content: dict[str, str]  # image_id: the sha256 of its bytes


def content_hashes(images) -> dict[str, str]:
    """image_id: sha256 of the bytes, for a sampled set (small: it is collected)."""
    from pyspark.sql import functions as F

    return {row["image_id"]: row["sha256"]
            for row in images.select("image_id", F.sha2("content", 256).alias("sha256")).collect()}


def on_unseen_images(candidate_rows, champion_rows, content: dict[str, str],
                     trained_on: frozenset[str] | None) -> tuple[dict | None, dict | None, str]:
    """The champion's metrics on the evaluation images it was not trained on, the candidate's on the same
    images where these are fewer than all, and a sentence saying which. A champion trained on more than
    ``1 - MIN_UNSEEN_SHARE`` of them has none (None): too few would be left to compare on."""
    if trained_on is None:
        return (compute_metrics(*label_and_probabilities(champion_rows)), None,
                "champion re-scored on this run's evaluation set (its training images are not on record)")
    unseen = {image_id for image_id, sha256 in content.items() if sha256 not in trained_on}
    if len(unseen) == len(content):
        return compute_metrics(*label_and_probabilities(champion_rows)), None, \
            "champion re-scored on this run's evaluation set, none of which it was trained on"
    if len(unseen) < MIN_UNSEEN_SHARE * len(content):
        return None, None, (f"only {len(unseen)} of this run's {len(content)} evaluation images are outside the "
                            "champion's training sample, too few to compare the two on")
    metrics = [compute_metrics(*label_and_probabilities(rows[rows["image_id"].isin(unseen)]))
               for rows in (champion_rows, candidate_rows)]
    return (*metrics, f"champion re-scored on the {len(unseen)} of this run's {len(content)} evaluation images it "
                      f"was not trained on (the other {len(content) - len(unseen)} were in its training sample), "
                      "and the candidate compared on the same images")


def champion_metrics(storage, champion: Champion, candidate: ModelVersion,
                     evaluation: EvaluationSet) -> tuple[dict, str, dict | None]:
    """The champion's metrics to compare the candidate with, how they were obtained, and the candidate's
    own on the same images where these are not its whole evaluation set."""
    from pyspark.ml.classification import LogisticRegressionModel

    recorded = champion.metrics.model_dump()
    if feature_signature(candidate.settings, candidate.featurizer) == feature_signature(champion.settings,
                                                                                         champion.featurizer):
        try:  # an unreadable record must not block every future run; S3 failing fails the task (retried)
            trained_on = training_images(storage, champion.version)
        except RegistryError as error:
            return recorded, f"{error}; recorded metrics used", None
        try:
            model = LogisticRegressionModel.load(champion.model_uri.replace("s3://", "s3a://", 1))
            rows = scored(model, evaluation.features).toPandas()
        except Exception as error:  # an unreadable champion must not block every future run
            return recorded, f"champion could not be re-scored ({error_line(error)}); recorded metrics used", None
        baseline, compared, how = on_unseen_images(evaluation.predictions, rows, evaluation.content, trained_on)
        return (recorded, f"{how}: recorded metrics used", None) if baseline is None else (baseline, how, compared)
    if champion.eval_ids_sha256 == candidate.eval_ids_sha256:
        return recorded, "champion's recorded metrics on the same evaluation images", None
    return recorded, "champion uses other features and other evaluation images; recorded metrics used", None


def judge(context: StepContext, candidate: ModelVersion, metrics: dict, evaluation: EvaluationSet,
          current: Champion | None, canary: CanaryCheck) -> dict:
    """The gate's verdict on the candidate against ``current``, as written to ``gate.json``."""
    before = {"champion_before": current.run_id if current else None,
              "champion_version_before": current.version if current else None,
              "candidate_version": candidate.version}
    if current and current.model_sha256 == candidate.model_sha256:
        return {"promoted": True, "reasons": [f"this model is already the champion: the same bytes as version "
                                              f"{current.version} (a retried task, or a run that reused train)"],
                **before, "champion_after": current.run_id,
                "compared_with": None, "champion_metrics": None, "candidate_metrics_compared": None}
    baseline, how, compared = ((None, "no champion yet", None) if current is None
                               else champion_metrics(context.storage, current, candidate, evaluation))
    decision = decide(metrics, baseline, GateThresholds.from_settings(context.settings), canary, compared)
    return {**decision.to_json(), **before,
            "champion_after": context.run_id if decision.promoted else before["champion_before"],
            "compared_with": how,
            "champion_metrics": {k: baseline.get(k) for k in ("accuracy", "f1")} if baseline else None,
            "candidate_metrics_compared": {k: compared[k] for k in ("accuracy", "f1", "n")} if compared else None}


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


def gate_and_promote(context: StepContext, candidate: ModelVersion, results: dict, commits: dict,
                     evaluation: EvaluationSet, canary: CanaryCheck, started: float) -> dict:
    """Judge the candidate against the champion as it is, write the evidence, and only then let the
    registry move the pointer (re-judged on a lost race). Returns the final verdict."""
    storage, layout = context.storage, context.layout
    record = run_record(storage, layout, commits, context.logical_date, context.run_type,
                        context.settings.run_settings())
    verdicts = []

    def choose(current: Champion | None):
        gate = judge(context, candidate, results["eval"], evaluation, current, canary)
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
    sampled = {name: content_hashes(spark.read.parquet(context.s3a(SAMPLED_IMAGES[name])))
               for name in ("train", "eval")}
    context.storage.put_json(context.layout.key(TRAINED_ON),
                             {"content_sha256": sorted(set(sampled["train"].values()))})
    evaluation = EvaluationSet(eval_frame, predictions, sampled["eval"])
    gate = gate_and_promote(context, candidate, results, commits, evaluation, canary, started)
    update_index(context.storage, context.run_id, {
        "run_id": context.run_id, "logical_date": context.logical_date, "run_type": context.run_type,
        "finished_at": commits["train"].finished_at, "backbone": settings.backbone,
        "metrics": candidate.metrics.model_dump(), "split_accuracy": results["split"]["accuracy"],
        "promoted": gate["promoted"], "reasons": gate["reasons"], "version": candidate.version,
    })
    eval_frame.unpersist()
    return EvaluateSummary(accuracy=results["eval"]["accuracy"], f1=results["eval"]["f1"], promoted=gate["promoted"])
