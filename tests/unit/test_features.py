import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from numtaflow.config import Settings
from numtaflow.features import (FeaturizerSpec, WeightsNotFound, feature_lists, featurize_batches, featurize_contents,
                                 intra_op_threads, resolve_weights)
from numtaflow.vocabulary import BACKBONES


def test_every_backbone_has_a_keras_constructor_and_preprocess():
    import keras

    for spec in BACKBONES.values():
        assert callable(getattr(keras.applications, spec.name))
        assert callable(getattr(keras.applications, spec.module).preprocess_input)


def test_missing_weights_name_the_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    settings = Settings(backbone="InceptionV3", weights_dir=str(tmp_path))
    with pytest.raises(WeightsNotFound, match="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5 in " + str(tmp_path)):
        resolve_weights(settings)


def test_an_allowed_download_is_keras_own_of_the_file_the_backbone_names(tmp_path, monkeypatch):
    """Keras's download (replaced here by a constructor that writes what Keras would write, as nothing is
    downloaded in the tests) at the backbone's native size; the file is then the one resolved and hashed."""
    import keras

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    backbone, built = BACKBONES["MobileNetV2"], []

    def downloads(**arguments):
        built.append(arguments)
        (tmp_path / "keras" / "models").mkdir(parents=True, exist_ok=True)
        (tmp_path / "keras" / "models" / backbone.weights_file).write_bytes(b"weights")

    monkeypatch.setattr(keras.applications, "MobileNetV2", downloads)
    settings = Settings(backbone="MobileNetV2", weights_dir=str(tmp_path / "none"), allow_weight_download=True)
    path = resolve_weights(settings)
    assert path == str(tmp_path / "keras" / "models" / backbone.weights_file)
    assert built == [{"include_top": False, "weights": "imagenet", "input_shape": (224, 224, 3)}]
    assert resolve_weights(settings) == path and len(built) == 1  # found in Keras's cache from then on
    monkeypatch.setattr(keras.applications, "InceptionV3", lambda **arguments: None)  # a download under another name
    with pytest.raises(WeightsNotFound, match="but not as .*inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"):
        resolve_weights(settings.model_copy(update={"backbone": "InceptionV3"}))


def test_weights_file_in_weights_dir_is_used(tmp_path):
    path = tmp_path / BACKBONES["VGG16"].weights_file
    path.write_bytes(b"h5")
    assert resolve_weights(Settings(backbone="VGG16", weights_dir=str(tmp_path))) == str(path)


def test_feature_layers_setting():
    auto = FeaturizerSpec.from_settings(Settings(weights="random"))
    assert auto.layers == BACKBONES["MobileNetV2"].recommended_layers and auto.image_size == 128
    assert FeaturizerSpec.from_settings(Settings(weights="random", backbone="InceptionV3")).image_size == 299
    assert FeaturizerSpec.from_settings(Settings(weights="random", image_size=224)).image_size == 224
    assert FeaturizerSpec.from_settings(Settings(weights="random", feature_layers="last")).layers == ()
    assert FeaturizerSpec.from_settings(Settings(weights="random", backbone="VGG16")).layers == ()
    named = FeaturizerSpec.from_settings(Settings(weights="random", feature_layers="a, b"))
    assert named.layers == ("a", "b")


def test_a_worker_whose_weights_file_differs_from_the_drivers_refuses_to_build_the_network(tmp_path):
    from dataclasses import replace

    from numtaflow.features import WeightsMismatch, load_featurizer, weights_sha256

    weights = tmp_path / "mobilenet_v2_no_top.h5"
    weights.write_bytes(b"the driver's file")
    spec = replace(FeaturizerSpec.from_settings(Settings(weights="random", image_size=32)), weights=str(weights),
                   weights_sha256=weights_sha256(str(weights)))
    weights.write_bytes(b"this worker's file")
    with pytest.raises(WeightsMismatch, match=rf"{weights} on .* has sha256 [0-9a-f]{{64}}, not the "
                                              rf"{spec.weights_sha256} the driver checked"):
        load_featurizer(spec)
    weights.unlink()
    with pytest.raises(WeightsMismatch, match="is missing"):
        load_featurizer(spec)


