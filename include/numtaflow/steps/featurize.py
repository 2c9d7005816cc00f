"""featurize: pooled CNN features for the sampled images, through the pipeline's own featurizer stage.

The stage (``ml.ImageFeaturizer``) runs a batched pandas UDF that builds the model once per Python
worker (``features.load_featurizer`` caches it, and ``spark.python.worker.reuse`` keeps the worker).
Outputs ``train.parquet`` (image_id, label, view, features: view 0 is the image, 1..train_views
reproducible distorted copies), ``eval.parquet`` (one row per image, features averaged over
test_views views) and ``featurizer/``: the evaluation pass's stage, which train puts in the
pipeline, so served features are computed exactly as the evaluated ones.
"""

from __future__ import annotations

import time

from ..catalog import FEATURES, FEATURIZER, SAMPLED_IMAGES
from ..contracts import FeaturizedSet, FeaturizeSummary
from ..features import FeaturizerSpec, weights_sha256
from ..jobs import StepContext, StepFailed
from ..ml import ImageFeaturizer
from ..spark import task_count


def training_copies(frame, stage: ImageFeaturizer, partitions: int, views: int, seed: int):
    """Features of every image and of ``views`` distorted copies each; lazy, runs on the executors.

    A copy's distortion is drawn from ``(seed, image id, view)``, so re-runs are identical.
    """
    from pyspark.sql import functions as F

    copies = frame.withColumn("view", F.explode(F.sequence(F.lit(0), F.lit(views))))
    copies = copies.withColumn("view_key", F.concat_ws(":", F.lit(str(seed)), F.col("image_id")))
    copier = stage.copy({stage.testViews: 0, stage.viewKeyCol: "view_key", stage.viewCol: "view"})
    return stored(copier.transform(copies.repartition(partitions)), F.col("view"))


def evaluation_features(frame, stage: ImageFeaturizer, partitions: int):
    """Features of each image as the saved pipeline computes them (test views averaged)."""
    from pyspark.sql import functions as F

    return stored(stage.transform(frame.repartition(partitions)), F.lit(0))


def stored(featurized, view):
    """The stored form: the stage's float32 vector as a float array (what every reader of the
    features, old runs' included, expects)."""
    from pyspark.ml.functions import vector_to_array

    return featurized.select("image_id", "label", view.alias("view"),
                             vector_to_array("features", "float32").alias("features"))


def run(context: StepContext) -> FeaturizeSummary:
    spark, settings = context.spark, context.settings
    context.require("sample")
    task_cpus = int(spark.conf.get("spark.task.cpus", "1"))
    spec = FeaturizerSpec.from_settings(settings, task_cpus)
    sha256 = weights_sha256(spec.weights)
    stage = ImageFeaturizer.from_spec(spec, sha256)
    stage.write().overwrite().save(context.s3a(FEATURIZER))
    summary = {
        "backbone": spec.backbone,
        "image_size": spec.image_size,
        "layers": list(spec.layers) or ["last"],
        "weights": spec.weights,
        "weights_sha256": sha256,
    }
    summary["train_views"], summary["test_views"] = settings.train_views, settings.test_views
    for name, views, views_per_row in (("train", settings.train_views, 1), ("eval", 0, 1 + settings.test_views)):
        started = time.time()
        images = spark.read.parquet(context.s3a(SAMPLED_IMAGES[name]))
        expected = images.count() * (1 + views)
        # cores read after that first job: a cluster's executors register after the session
        # starts, and defaultParallelism counts only those registered
        partitions = task_count(expected * views_per_row, spark.sparkContext.defaultParallelism,
                                settings.featurize_task_images)
        features = (training_copies(images, stage, partitions, views, settings.seed) if name == "train"
                    else evaluation_features(images, stage, partitions))
        features.write.mode("overwrite").parquet(context.s3a(FEATURES[name]))
        written = spark.read.parquet(context.s3a(FEATURES[name]))
        rows = written.count()
        if rows != expected:  # whatever happened to the executors, a short or doubled output is never committed
            raise StepFailed(f"featurize wrote {rows} {name} rows, expected {expected}")
        dimension = len(written.select("features").first()["features"]) if rows else 0
        seconds = time.time() - started
        images_run = rows * views_per_row
        summary[name] = FeaturizedSet(rows=rows, partitions=partitions, dimension=dimension, seconds=round(seconds, 2),
                                      images_through_cnn=images_run,
                                      images_per_second=round(images_run / seconds, 1) if seconds else None)
    return FeaturizeSummary(**summary)
