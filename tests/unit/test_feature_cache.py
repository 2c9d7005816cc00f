"""The feature cache's key: whatever defines the features names the cache folder, nothing else does."""

from pathlib import Path

import pytest

from numtaflow.feature_cache import CODE, LIBRARIES, code_version, featurizer_key

PARAMS = {"backbone": "MobileNetV2", "imageSize": 128, "layers": ["out_relu"], "cropToInk": True, "testViews": 4,
          "weightsFile": "mobilenet.h5", "weightsSha256": "ab" * 32, "batchSize": 16, "inputCol": "content"}


def test_everything_that_defines_the_features_changes_the_key():
    key = featurizer_key(PARAMS, "code")
    assert key == featurizer_key(dict(PARAMS), "code") and len(key) == 24
    for change in ({"weightsSha256": "cd" * 32}, {"testViews": 0}, {"imageSize": 96}, {"layers": ["out_relu:2"]},
                   {"cropToInk": False}, {"backbone": "VGG16"}, {"weightsFile": "other.h5"}):
        assert featurizer_key({**PARAMS, **change}, "code") != key, change
    assert featurizer_key(PARAMS, "the preparation changed") != key


def test_what_does_not_change_the_features_keeps_the_key():
    assert featurizer_key({**PARAMS, "batchSize": 32, "inputCol": "bytes"}, "code") == featurizer_key(PARAMS, "code")


def test_random_weights_are_never_cached():
    assert featurizer_key({**PARAMS, "weightsFile": "random", "weightsSha256": ""}, "code") is None


@pytest.mark.parametrize("changed", CODE)
def test_a_change_to_any_preparation_or_featurizer_source_changes_the_code_version(changed, tmp_path, monkeypatch):
    import shutil

    from numtaflow import feature_cache

    package = Path(feature_cache.__file__).parent
    original = code_version()
    for name in CODE:
        shutil.copy(package / name, tmp_path / name)
    monkeypatch.setattr(feature_cache.resources, "files", lambda _: tmp_path)
    assert code_version() == original
    with open(tmp_path / changed, "a") as source:
        source.write("\n")
    assert code_version() != original


def test_the_code_version_is_the_source_of_the_preparation_and_featurizer(monkeypatch):
    from importlib import metadata

    original, installed = code_version(), metadata.version
    assert len(original) == 64 and code_version() == original
    for names in LIBRARIES:  # another TensorFlow, Keras or Pillow: other features
        with monkeypatch.context() as patch:
            patch.setattr(metadata, "version", lambda name, bumped=names: "0.0" if name in bumped else installed(name))
            assert code_version() != original, names
