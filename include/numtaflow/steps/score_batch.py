"""score_batch: the pinned model's saved pipeline classifies every scorable image.

The model is the one ``check_batch`` pinned in ``model.json``, whatever was promoted since. Outputs
``predictions.parquet`` and ``predictions.csv``: per image its id, source path, digit, the
probability of each digit, the top probability, the margin between the top two and the model
version, in id order, so re-scoring the same batch with the same version rewrites the same rows.
"""

from __future__ import annotations

import io
import time

import numpy as np

from ..catalog import MODEL_PIN, PREDICTIONS, SCORABLE
from ..contracts import PinnedModel, ScoreBatchSummary
from ..jobs import StepContext
from ..ml import scoring_partitions
from ..scoring import prediction_table
from ..storage import spark_path


def run(context: StepContext) -> ScoreBatchSummary:
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array
    from pyspark.sql import functions as F

    spark, storage, layout = context.spark, context.storage, context.layout
    context.require("check_batch")
    pin = PinnedModel.model_validate(storage.get_json(layout.key(MODEL_PIN)))
    started = time.time()
    images = spark.read.parquet(context.s3a(SCORABLE)).where(F.col("reason").isNull()).select("image_id", "path",
                                                                                                "content")
    pipeline = PipelineModel.load(spark_path(pin.pipeline_uri))
    count = images.count()
    partitions = scoring_partitions(pipeline, count, spark.sparkContext.defaultParallelism,
                                    context.settings.featurize_task_images)
    scored = pipeline.transform(images.repartition(partitions)).select(
        "image_id", "path", "digit", vector_to_array("probability").alias("p")).toPandas()
    table = prediction_table(scored["image_id"], scored["path"], scored["digit"],
                             np.stack(scored["p"].to_numpy()) if count else np.zeros((0, 10)), pin.version)
    parquet, csv = io.BytesIO(), io.StringIO()
    table.to_parquet(parquet, index=False)
    table.to_csv(csv, index=False, float_format="%.6g")
    storage.put_bytes(layout.key(PREDICTIONS["parquet"]), parquet.getvalue(), PREDICTIONS["parquet"].media_type)
    storage.put_bytes(layout.key(PREDICTIONS["csv"]), csv.getvalue().encode(), PREDICTIONS["csv"].media_type)
    seconds = time.time() - started
    return ScoreBatchSummary(model_version=pin.version, images=len(table), partitions=partitions,
                             seconds=round(seconds, 2), images_per_second=round(len(table) / seconds, 1) if seconds else None)
