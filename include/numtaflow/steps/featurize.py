"""featurize: pooled CNN features for the sampled images, in batched pandas UDFs.

The model is built once per Python worker (``features.load_featurizer`` caches it, and
``spark.python.worker.reuse`` keeps the worker), never per row. Outputs
``train.parquet`` and ``eval.parquet`` with (image_id, label, features).
"""

from __future__ import annotations

import time
from typing import Iterator

import pandas as pd

from ..features import FeaturizerSpec, featurize_batches, weights_sha256
from ..jobs import StepContext


def featurize_frame(frame, spec: FeaturizerSpec, partitions: int):
    """Add a ``features`` array column computed from ``content``; lazy, runs on the executors."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import ArrayType, FloatType

    @pandas_udf(ArrayType(FloatType()))
    def features(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        yield from featurize_batches(batches, spec)

    return frame.repartition(partitions).select("image_id", "label", features(F.col("content")).alias("features"))


def run(context: StepContext) -> dict:
    spark, settings = context.spark, context.settings
    context.storage.require_step(context.layout, "sample")
    task_cpus = int(spark.conf.get("spark.task.cpus", "1"))
    spec = FeaturizerSpec.from_settings(settings, task_cpus)
    partitions = max(1, spark.sparkContext.defaultParallelism)
    summary = {
        "backbone": spec.backbone,
        "image_size": spec.image_size,
        "layers": list(spec.layers) or ["last"],
        "weights": spec.weights,
        "weights_sha256": weights_sha256(spec.weights),
    }
    for name in ("train", "eval"):
        started = time.time()
        images = spark.read.parquet(context.s3a(f"{name}.parquet", step="sample"))
        featurize_frame(images, spec, partitions).write.mode("overwrite").parquet(context.s3a(f"{name}.parquet"))
        written = spark.read.parquet(context.s3a(f"{name}.parquet"))
        rows = written.count()
        dimension = len(written.select("features").first()["features"]) if rows else 0
        seconds = time.time() - started
        summary[name] = {"rows": rows, "dimension": dimension, "seconds": round(seconds, 2),
                         "images_per_second": round(rows / seconds, 1) if seconds else None}
    return summary
