"""featurize: pooled CNN features for the sampled images, in batched pandas UDFs.

The model is built once per Python worker (``features.load_featurizer`` caches it, and
``spark.python.worker.reuse`` keeps the worker), never per row. Outputs ``train.parquet``
(image_id, label, view, features: view 0 is the image, 1..train_views reproducible distorted
copies) and ``eval.parquet`` (one row per image, features averaged over test_views views).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Iterator, Tuple

import pandas as pd

from ..catalog import FEATURES, SAMPLED_IMAGES
from ..contracts import FeaturizedSet, FeaturizeSummary
from ..features import FeaturizerSpec, featurize_batches, weights_sha256
from ..jobs import StepContext, StepFailed
from ..spark import task_count


def featurize_frame(frame, spec: FeaturizerSpec, partitions: int, views: int, seed: int):
    """Features of every image and of ``views`` distorted copies each; lazy, runs on the executors.

    A copy's distortion is drawn from ``(seed, image id, view)``, so re-runs are identical.
    """
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import ArrayType, FloatType

    @pandas_udf(ArrayType(FloatType()))
    def features(batches: Iterator[Tuple[pd.Series, pd.Series, pd.Series]]) -> Iterator[pd.Series]:
        yield from featurize_batches(batches, spec)

    copies = frame.withColumn("view", F.explode(F.sequence(F.lit(0), F.lit(views))))
    key = F.concat_ws(":", F.lit(str(seed)), F.col("image_id"))
    return copies.repartition(partitions).select(
        "image_id", "label", "view", features(F.col("content"), key, F.col("view")).alias("features")
    )


def run(context: StepContext) -> FeaturizeSummary:
    spark, settings = context.spark, context.settings
    context.require("sample")
    task_cpus = int(spark.conf.get("spark.task.cpus", "1"))
    spec = FeaturizerSpec.from_settings(settings, task_cpus)
    summary = {
        "backbone": spec.backbone,
        "image_size": spec.image_size,
        "layers": list(spec.layers) or ["last"],
        "weights": spec.weights,
        "weights_sha256": weights_sha256(spec.weights),
    }
    summary["train_views"], summary["test_views"] = settings.train_views, settings.test_views
    passes = {"train": (replace(spec, test_views=0), settings.train_views), "eval": (spec, 0)}
    for name, (name_spec, views) in passes.items():
        started = time.time()
        images = spark.read.parquet(context.s3a(SAMPLED_IMAGES[name]))
        expected = images.count() * (1 + views)
        # cores read after that first job: a cluster's executors register after the session
        # starts, and defaultParallelism counts only those registered
        partitions = task_count(expected * (1 + name_spec.test_views), spark.sparkContext.defaultParallelism,
                                settings.featurize_task_images)
        featurize_frame(images, name_spec, partitions, views, settings.seed).write.mode("overwrite").parquet(
            context.s3a(FEATURES[name])
        )
        written = spark.read.parquet(context.s3a(FEATURES[name]))
        rows = written.count()
        if rows != expected:  # whatever happened to the executors, a short or doubled output is never committed
            raise StepFailed(f"featurize wrote {rows} {name} rows, expected {expected}")
        dimension = len(written.select("features").first()["features"]) if rows else 0
        seconds = time.time() - started
        images_run = rows * (1 + name_spec.test_views)
        summary[name] = FeaturizedSet(rows=rows, partitions=partitions, dimension=dimension, seconds=round(seconds, 2),
                                      images_through_cnn=images_run,
                                      images_per_second=round(images_run / seconds, 1) if seconds else None)
    return FeaturizeSummary(**summary)
