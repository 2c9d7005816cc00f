"""The saved pipeline serves digits in a fresh spark-submit driver that knows only pyspark: the
featurizer stage is found by its class name, and the weights by file name and sha256."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from numtaflow.config import Settings
from numtaflow.features import FeaturizerSpec
from numtaflow.ml import ImageFeaturizer, digit_pipeline
from numtaflow.model import make_estimator
from numtaflow.spark import submit_command
from numtaflow.vocabulary import BACKBONES, LR_PRESETS
from tests.conftest import ROOT, make_numtadb

pytestmark = pytest.mark.integration
SERVE = '''"""Serve a saved pipeline: its URI and an image glob in, JSON of digits and probabilities out."""
import json
import sys

from pyspark.ml import PipelineModel
from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
images = spark.read.format("binaryFile").load(sys.argv[2])
rows = PipelineModel.load(sys.argv[1]).transform(images).select("path", "digit", "probability").collect()
print(json.dumps({r["path"].rsplit("/", 1)[-1]: [r["digit"], r["probability"].toArray().tolist()] for r in rows}))
'''


def serve(tmp_path: Path, pipeline: Path, images: str, env: dict | None = None):
    script = tmp_path / "serve.py"
    script.write_text(SERVE)
    settings = Settings.from_env({**os.environ, "NUMTAFLOW_SPARK_MASTER": "local[1]"})
    command = submit_command(settings, str(script), [pipeline.as_uri(), images])
    return subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


def served(result) -> dict:
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])


@pytest.fixture(scope="module")
def saved(spark, tmp_path_factory):
    """A small pipeline (random weights, 32 px) fitted on 20 images, and its in-process predictions."""
    from pyspark.sql import functions as F

    root = tmp_path_factory.mktemp("pipeline")
    folder = make_numtadb(root / "training-a", 2)
    labels = pd.read_csv(root / "training-a.csv")[["filename", "digit"]].rename(columns={"digit": "label"})
    images = spark.read.format("binaryFile").load(str(folder))
    images = images.withColumn("filename", F.element_at(F.split("path", "/"), -1))
    labelled = images.join(spark.createDataFrame(labels), on="filename")
    spec = FeaturizerSpec.from_settings(Settings(weights="random", image_size=32, feature_layers="last", test_views=0))
    featurizer = ImageFeaturizer.from_spec(spec, None)
    classifier = make_estimator(LR_PRESETS["study"]).fit(featurizer.transform(labelled))
    pipeline = digit_pipeline(featurizer, classifier)
    pipeline.write().overwrite().save(str(root / "model"))
    rows = pipeline.transform(images).select("filename", "digit", "probability").collect()
    expected = {r["filename"]: [r["digit"], r["probability"].toArray().tolist()] for r in rows}
    return root, folder, pipeline, expected


def test_a_fresh_driver_predicts_what_the_training_session_predicts(saved, tmp_path):
    root, folder, _, expected = saved
    got = served(serve(tmp_path, root / "model", str(folder / "*.png")))
    assert sorted(got) == sorted(expected) and len(got) == 20
    for name, (digit, probability) in expected.items():
        assert got[name][0] == digit, name
        assert got[name][1] == pytest.approx(probability, abs=1e-5), name


def test_a_pipeline_refuses_weights_other_than_its_own(saved, tmp_path):
    root, folder, pipeline, _ = saved
    from pyspark.ml import PipelineModel

    name, sha256 = BACKBONES["MobileNetV2"].weights_file, "ab" * 32
    featurizer = pipeline.stages[0]
    other = featurizer.copy({featurizer.weightsFile: name, featurizer.weightsSha256: sha256})
    PipelineModel(stages=[other, *pipeline.stages[1:]]).write().overwrite().save(str(tmp_path / "model"))
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / name).write_bytes(b"other weights")
    result = serve(tmp_path, tmp_path / "model", str(folder / "*.png"), {"NUMTAFLOW_WEIGHTS_DIR": str(tmp_path / "weights")})
    output = result.stdout + result.stderr  # spark-submit prints the driver's traceback on stdout
    assert result.returncode != 0
    assert f"WeightsMismatch: weights file {tmp_path / 'weights' / name} has sha256" in output
    assert f"trained with {name} of sha256 {sha256}" in output
