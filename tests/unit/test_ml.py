"""The featurizer pipeline stage: its Params survive save and load, it computes the featurize
step's features, and it refuses weights other than those it was trained with."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
from pyspark.ml import PipelineModel

from numtaflow import features as features_module
from numtaflow.config import Settings
from numtaflow.features import FeaturizerSpec, featurize_contents
from numtaflow.ml import ImageFeaturizer, WeightsMismatch, scoring_partitions
from numtaflow.vocabulary import BACKBONES
from tests.conftest import digit_png

SPEC = FeaturizerSpec.from_settings(Settings(weights="random", image_size=32, feature_layers="block_13_expand_relu:2",
                                             udf_batch_size=3, test_views=1))


def test_save_and_load_keep_every_param(spark, tmp_path):
    stage = ImageFeaturizer.from_spec(SPEC, None)
    stage.write().overwrite().save(str(tmp_path / "stage"))
    loaded = ImageFeaturizer.load(str(tmp_path / "stage"))
    assert loaded.uid == stage.uid
    params = lambda s: {p.name: s.getOrDefault(p) for p in s.params}  # noqa: E731
    assert params(loaded) == params(stage)
    assert params(loaded)["layers"] == ["block_13_expand_relu:2"] and params(loaded)["weightsFile"] == "random"
    assert loaded.spec("random", 1) == SPEC


def test_scoring_spreads_every_view_over_whole_waves_of_cores():
    pipeline = PipelineModel(stages=[ImageFeaturizer.from_spec(SPEC, None)])  # one test view: two images per image
    assert scoring_partitions(pipeline, 200, cores=2, per_task=2000) == 2  # a canary: one task per core
    assert scoring_partitions(pipeline, 5000, cores=2, per_task=2000) == 6  # 10,000 through it: three waves


def test_transform_gives_the_featurize_steps_vectors(spark):
    contents = [digit_png(label, seed=label) for label in range(5)]
    frame = spark.createDataFrame([(c,) for c in contents], "content binary")
    vectors = ImageFeaturizer.from_spec(SPEC, None).transform(frame).select("features").collect()
    features_module._MODEL_CACHE.clear()  # this process builds its random network as the workers build theirs
    # an image's test view is seeded by its sha256, as featurize's evaluation pass seeds it
    expected = featurize_contents(contents, SPEC, keys=[hashlib.sha256(c).hexdigest() for c in contents])
    got = np.array([row["features"].toArray() for row in vectors])
    assert got.shape == expected.shape == (5, 4 * 576)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_the_stored_arrays_are_the_served_vectors(spark):
    """featurize stores the network's float32 arrays; the pipeline hands the classifier the same numbers."""
    from pyspark.sql.types import ArrayType, FloatType

    frame = spark.createDataFrame([(digit_png(label, seed=label),) for label in range(4)], "content binary")
    stage = ImageFeaturizer.from_spec(SPEC, None)
    arrays = stage.feature_arrays(frame)
    assert arrays.schema["features"].dataType == ArrayType(FloatType())
    stored = np.array([row["features"] for row in arrays.collect()], dtype=np.float32)
    served = np.array([row["features"].toArray() for row in stage.transform(frame).collect()])
    assert stored.shape == served.shape == (4, 4 * 576)
    np.testing.assert_array_equal(stored.astype(np.float64), served)


def test_other_weights_are_refused_naming_the_file_and_hash(spark, tmp_path, monkeypatch):
    name = BACKBONES["MobileNetV2"].weights_file
    (tmp_path / name).write_bytes(b"other weights")
    monkeypatch.setenv("NUMTAFLOW_WEIGHTS_DIR", str(tmp_path))
    expected = "ab" * 32
    stage = ImageFeaturizer.from_spec(replace(SPEC, weights=str(tmp_path / name)), expected)
    assert stage.getOrDefault(stage.weightsFile) == name  # the name, never the machine's path
    frame = spark.createDataFrame([(digit_png(1),)], "content binary")
    with pytest.raises(WeightsMismatch, match=f"{name} of sha256 {expected}"):
        stage.transform(frame)
    (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"{name} \\(sha256 {expected}\\)"):
        stage.transform(frame)


def test_weights_without_a_hash_cannot_make_a_stage():
    with pytest.raises(ValueError, match="no recorded sha256"):
        ImageFeaturizer.from_spec(replace(SPEC, weights="imagenet"), None)
