"""train: exact per-class 80/20 split of the sample (seed 42), logistic regression on the 80%.

The split is made on the original images; a training image's distorted copies go with it,
and the 20% hold-out holds originals only. Outputs ``model/`` (MLlib), ``pipeline/`` (the same
model behind the featurizer: image bytes in, digit out), ``holdout.parquet`` (for evaluate) and
``params.json``.
"""

from __future__ import annotations

from pyspark.sql import functions as F

from ..catalog import FEATURES, FEATURIZER, HOLDOUT, MODEL, PIPELINE, TRAIN_PARAMS
from ..config import GATE_SETTINGS
from ..contracts import TrainSummary
from ..jobs import Reuse, StepContext
from ..ml import ImageFeaturizer, digit_pipeline
from ..model import CV_FOLDS, fit, with_vector
from ..sampling import stratified_split
from ..spark import task_count


# MLlib caches its training rows as dense doubles, one block list per partition: about this much
# per partition keeps all 44,000 NumtaDB images within a 4 GB driver (one 1 GB partition per core
# ran out of heap)
TRAINING_PARTITION_BYTES = 128 << 20


def split_sample(features, settings):
    """Every feature row with ``is_train``, from the exact per-class split of the original images
    (an image's distorted copies go with it).

    Only the assignment (image id, side) is cached: it is small, and ranking every image
    again for each use would cost a shuffle. The features are read again where used rather
    than cached beside MLlib's own copy of them.
    """
    originals = features.where(F.col("view") == 0).select("image_id", "label")
    assignment = stratified_split(originals, settings.train_fraction, settings.split_seed).select("image_id", "is_train")
    return features.join(F.broadcast(assignment.cache()), on="image_id")


def split_counts(split) -> dict[str, int]:
    """Original training images, training rows (with their distorted copies) and hold-out images,
    counted in one pass over the split."""
    counts = {(row["is_train"], row["original"]): row["count"]
              for row in split.groupBy("is_train", (F.col("view") == 0).alias("original")).count().collect()}
    return {"n_train": counts.get((True, True), 0),
            "n_train_rows": counts.get((True, True), 0) + counts.get((True, False), 0),
            "n_holdout": counts.get((False, True), 0)}


def training_partitions(rows: int, dimension: int, cores: int) -> int:
    """As few partitions as keep each under ``TRAINING_PARTITION_BYTES`` of doubles, in whole
    waves of ``cores``: every optimizer iteration is a Spark job over all of them."""
    return task_count(rows * dimension * 8, cores, TRAINING_PARTITION_BYTES)


def training_rows(split, settings, partitions: int):
    """The training rows as MLlib input, with a cross-validation ``fold`` per original image.

    Hashed by image into ``partitions`` of near-equal size and sorted, so the optimizer's passes
    keep every core busy (merging the feature files' uneven partitions left one core idle for a
    quarter of the fit) and sum the rows in an order fixed by the rows and ``partitions``. That
    count follows the cores (``training_partitions``): the same rows on another number of cores may
    give a model that differs in its last digits, and so another version.
    """
    fold = F.pmod(F.xxhash64(F.lit(settings.split_seed), "image_id"), F.lit(CV_FOLDS)).cast("int")
    rows = (split.where("is_train").repartition(partitions, "image_id").sortWithinPartitions("image_id", "view")
            .select("image_id", "label", "features", fold.alias("fold")))
    return with_vector(rows)


REUSE = Reuse(after=("featurize",), ignores=GATE_SETTINGS)


def run(context: StepContext) -> TrainSummary:
    spark, settings = context.spark, context.settings
    featurized = context.require("featurize").summary.train
    features = spark.read.parquet(context.s3a(FEATURES["train"]))
    split = split_sample(features, settings)
    partitions = training_partitions(featurized.rows, featurized.dimension, spark.sparkContext.defaultParallelism)
    train = training_rows(split, settings, partitions)
    model, params, cv_table = fit(train, settings.lr_preset, settings.split_seed)
    model.write().overwrite().save(context.s3a(MODEL))
    featurizer = ImageFeaturizer.load(context.s3a(FEATURIZER))  # the stage that computed the evaluated features
    digit_pipeline(featurizer, model).write().overwrite().save(context.s3a(PIPELINE))
    holdout = split.where(~F.col("is_train") & (F.col("view") == 0)).select("image_id", "label", "features")
    holdout.write.mode("overwrite").parquet(context.s3a(HOLDOUT))
    summary = TrainSummary(
        params=params,
        cv=cv_table,
        **split_counts(split),
        training_accuracy=round(float(model.summary.accuracy), 4) if model.hasSummary else None,
    )
    context.storage.put_json(context.layout.key(TRAIN_PARAMS), summary.model_dump())
    return summary
