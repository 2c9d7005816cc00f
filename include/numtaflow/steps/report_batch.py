"""report_batch: what a person needs to trust, or question, a batch's predictions.

Images scored and rejected; the predicted-digit distribution beside the model's training
distribution, with its population stability index (flagged above ``drift_threshold``) and a
chi-square p-value; the share of predictions below ``confidence_threshold`` beside that share on the
model's own evaluation set; and a review gallery of the least confident images (thumbnails under
``gallery/``, served by the Models pages). Outputs ``report.json`` and ``gallery/<n>.png``, and the
run's line in ``predictions/index.json``.
"""

from __future__ import annotations

import pandas as pd

from ..catalog import (EVAL_PREDICTIONS, GALLERY, GATE, MODEL_CARD_FACTS, MODEL_PIN, PREDICTIONS, SCORABLE,
                       SCORING_INDEX_KEY, SCORING_REPORT, RunLayout)
from ..contracts import PinnedModel, ReportBatchSummary
from ..images import thumbnail_png
from ..jobs import StepContext, log
from ..registry import now_iso, update_index, version_prefix
from ..scoring import (chi_square_p, digit_counts, drifted, least_confident, low_confidence_share,
                       population_stability)
from ..vocabulary import DIGITS


def evaluation_confidence(context: StepContext, pin: PinnedModel) -> list[float] | None:
    """The model's top probability on each of its own evaluation images; None when its run's prefix, which
    a re-run rewrites, no longer holds this version's evaluation (the gate's ``candidate_version`` says
    whose it holds)."""
    from pyspark.sql import functions as F

    layout = RunLayout(context.settings.bucket, pin.run_id)
    try:
        evaluated = context.storage.get_json(layout.key(GATE)).get("candidate_version")
    except FileNotFoundError:
        evaluated = None
    if evaluated != pin.version:
        log.warning("no evaluation confidences for version %s: run %s's evaluate holds %s", pin.version,
                    pin.run_id, f"version {evaluated}'s" if evaluated else "none")
        return None
    rows = context.spark.read.parquet(layout.s3a(EVAL_PREDICTIONS)).select(F.array_max("p").alias("confidence"))
    return rows.toPandas()["confidence"].tolist()


def gallery(context: StepContext, table: pd.DataFrame) -> list[dict]:
    """Thumbnails of the least confident images, with their two most likely digits."""
    from pyspark.sql import functions as F

    chosen = least_confident(table, context.scoring.gallery_size)
    if chosen.empty:
        return []
    images = context.spark.read.parquet(context.s3a(SCORABLE)).where(F.col("image_id").isin(list(chosen["image_id"])))
    content = {row["image_id"]: bytes(row["content"]) for row in images.select("image_id", "content").collect()}
    entries = []
    for number, row in enumerate(chosen.itertuples(index=False)):
        context.storage.put_bytes(f"{context.layout.key(GALLERY)}/{number}.png", thumbnail_png(content[row.image_id]),
                                  GALLERY.media_type)
        ranked = sorted(DIGITS, key=lambda d: -getattr(row, f"p_{d}"))[:2]
        entries.append({"n": number, "image_id": row.image_id, "path": row.path,
                        "top": [[d, round(float(getattr(row, f"p_{d}")), 4)] for d in ranked]})
    return entries


def run(context: StepContext) -> ReportBatchSummary:
    storage, layout, scoring = context.storage, context.layout, context.scoring
    check = context.require("check_batch").summary
    context.require("score_batch")
    pin = PinnedModel.model_validate(storage.get_json(layout.key(MODEL_PIN)))
    table = storage.get_frame(layout.key(PREDICTIONS["parquet"]))
    card = storage.get_json(version_prefix(pin.version) + MODEL_CARD_FACTS)
    trained = [card["training_data"]["per_class"][str(d)] for d in DIGITS]
    predicted = digit_counts(table["digit"])
    psi, p_value = population_stability(trained, predicted), chi_square_p(trained, predicted)
    evaluation = evaluation_confidence(context, pin)
    low = low_confidence_share(table["confidence"], scoring.confidence_threshold)
    report = {
        "run_id": context.run_id, "run_type": context.run_type, "created_at": now_iso(), "model": pin.model_dump(),
        "inputs": check.inputs, "images_scored": len(table), "images_rejected": check.rejected,
        "predicted_distribution": dict(zip(map(str, DIGITS), predicted)),
        "training_distribution": dict(zip(map(str, DIGITS), trained)),
        "psi": round(psi, 4), "chi_square_p": p_value, "drift_threshold": scoring.drift_threshold,
        "drift": drifted(psi, p_value, scoring.drift_threshold),
        "confidence_threshold": scoring.confidence_threshold, "low_confidence_share": round(low, 4),
        "evaluation_low_confidence_share": (round(low_confidence_share(evaluation, scoring.confidence_threshold), 4)
                                            if evaluation is not None else None),
        "gallery": gallery(context, table),
    }
    storage.put_json(layout.key(SCORING_REPORT), report)
    update_index(storage, context.run_id, {key: report[key] for key in (
        "run_id", "run_type", "created_at", "images_scored", "images_rejected", "psi", "drift",
        "low_confidence_share", "evaluation_low_confidence_share")} | {"version": pin.version}, SCORING_INDEX_KEY)
    return ReportBatchSummary(images=len(table), rejected=check.rejected, psi=round(psi, 4), drift=report["drift"],
                              low_confidence_share=round(low, 4))
