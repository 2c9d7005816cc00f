import pytest

from numtaflow.config import Settings


def test_env_overrides_are_coerced_to_field_types():
    settings = Settings.from_env({"NUMTAFLOW_PER_CLASS": "7", "NUMTAFLOW_MIN_ACCURACY": "0.5",
                                  "NUMTAFLOW_ALLOW_WEIGHT_DOWNLOAD": "yes", "UNRELATED": "x"})
    assert settings.per_class == 7
    assert settings.min_accuracy == 0.5
    assert settings.allow_weight_download is True
    assert Settings.from_env({}).per_class == 50


def test_unknown_override_is_rejected_by_name():
    with pytest.raises(ValueError, match="unknown setting.*per_klass"):
        Settings().with_overrides({"per_klass": 3})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backbone": "AlexNet"}, "backbone='AlexNet' is not one of"),
        ({"per_class": 1}, "per_class=1 must be at least 2"),
        ({"per_class": "ten"}, "per_class='ten' is not a valid int"),
        ({"per_class": 2.5}, "is not a valid int"),
        ({"min_accuracy": 1.5}, "min_accuracy=1.5 must be between 0 and 1"),
        ({"lr_preset": "fast"}, "lr_preset='fast'"),
        ({"image_size": 16}, "image_size=16"),
        ({"driver_memory": "lots"}, "driver_memory='lots' must be a JVM memory size"),
        ({"feature_layers": "out_relu:0"}, "feature_layers entry 'out_relu:0' must be a layer name"),
        ({"feature_layers": "block_13_expand_relu:2, out_relu:x"}, "entry 'out_relu:x'"),
        ({"feature_layers": "a:2:2"}, "entry 'a:2:2'"),
    ],
)
def test_invalid_values_name_the_setting(overrides, message):
    with pytest.raises(ValueError, match=message):
        Settings().with_overrides(overrides)


def test_feature_layers_accept_names_with_an_optional_grid():
    assert Settings().with_overrides({"feature_layers": "block_13_expand_relu:2, out_relu"}).feature_layers
    assert Settings().with_overrides({"feature_layers": "last"}).feature_layers == "last"


def test_run_settings_round_trip():
    settings = Settings().with_overrides({"seed": 3, "backbone": "VGG16"})
    again = Settings().with_overrides(settings.run_settings())
    assert again == settings


def test_every_setting_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in Settings().run_settings() if f"| `{name}` |" not in readme]
    assert missing == []
