"""Pretrained Keras backbones as frozen feature extractors, run in batches inside Spark.

Each backbone has its native input size, its own ``preprocess_input`` and the file name
Keras caches its ImageNet (no-top) weights under. Weights are loaded from
``settings.weights_dir`` (or Keras's cache) when the file is there; otherwise Keras downloads that
very file into its cache only if ``allow_weight_download`` is set, and else the error names it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .images import prepare_image, view_rng
from .vocabulary import BACKBONES, Backbone, eval_view_id


RANDOM_WEIGHTS_SEED = 0  # "random" weights (tests) are drawn from this seed


class WeightsNotFound(FileNotFoundError):
    """The backbone's ImageNet weights are not available offline."""


class WeightsMismatch(ValueError):
    """The weights file found is not the one the pipeline was trained with."""


@dataclass(frozen=True)
class FeaturizerSpec:
    """Everything a Python worker needs to build the same feature extractor as the driver."""

    backbone: str
    image_size: int
    layers: tuple[str, ...]  # empty: the backbone's last layer
    weights: str  # a weights file path, or "random" (tests)
    batch_size: int
    intra_op_threads: int
    crop: bool = True
    test_views: int = 0  # distorted views averaged with the original (test-time augmentation)
    weights_sha256: str | None = None  # what ``weights`` must hash to where the network is built

    @property
    def model_key(self) -> tuple:
        """What defines the network: specs differing only in batching or views share one model."""
        return (self.backbone, self.image_size, self.layers, self.weights, self.intra_op_threads)

    @classmethod
    def from_settings(cls, settings, task_cpus: int = 1) -> "FeaturizerSpec":
        backbone = BACKBONES[settings.backbone]
        layers = feature_layer_names(settings.feature_layers, backbone)
        return cls(
            backbone=backbone.name,
            image_size=settings.image_size or backbone.default_size,
            layers=layers,
            weights=resolve_weights(settings),
            batch_size=settings.udf_batch_size,
            intra_op_threads=intra_op_threads(settings.tf_intra_op_threads, backbone, task_cpus),
            crop=settings.crop_to_ink,
            test_views=settings.test_views,
        )


def feature_layer_names(setting: str, backbone: Backbone) -> tuple[str, ...]:
    """``auto``: the backbone's recommended layers; ``last``: its output; else the named layers
    (each ``name`` or ``name:grid``, see ``layer_grid``)."""
    setting = setting.strip()
    if setting == "auto":
        return backbone.recommended_layers
    if setting in ("", "last"):
        return ()
    return tuple(name.strip() for name in setting.split(",") if name.strip())


def check_layers(spec: "FeaturizerSpec") -> None:
    """Refuse layer names the backbone does not have before any task starts: the network is built here
    without weights (seconds), so the error is the setting's and the job is not retried; on the
    executors each task would fail, and be retried to no avail. The recommended layers need no check."""
    if not spec.layers or spec.layers == BACKBONES[spec.backbone].recommended_layers:
        return
    import keras

    constructor = getattr(keras.applications, spec.backbone)
    names = [layer.name for layer in constructor(include_top=False, weights=None,
                                                 input_shape=(spec.image_size, spec.image_size, 3)).layers]
    unknown = [name for name, _ in map(layer_grid, spec.layers) if name not in names]
    if unknown:
        raise ValueError(f"feature_layers: {spec.backbone} has no layer {', '.join(map(repr, unknown))} (its last "
                         f"ones: {', '.join(names[-3:])}; keras.applications.{spec.backbone}().summary() lists all)")


def layer_grid(entry: str) -> tuple[str, int]:
    """``name`` averages a layer's whole map into one vector; ``name:g`` averages each cell of a
    g x g grid over it and concatenates them, so the features keep where in the image the ink is
    (which stroke is on top tells several Bengali digits apart)."""
    name, _, grid = entry.partition(":")
    return name, int(grid) if grid else 1


def keras_cache() -> Path:
    """Where Keras keeps the weights it downloaded."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def find_weights_file(name: str, weights_dir: str) -> Path | None:
    """The weights file ``name`` in ``weights_dir`` (NUMTAFLOW_WEIGHTS_DIR), else in Keras's cache."""
    return next((p for p in (Path(weights_dir) / name, keras_cache() / name) if p.is_file()), None)


