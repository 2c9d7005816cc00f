"""Stratified, exactly-N-per-class sampling and splitting, reproducible by seed.

Rows are ordered within each class by a hash of ``(seed, image_id)``, so the choice depends
only on the data and the seed: not on partitioning, executor count or row order. The same
mechanism gives the exact per-class 80/20 train/test split.
"""

from __future__ import annotations

import hashlib

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from .vocabulary import DIGIT_LABELS


def with_class_rank(df: DataFrame, seed: int, label_col: str = "label", id_col: str = "image_id") -> DataFrame:
    """Add ``class_rank`` (1, 2, ...) and ``class_size`` per label, in seeded-hash order."""
    order_key = F.sha2(F.concat_ws("\u0001", F.lit(str(seed)), F.col(id_col).cast("string")), 256)
    by_class = Window.partitionBy(label_col).orderBy(order_key, F.col(id_col))
    return df.withColumn("class_rank", F.row_number().over(by_class)).withColumn(
        "class_size", F.count(F.lit(1)).over(Window.partitionBy(label_col))
    )


def distinct_content(df: DataFrame, hash_col: str = "content_sha256", id_col: str = "image_id") -> DataFrame:
    """One row per content: copies of the same bytes under several names (validation refuses
    copies with different labels) count once, as their first name."""
    first = Window.partitionBy(hash_col).orderBy(F.col(id_col))
    return df.withColumn("copy_rank", F.row_number().over(first)).where(F.col("copy_rank") == 1).drop("copy_rank")


def stratified_sample(df: DataFrame, per_class: int, seed: int, label_col: str = "label") -> DataFrame:
    """Exactly ``per_class`` rows of every label (validation guarantees enough rows)."""
    ranked = with_class_rank(df, seed, label_col)
    return ranked.where(F.col("class_rank") <= per_class).drop("class_rank", "class_size")


def stratified_split(df: DataFrame, train_fraction: float, seed: int, label_col: str = "label") -> DataFrame:
    """Add ``is_train``: per class, the first ``round(fraction * n)`` rows in seeded order, at least one
    and leaving at least one for the hold-out (2 per class at 0.8: 1 and 1, not 2 and none).

    With 50 images per class and 0.8 this is exactly 40 train / 10 test in every class,
    where a ``randomSplit`` would give a different count per class and per partitioning.
    """
    ranked = with_class_rank(df, seed, label_col)
    cutoff = F.greatest(F.lit(1), F.least(F.col("class_size") - 1,
                                          F.round(F.col("class_size") * F.lit(train_fraction))))
    return ranked.withColumn("is_train", F.col("class_rank") <= cutoff).drop("class_rank", "class_size")


def short_classes(per_class: dict[str, int], wanted: int) -> dict[str, int]:
    """The digits (labels) a drawn set has fewer than ``wanted`` images of, with their counts."""
    return {label: per_class.get(label, 0) for label in DIGIT_LABELS if per_class.get(label, 0) < wanted}


def ids_hash(image_ids: list[str]) -> str:
    """A fingerprint of a set of image ids (order-independent) for the lineage record."""
    digest = hashlib.sha256()
    for image_id in sorted(image_ids):
        digest.update(image_id.encode() + b"\n")
    return digest.hexdigest()
