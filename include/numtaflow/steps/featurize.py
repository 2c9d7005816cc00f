"""featurize: pooled CNN features for the sampled images, through the pipeline's own featurizer stage.

The stage (``ml.ImageFeaturizer``) runs a batched Arrow UDF that builds the model once per Python
worker (``features.load_featurizer`` caches it, and ``spark.python.worker.reuse`` keeps the worker).
Only features not in the feature cache (``feature_cache.py``: per image bytes, featurizer and view)
go through the network; the others are read back. Outputs ``train.parquet`` (image_id, label, view,
features: view 0 is the image, 1..train_views reproducible distorted copies), ``eval.parquet`` (one
row per image, features averaged over test_views views) and ``featurizer/``: the evaluation pass's
stage, which train puts in the pipeline, so served features are computed exactly as the evaluated ones.
"""

from __future__ import annotations

import time

from .. import feature_cache
from ..catalog import FEATURES, FEATURIZER, SAMPLED_IMAGES, cache_part
from ..config import GATE_SETTINGS, TRAINING_SETTINGS
from ..contracts import FeaturizedSet, FeaturizeSummary
from ..features import FeaturizerSpec, check_layers, resolve_weights, weights_sha256
from ..jobs import Reuse, StepContext, StepIncomplete, log
from ..ml import ImageFeaturizer
from ..spark import task_count

COLUMNS = ["image_id", "label", "view", "features"]


def training_copies(frame, seed: int, views: int):
    """Each image and ``views`` distorted copies, whose distortion is drawn from ``(seed, image id,
    view)``, so re-runs are identical."""
    from pyspark.sql import functions as F

    copies = frame.withColumn("view", F.explode(F.sequence(F.lit(0), F.lit(views))))
    return copies.withColumn("view_key", F.concat_ws(":", F.lit(str(seed)), F.col("image_id")))


def evaluation_images(frame):
    """Each image once, its test views seeded by its own bytes, as the saved pipeline computes them."""
    from pyspark.sql import functions as F

    return frame.withColumn("view", F.lit(0)).withColumn("view_key", F.lit(""))


def featurized(stage: ImageFeaturizer, rows, partitions: int, copies: bool):
    """The stage's features of ``rows`` (lazy; runs on the executors) beside their other columns but the
    bytes, as float arrays (what every reader of the features, old runs' included, expects)."""
    if copies:
        stage = stage.copy({stage.testViews: 0, stage.viewKeyCol: "view_key", stage.viewCol: "view"})
    return stage.feature_arrays(rows.repartition(partitions)).drop("content")


def in_canonical_order(features):
    """The output columns, hash-partitioned by image and sorted by image and view: the files, and so
    train's input and the model fitted on it, depend only on which rows there are, never on which of
    them came from the cache or on the order a join returned them in."""
    return features.select(*COLUMNS).repartition("image_id").sortWithinPartitions("image_id", "view")


def with_content_hash(rows):
    from pyspark.sql import functions as F

    return rows.withColumn("content_sha256", F.sha2("content", 256))