def resolve_weights(settings) -> str:
    """The weights file to load (downloaded first where that is allowed), or "random"."""
    if settings.weights == "random":
        return "random"
    backbone = BACKBONES[settings.backbone]
    path = find_weights_file(backbone.weights_file, settings.weights_dir)
    if path:
        return str(path)
    if settings.allow_weight_download:
        return str(download_weights(backbone))
    raise WeightsNotFound(
        f"ImageNet weights for {backbone.name} not found: looked for {backbone.weights_file} in "
        f"{settings.weights_dir} and {keras_cache()}. Put the file there, set "
        "NUMTAFLOW_WEIGHTS_DIR to its folder, or set NUMTAFLOW_ALLOW_WEIGHT_DOWNLOAD=true where "
        "Keras can reach the internet."
    )


def download_weights(backbone: Backbone) -> Path:
    """Keras's own download of the backbone's ImageNet (no-top) weights into its cache, the network built
    at its native size so that the file is the one ``weights_file`` names (MobileNetV2's depends on the
    size: built at 128 px, Keras would fetch another file, whose features differ)."""
    import keras

    size = backbone.native_size
    getattr(keras.applications, backbone.name)(include_top=False, weights="imagenet", input_shape=(size, size, 3))
    path = keras_cache() / backbone.weights_file
    if not path.is_file():
        raise WeightsNotFound(f"Keras downloaded the ImageNet weights of {backbone.name}, but not as {path}")
    return path


def weights_sha256(weights: str) -> str | None:
    """The file's sha256 (None for ``random``), hashed once per process and file state."""
    path = Path(weights)
    if not path.is_file():
        return None
    state = path.stat()
    return _file_sha256(str(path.resolve()), state.st_size, state.st_mtime_ns)


@functools.cache
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def intra_op_threads(setting: int, backbone: Backbone, task_cpus: int) -> int:
    """TensorFlow threads of one Python worker: the ``tf_intra_op_threads`` setting, else the task's
    cores times the backbone's threads per core (its Spark cores x TensorFlow threads shape)."""
    return setting or task_cpus * backbone.tf_threads_per_core


_MODEL_CACHE: dict[tuple, object] = {}