def test_a_layer_the_backbone_lacks_is_refused_before_any_task_starts():
    from numtaflow.features import check_layers

    named = lambda layers: FeaturizerSpec.from_settings(Settings(weights="random", image_size=32, feature_layers=layers))
    check_layers(named("block_16_project, out_relu:2"))
    with pytest.raises(ValueError, match=r"feature_layers: MobileNetV2 has no layer 'conv5_block3_out' \(its last ones: "
                                         r".*out_relu"):
        check_layers(named("out_relu, conv5_block3_out:2"))  # a ResNet50 layer


def test_grid_pooling_keeps_where_the_ink_is_and_averages_to_the_global_pool():
    from numtaflow.features import layer_grid

    assert layer_grid("block_13_expand_relu:2") == ("block_13_expand_relu", 2) and layer_grid("out_relu") == ("out_relu", 1)
    # at 64 px block_13_expand_relu is a 4 x 4 x 576 map: a 2 x 2 grid has four cells of 2 x 2;
    # one network (random weights differ per network) pools it both ways
    spec = FeaturizerSpec.from_settings(Settings(weights="random", image_size=64,
                                                 feature_layers="block_13_expand_relu, block_13_expand_relu:2, out_relu"))
    features = featurize_contents([png_digit(), png(0)], spec)
    assert features.shape == (2, 576 + 4 * 576 + 1280)
    pooled, per_cell = features[:, :576], features[:, 576 : 5 * 576].reshape(2, 4, 576)
    scale = np.abs(pooled).max()  # a random network's activations are tiny: compare relative to them
    assert scale > 0
    np.testing.assert_allclose(per_cell.mean(axis=1), pooled, rtol=1e-4, atol=1e-5 * scale)
    # at 32 px block_14_expand_relu is 1 x 1: every cell of its 2 x 2 grid is that one position
    small = FeaturizerSpec.from_settings(Settings(weights="random", image_size=32,
                                                  feature_layers="block_14_expand_relu, block_14_expand_relu:2"))
    tiny = featurize_contents([png_digit()], small)
    np.testing.assert_allclose(tiny[0, 960:].reshape(4, 960), np.tile(tiny[0, :960], (4, 1)), rtol=1e-6)
    assert np.abs(per_cell[0, 0] - per_cell[0, 3]).max() > 0.01 * scale  # top-left and bottom-right differ


def png(value):
    out = io.BytesIO()
    Image.new("L", (20, 20), value).save(out, format="PNG")
    return out.getvalue()


def test_featurize_batches_images_with_a_random_model():
    spec = FeaturizerSpec.from_settings(Settings(weights="random", image_size=32, udf_batch_size=2))
    features = featurize_contents([png(0), png(128), png(255)], spec)
    assert features.shape[0] == 3 and features.shape[1] > 0
    assert features.dtype == np.float32


def test_a_batch_too_large_for_one_list_arrays_offsets_is_refused_not_wrapped():
    small = feature_lists(np.arange(6, dtype=np.float32).reshape(2, 3))
    assert small.to_pylist() == [[0, 1, 2], [3, 4, 5]]
    too_many = np.broadcast_to(np.float32(0), (277_310, 7_744))  # 2,147,488,640 values, no memory of its own
    with pytest.raises(ValueError, match="277310 rows of 7744 features .* lower arrow_batch_rows"):
        feature_lists(too_many)