def run_pass(context: StepContext, name: str, stage: ImageFeaturizer, rows, views_per_row: int,
             key: str | None, known) -> FeaturizedSet:
    """Features of ``rows`` into ``FEATURES[name]``: those in ``known`` (the cache's entries of this
    step's rows) taken from it, the others computed and added to the cache."""
    from pyspark.sql import functions as F

    spark, storage = context.spark, context.storage
    started = time.time()
    expected = rows.count()
    missing = rows if known is None else rows.join(F.broadcast(known.select(*feature_cache.KEY_COLUMNS)),
                                                    on=feature_cache.KEY_COLUMNS, how="left_anti")
    to_compute = missing.count()
    # cores read after that first job: a cluster's executors register after the session
    # starts, and defaultParallelism counts only those registered
    partitions = task_count(to_compute * views_per_row, spark.sparkContext.defaultParallelism,
                            context.settings.featurize_task_images)
    computed = featurized(stage, missing, partitions, copies=name == "train")
    if key is None:
        in_canonical_order(computed).write.mode("overwrite").parquet(context.s3a(FEATURES[name]))
    else:
        part = cache_part(context.run_id, name)
        new_part = feature_cache.add(storage, key, part, computed) if to_compute else None
        added = new_part.rows if new_part else 0
        if added != to_compute:  # a short or doubled part is never committed
            raise StepIncomplete(f"featurize computed {added} {name} features, expected {to_compute}")
        found = known
        if new_part:
            context.commit_with_step(new_part)
            new = feature_cache.part_entries(spark, storage, key, part)
            found = new if found is None else found.unionByName(new)
        # the rows without their bytes are small: broadcast them, so the join shuffles no feature arrays
        # (the canonical order below shuffles the step's own rows once)
        features = F.broadcast(rows.drop("content")).join(found, on=feature_cache.KEY_COLUMNS)
        in_canonical_order(features).write.mode("overwrite").parquet(context.s3a(FEATURES[name]))
    written = spark.read.parquet(context.s3a(FEATURES[name]))
    rows_written = written.count()
    if rows_written != expected:  # whatever happened to the executors, a short or doubled output is never committed
        raise StepIncomplete(f"featurize wrote {rows_written} {name} rows, expected {expected}")
    dimension = len(written.select("features").first()["features"]) if rows_written else 0
    seconds = time.time() - started
    log.info("featurize %s: %d rows, %d read from the feature cache, %d computed (%d images through the network) "
             "in %.1f s", name, rows_written, expected - to_compute, to_compute, to_compute * views_per_row, seconds)
    through_cnn = to_compute * views_per_row
    return FeaturizedSet(rows=rows_written, partitions=partitions, dimension=dimension, seconds=round(seconds, 2),
                         images_through_cnn=through_cnn, reused=expected - to_compute,
                         images_per_second=round(through_cnn / seconds, 1) if seconds and through_cnn else None)


def weights_identity(context: StepContext) -> str | None:
    """The sha256 of the weights file this run loads: where it is found is a platform setting, so a file
    replaced there is seen here, not through the run settings."""
    return weights_sha256(resolve_weights(context.settings))


REUSE = Reuse(after=("sample",), identify=weights_identity, ignores=TRAINING_SETTINGS + GATE_SETTINGS)


def run(context: StepContext) -> FeaturizeSummary:
    spark, settings = context.spark, context.settings
    context.require("sample")
    task_cpus = int(spark.conf.get("spark.task.cpus", "1"))
    spec = FeaturizerSpec.from_settings(settings, task_cpus)
    check_layers(spec)
    sha256 = weights_sha256(spec.weights)
    stage = ImageFeaturizer.from_spec(spec, sha256)
    stage.write().overwrite().save(context.s3a(FEATURIZER))
    images = {name: spark.read.parquet(context.s3a(SAMPLED_IMAGES[name])) for name in ("train", "eval")}
    rows = {"train": with_content_hash(training_copies(images["train"], settings.seed, settings.train_views)),
            "eval": with_content_hash(evaluation_images(images["eval"]))}
    key = feature_cache.stage_key(stage) if settings.feature_cache else None
    keys = [frame.select(*feature_cache.KEY_COLUMNS) for frame in rows.values()]
    known = feature_cache.entries_for(spark, context.storage, key, keys[0].unionByName(keys[1]))  # one scan, both passes
    return FeaturizeSummary(
        backbone=spec.backbone, image_size=spec.image_size, layers=list(spec.layers) or ["last"], weights=spec.weights,
        weights_sha256=sha256, code=feature_cache.code_version(), train_views=settings.train_views,
        test_views=settings.test_views,
        train=run_pass(context, "train", stage, rows["train"], 1, key, known),
        eval=run_pass(context, "eval", stage, rows["eval"], 1 + settings.test_views, key, known),
    )