def load_featurizer(spec: FeaturizerSpec):
    """Build (once per Python process) a graph mapping a batch of images to pooled features;
    returns it with the backbone's ``preprocess_input``."""
    if spec.model_key in _MODEL_CACHE:
        return _MODEL_CACHE[spec.model_key]
    found = weights_sha256(spec.weights) if spec.weights_sha256 else None
    if spec.weights_sha256 and found != spec.weights_sha256:  # each worker reads its own copy of the file
        state = "is missing" if found is None else f"has sha256 {found}"
        raise WeightsMismatch(f"weights file {spec.weights} on {platform.node()} {state}, not the "
                              f"{spec.weights_sha256} the driver checked: give every worker the same file")
    import tensorflow as tf

    try:  # thread pools can be sized only before TensorFlow's first op in this process
        tf.config.threading.set_intra_op_parallelism_threads(max(1, spec.intra_op_threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    import keras

    constructor = getattr(keras.applications, spec.backbone)
    weights = None if spec.weights == "random" else spec.weights
    if weights is None:  # the same untrained network in every process, so features of one run agree
        keras.utils.set_random_seed(RANDOM_WEIGHTS_SEED)
    base = constructor(include_top=False, weights=weights, input_shape=(spec.image_size, spec.image_size, 3))
    outputs = [(base.get_layer(name).output, grid) for name, grid in map(layer_grid, spec.layers)]
    pooled = [grid_average(output, grid) for output, grid in outputs or [(base.output, 1)]]
    merged = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate()(pooled)
    model = keras.Model(base.input, merged)
    # One graph, traced once for any batch size. Against calling the model eagerly per batch,
    # TensorFlow's graph optimizer fuses convolution, batch norm and activation and frees each
    # activation once used: MobileNetV2 ran 1.9x faster here and its peak memory fell from 3.6 to
    # 1.3 GB per process (batch 32). model.predict in a loop would grow memory (tensorflow#44711).
    infer = tf.function(lambda images: model(images, training=False), input_signature=[
        tf.TensorSpec([None, spec.image_size, spec.image_size, 3], tf.float32)])
    preprocess = getattr(keras.applications, BACKBONES[spec.backbone].module).preprocess_input
    _MODEL_CACHE[spec.model_key] = (infer, preprocess)
    return _MODEL_CACHE[spec.model_key]


def grid_cells(height: int, width: int, grid: int) -> list[tuple[slice, slice]]:
    """Row and column slices of each cell, row by row: ``floor(i * h / g)`` to ``ceil((i + 1) * h / g)``."""
    spans = lambda side: [slice((i * side) // grid, -(-((i + 1) * side) // grid)) for i in range(grid)]
    return [(rows, cols) for rows in spans(height) for cols in spans(width)]


def grid_average(output, grid: int):
    """The mean of each cell of a ``grid`` x ``grid`` partition of a feature map, cell by cell.

    Cells span rows ``floor(i * h / g)`` to ``ceil((i + 1) * h / g)`` (as adaptive pooling does), so
    they overlap by a row where the side is not a multiple of the grid, and a map smaller than the
    grid (a small ``image_size``) repeats its cells instead of failing.
    """
    import keras

    cells = [keras.ops.mean(output[:, rows, cols, :], axis=(1, 2)) for rows, cols in grid_cells(output.shape[1], output.shape[2], grid)]
    return cells[0] if len(cells) == 1 else keras.layers.Concatenate()(cells)


def featurize_contents(contents: list[bytes], spec: FeaturizerSpec, keys: list[str] | None = None,
                       views: list[int] | None = None) -> np.ndarray:
    """Images (encoded bytes) -> ``(n, features)`` float32, in batches of ``spec.batch_size``.

    ``keys``/``views`` select a reproducible distorted view per image (view 0 is the image
    itself). With ``spec.test_views`` > 0, each image's features are the mean over the
    original and that many distorted views.
    """
    keys = keys or [""] * len(contents)
    views = views or [0] * len(contents)
    passes = [np.asarray(views)] + [np.full(len(contents), eval_view_id(v)) for v in range(1, spec.test_views + 1)]
    return np.mean([_features(contents, keys, list(p), spec) for p in passes], axis=0, dtype=np.float32)


def _features(contents: list[bytes], keys: list[str], views: list[int], spec: FeaturizerSpec) -> np.ndarray:
    infer, preprocess = load_featurizer(spec)
    outputs = []
    for start in range(0, len(contents), spec.batch_size):
        batch = np.stack([
            prepare_image(content, spec.image_size, spec.crop, view_rng(key, int(view)))
            for content, key, view in zip(*(x[start : start + spec.batch_size] for x in (contents, keys, views)))
        ])
        outputs.append(np.asarray(infer(np.asarray(preprocess(batch), dtype=np.float32)), dtype=np.float32))
    if not outputs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(outputs)


def featurize_batches(batches: Iterator, spec: FeaturizerSpec) -> Iterator:
    """The body of the Spark Arrow UDF: (bytes, key, view) Arrow arrays in, float32 feature lists out."""
    for contents, keys, views in batches:
        yield feature_lists(featurize_contents(contents.to_pylist(), spec, keys.to_pylist(), views.to_pylist()))


def feature_lists(features: np.ndarray):
    """``(rows, width)`` features as an Arrow list array over their own buffer. A pandas UDF would turn
    every feature of every row into a Python float first: 0.75 ms an image at MobileNetV2's 7,744
    features, a seventh of its whole time."""
    import pyarrow as pa

    rows, width = features.shape
    if rows * width > np.iinfo(np.int32).max:  # a list array's offsets are int32: past this they would wrap
        raise ValueError(f"{rows} rows of {width} features exceed one Arrow list array's "
                         f"{np.iinfo(np.int32).max:,} values: lower arrow_batch_rows")
    offsets = np.arange(rows + 1, dtype=np.int64) * width
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()),
                                    pa.array(features.reshape(-1), type=pa.float32()))
