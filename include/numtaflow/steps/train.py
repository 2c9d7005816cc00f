"""train: exact per-class 80/20 split of the sample (seed 42), logistic regression on the 80%.

Outputs ``model/`` (MLlib), ``holdout.parquet`` (the 20%, for evaluate) and ``params.json``.
"""

from __future__ import annotations

from pyspark.sql import functions as F

from ..jobs import StepContext
from ..model import fit, with_vector
from ..sampling import stratified_split


def run(context: StepContext) -> dict:
    spark, settings = context.spark, context.settings
    context.storage.require_step(context.layout, "featurize")
    features = spark.read.parquet(context.s3a("train.parquet", step="featurize"))
    split = stratified_split(features, settings.train_fraction, settings.split_seed).cache()
    # few partitions: every optimizer iteration is a Spark job over all of them
    train = with_vector(split.where("is_train").drop("is_train")).coalesce(spark.sparkContext.defaultParallelism)
    model, params, cv_table = fit(train, settings.lr_preset, settings.split_seed)
    model.write().overwrite().save(context.s3a("model"))
    split.where(~F.col("is_train")).drop("is_train").write.mode("overwrite").parquet(context.s3a("holdout.parquet"))
    summary = {
        "params": params,
        "cv": cv_table,
        "n_train": split.where("is_train").count(),
        "n_holdout": split.where(~F.col("is_train")).count(),
        "training_accuracy": round(float(model.summary.accuracy), 4) if model.hasSummary else None,
    }
    context.storage.put_json(context.layout.key("train", "params.json"), summary)
    split.unpersist()
    return summary
