"""The trained model as one Spark ML pipeline: image bytes in, digit out.

``ImageFeaturizer`` is the CNN featurizer as a pipeline stage, so that ``PipelineModel.load(uri)
.transform(images)`` in any PySpark session gives the digit without this workflow's steps. It runs
the featurize step's own Arrow UDF code (``features.featurize_batches``), so served features are
the features the model was trained on. Its Params are everything that defines those features; the
weights are named by file and sha256, never by a machine's path, and are found and checked where
the pipeline runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Tuple

import pyarrow as pa  # at module level: the Arrow UDF's type hints are resolved here
from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.feature import SQLTransformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from .config import Settings
from .features import (FeaturizerSpec, WeightsMismatch, WeightsNotFound, feature_layer_names, featurize_batches,
                       find_weights_file, intra_op_threads, keras_cache, weights_sha256)
from .spark import task_count
from .vocabulary import BACKBONES

RANDOM = "random"


class ImageFeaturizer(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """Encoded image bytes (``inputCol``) -> the CNN feature vector (``outputCol``, an MLlib Vector)."""

    backbone = Param(Params._dummy(), "backbone", "Keras backbone name", TypeConverters.toString)
    imageSize = Param(Params._dummy(), "imageSize", "side in pixels the images are resized to", TypeConverters.toInt)
    layers = Param(Params._dummy(), "layers", "pooled layers, each name or name:grid; ['last']: the output",
                   TypeConverters.toListString)
    cropToInk = Param(Params._dummy(), "cropToInk", "crop each image to its ink before resizing",
                      TypeConverters.toBoolean)
    testViews = Param(Params._dummy(), "testViews", "distorted views averaged with the image", TypeConverters.toInt)
    batchSize = Param(Params._dummy(), "batchSize", "images per network call", TypeConverters.toInt)
    weightsFile = Param(Params._dummy(), "weightsFile", "the weights file name, or 'random'", TypeConverters.toString)
    weightsSha256 = Param(Params._dummy(), "weightsSha256", "sha256 of the weights file ('' for random)",
                          TypeConverters.toString)
    viewKeyCol = Param(Params._dummy(), "viewKeyCol", "column seeding each image's distorted views; '': the image's "
                       "sha256, so its features depend on its bytes alone", TypeConverters.toString)
    viewCol = Param(Params._dummy(), "viewCol", "column numbering each row's distorted copy (0: the image itself); "
                    "'': 0", TypeConverters.toString)

    def __init__(self, *, inputCol: str = "content", outputCol: str = "features", backbone: str = "MobileNetV2",
                 imageSize: int = 128, layers: list[str] | None = None, cropToInk: bool = True, testViews: int = 0,
                 batchSize: int = 16, weightsFile: str = RANDOM, weightsSha256: str = "", viewKeyCol: str = "",
                 viewCol: str = ""):
        super().__init__()
        self._set(inputCol=inputCol, outputCol=outputCol, backbone=backbone, imageSize=imageSize,
                  layers=layers or ["last"], cropToInk=cropToInk, testViews=testViews, batchSize=batchSize,
                  weightsFile=weightsFile, weightsSha256=weightsSha256, viewKeyCol=viewKeyCol, viewCol=viewCol)

    @classmethod
    def from_spec(cls, spec: FeaturizerSpec, sha256: str | None, **columns) -> "ImageFeaturizer":
        """The stage computing ``spec``'s features, its weights identified by file name and ``sha256``."""
        if spec.weights == RANDOM:
            name, sha256 = RANDOM, ""
        elif not sha256:
            raise ValueError(f"the weights {spec.weights} have no recorded sha256: a pipeline names its weights by "
                             f"file and hash; put {BACKBONES[spec.backbone].weights_file} in the weights folder")
        else:
            name = Path(spec.weights).name
        return cls(backbone=spec.backbone, imageSize=spec.image_size, layers=list(spec.layers), cropToInk=spec.crop,
                   testViews=spec.test_views, batchSize=spec.batch_size, weightsFile=name, weightsSha256=sha256,
                   **columns)

    def spec(self, weights: str, intra_op_threads: int) -> FeaturizerSpec:
        backbone = self.getOrDefault(self.backbone)
        return FeaturizerSpec(
            backbone=backbone,
            image_size=self.getOrDefault(self.imageSize),
            layers=feature_layer_names(",".join(self.getOrDefault(self.layers)), BACKBONES[backbone]),
            weights=weights,
            batch_size=self.getOrDefault(self.batchSize),
            intra_op_threads=intra_op_threads,
            crop=self.getOrDefault(self.cropToInk),
            test_views=self.getOrDefault(self.testViews),
            weights_sha256=self.getOrDefault(self.weightsSha256) or None,
        )

    def _transform(self, dataset):
        from pyspark.ml.functions import array_to_vector

        column = self.getOutputCol()
        return self.feature_arrays(dataset).withColumn(column, array_to_vector(column))

    def feature_arrays(self, dataset):
        """``transform``'s features as the network gives them, float32 arrays: what the feature cache
        stores, without a round trip through the classifier's double vectors (for MobileNetV2 that
        round trip was 10-15% of featurizing)."""
        from pyspark.sql import functions as F
        from pyspark.sql.functions import arrow_udf
        from pyspark.sql.types import ArrayType, FloatType

        settings = Settings.from_env()
        weights = locate_weights(self.getOrDefault(self.weightsFile), self.getOrDefault(self.weightsSha256),
                                 settings.weights_dir)
        task_cpus = int(dataset.sparkSession.conf.get("spark.task.cpus", "1"))
        spec = self.spec(weights, intra_op_threads(settings.tf_intra_op_threads,
                                                   BACKBONES[self.getOrDefault(self.backbone)], task_cpus))

        @arrow_udf(ArrayType(FloatType()))
        def features(batches: Iterator[Tuple[pa.Array, pa.Array, pa.Array]]) -> Iterator[pa.Array]:
            yield from featurize_batches(batches, spec)

        content, key_col, view_col = (self.getOrDefault(p) for p in (self.inputCol, self.viewKeyCol, self.viewCol))
        # by default an image's views are seeded by its sha256: the same bytes, the same features
        key = F.col(key_col) if key_col else F.sha2(F.col(content), 256)
        arrays = features(F.col(content), key, F.col(view_col) if view_col else F.lit(0))
        return dataset.withColumn(self.getOutputCol(), arrays)


