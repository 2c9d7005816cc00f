import pytest

from numtaflow import model
from numtaflow.config import Settings
from numtaflow.model import CV_FOLDS
from numtaflow.steps.train import split_counts, split_sample, training_partitions, training_rows
from numtaflow.vocabulary import LR_CROSS_VALIDATED


@pytest.fixture(scope="module")
def features(spark):
    """Ten images per class, each with two distorted copies; the label is readable from the features."""
    rows = [(f"img{label}_{index}", label, view, [float(label == d) + 0.01 * index + 0.001 * view for d in range(10)])
            for label in range(10) for index in range(10) for view in range(3)]
    return spark.createDataFrame(rows, "image_id string, label int, view int, features array<float>")


def test_copies_follow_their_image_into_the_split_and_its_fold(features):
    settings = Settings(train_fraction=0.8, split_seed=42)
    split = split_sample(features, settings)
    per_image = split.groupBy("image_id").agg({"is_train": "collect_set"}).collect()
    assert all(len(row[1]) == 1 for row in per_image)  # an image and its copies: one side only
    assert split.where("is_train").count() == 8 * 10 * 3
    assert split_counts(split) == {"n_train": 80, "n_train_rows": 240, "n_holdout": 20}
    train = training_rows(split, settings, partitions=2)
    folds = train.groupBy("image_id").agg({"fold": "collect_set"}).collect()
    assert len(folds) == 80 and all(len(row[1]) == 1 for row in folds)  # copies share their image's fold
    assert {r["fold"] for r in train.select("fold").distinct().collect()} == set(range(CV_FOLDS))


def test_training_rows_fill_every_partition_in_a_fixed_order(features):
    settings = Settings(train_fraction=0.8, split_seed=42)
    split = split_sample(features, settings)
    parts = training_rows(split, settings, partitions=2).rdd.glom().map(lambda rows: [r["image_id"] for r in rows]).collect()
    assert len(parts) == 2 and all(0.35 < len(ids) / 240 < 0.65 for ids in parts)  # no core waits on the other
    assert all(ids == sorted(ids) for ids in parts)  # each image's rows together, in image order
    again = training_rows(split_sample(features, settings), settings, partitions=2).rdd.glom().map(len).collect()
    assert again == [len(ids) for ids in parts]


def test_cross_validation_reports_every_point_and_keeps_the_best(features, monkeypatch):
    settings = Settings(train_fraction=0.8, split_seed=42)
    train = training_rows(split_sample(features, settings), settings, partitions=2)
    monkeypatch.setattr(model, "CV_GRID", {"max_iter": [1, 50], "reg_param": [0.01], "elastic_net_param": [0.0]})
    fitted, params, table = model.fit(train, LR_CROSS_VALIDATED, seed=42)
    assert [(row["max_iter"], row["reg_param"]) for row in table] == [(1, 0.01), (50, 0.01)]
    best = max(table, key=lambda row: row["cv_accuracy"])
    assert best["cv_accuracy"] > 0.9
    assert fitted.getMaxIter() == best["max_iter"]  # the first of equals, as CrossValidator keeps it
    assert params == {"preset": LR_CROSS_VALIDATED, "max_iter": best["max_iter"], "reg_param": 0.01,
                      "elastic_net_param": 0.0}


def test_training_partitions_bound_the_cached_doubles_per_partition():
    assert training_partitions(6_500, 7_744, cores=2) == 4  # the default sample (500 × 13 views): 403 MB of doubles
    assert training_partitions(100, 10, cores=2) == 2  # never fewer than one per core
    partitions = training_partitions(44_000, 7_744, cores=2)  # all of NumtaDB: 2.7 GB
    assert partitions % 2 == 0 and 44_000 * 7_744 * 8 / partitions <= 128 << 20