def test_featurize_batches_returns_each_rows_features_as_a_float_list():
    import pyarrow as pa

    spec = FeaturizerSpec.from_settings(Settings(weights="random", image_size=32, udf_batch_size=2))
    contents = [png(0), png(128), png(255)]
    batches = [(pa.array(contents, pa.binary()), pa.array(["k"] * 3), pa.array([0, 1, 0], pa.int32())),
               (pa.array([], pa.binary()), pa.array([], pa.string()), pa.array([], pa.int32()))]
    lists, empty = featurize_batches(batches, spec)
    assert lists.type == pa.list_(pa.float32()) and len(empty) == 0
    expected = featurize_contents(contents, spec, ["k"] * 3, [0, 1, 0])
    np.testing.assert_array_equal(np.array(lists.to_pylist(), dtype=np.float32), expected)


def test_distorted_views_are_reproducible_and_differ_from_the_original():
    spec = FeaturizerSpec.from_settings(Settings(weights="random", image_size=32, feature_layers="last"))
    from numtaflow.images import prepare_image, view_rng

    image = png_digit()
    plain = prepare_image(image, 32)
    distorted = prepare_image(image, 32, rng=view_rng("s:a", 1))
    assert not np.array_equal(plain, distorted)
    np.testing.assert_array_equal(distorted, prepare_image(image, 32, rng=view_rng("s:a", 1)))
    view = featurize_contents([image, image, image], spec, ["s:a", "s:a", "s:a"], [1, 1, 0])
    # the same view gives the same features up to float rounding (a batch's rows may take different
    # CPU kernels), far closer than the original is
    scale = np.abs(view).max()
    np.testing.assert_allclose(view[0], view[1], rtol=1e-3, atol=1e-4 * scale)
    assert np.abs(view[0] - view[2]).max() > 1e-2 * scale
    averaged = featurize_contents([image], replace(spec, test_views=2), ["s:a"], [0])
    assert averaged.shape == view[:1].shape


def png_digit():
    out = io.BytesIO()
    image = Image.new("L", (28, 28), 255)
    image.paste(0, (10, 5, 16, 23))
    image.save(out, format="PNG")
    return out.getvalue()


def test_featurize_tasks_come_in_whole_waves_of_bounded_size():
    from numtaflow.spark import task_count

    assert task_count(500, cores=2, per_task=2000) == 2  # small input: one task per core
    assert task_count(0, cores=2, per_task=2000) == 2
    assert task_count(44_000, cores=2, per_task=2000) == 22
    assert task_count(4_001, cores=2, per_task=2000) == 4  # 4 tasks of ~1,000, not 3 with one idle core
    assert task_count(10, cores=0, per_task=5) == 2


def test_tensorflow_threads_follow_the_backbones_shape_unless_set():
    """VGG's large convolutions take two threads per task core (make bench); the others one; the setting wins."""
    assert intra_op_threads(0, BACKBONES["MobileNetV2"], 1) == 1
    assert intra_op_threads(0, BACKBONES["VGG16"], 1) == intra_op_threads(0, BACKBONES["VGG19"], 1) == 2
    assert intra_op_threads(0, BACKBONES["VGG16"], 4) == 8
    assert intra_op_threads(3, BACKBONES["VGG16"], 1) == 3
    settings = Settings.from_env().with_overrides({"backbone": "VGG16", "weights": "random"})
    assert FeaturizerSpec.from_settings(settings, task_cpus=2).intra_op_threads == 4


def test_the_pipeline_stage_builds_its_udf_with_the_backbones_threads(spark, monkeypatch):
    """A served pipeline sizes TensorFlow as featurize does: the stage reads the same rule."""
    from numtaflow import ml

    seen, build = [], ml.ImageFeaturizer.spec
    monkeypatch.setattr(ml.ImageFeaturizer, "spec", lambda self, weights, threads: seen.append(threads) or
                        build(self, weights, threads))
    stage = ml.ImageFeaturizer(backbone="VGG16", imageSize=32, weightsFile="random", weightsSha256="")
    stage.transform(spark.createDataFrame([(b"x",)], "content binary"))  # lazy: builds the UDF, runs nothing
    assert seen == [int(spark.conf.get("spark.task.cpus", "1")) * 2]