def locate_weights(name: str, sha256: str, weights_dir: str) -> str:
    """The local path of the weights file ``name``, checked against ``sha256``: in ``weights_dir``
    (NUMTAFLOW_WEIGHTS_DIR) or Keras's cache, where ``features.resolve_weights`` looks too."""
    if name == RANDOM:
        return RANDOM
    path = find_weights_file(name, weights_dir)
    if path is None:
        raise WeightsNotFound(f"the pipeline's weights {name} (sha256 {sha256}) are not in {weights_dir} or "
                              f"{keras_cache()}: put that file there or set NUMTAFLOW_WEIGHTS_DIR to its folder")
    found = weights_sha256(str(path))
    if found != sha256:
        raise WeightsMismatch(f"weights file {path} has sha256 {found}, but the pipeline was trained with {name} "
                              f"of sha256 {sha256}: use that file")
    return str(path)


def scoring_partitions(pipeline: PipelineModel, images: int, cores: int, per_task: int) -> int:
    """Tasks to score ``images`` with ``pipeline``, in whole waves of ``cores``: every image goes
    through the network once per view, at most about ``per_task`` of them per task."""
    views = 1 + pipeline.stages[0].getOrDefault("testViews")
    return task_count(images * views, cores, per_task)


def digit_pipeline(featurizer: ImageFeaturizer, classifier) -> PipelineModel:
    """Image bytes -> ``prediction``, ``probability`` and ``digit`` (the label, which is the digit itself)."""
    digit = SQLTransformer(statement="SELECT *, CAST(prediction AS INT) AS digit FROM __THIS__")
    return PipelineModel(stages=[featurizer, classifier, digit])
