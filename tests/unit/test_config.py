import pytest

from numtaflow.config import ScoringSettings, Settings, SettingsError, form_fields


def test_env_overrides_are_coerced_to_field_types():
    settings = Settings.from_env({"NUMTAFLOW_PER_CLASS": "7", "NUMTAFLOW_MIN_ACCURACY": "0.5",
                                  "NUMTAFLOW_ALLOW_WEIGHT_DOWNLOAD": "yes", "UNRELATED": "x"})
    assert settings.per_class == 7
    assert settings.min_accuracy == 0.5
    assert settings.allow_weight_download is True
    assert Settings.from_env({}).per_class == 50


def test_unknown_override_is_rejected_by_name():
    with pytest.raises(ValueError, match="unknown run setting.*per_klass"):
        Settings().with_overrides({"per_klass": 3})


def test_platform_settings_come_only_from_the_environment():
    with pytest.raises(ValueError, match="s3_endpoint: platform settings come from NUMTAFLOW_"):
        Settings().with_overrides({"s3_endpoint": "http://elsewhere:9000"})
    assert Settings.from_env({"NUMTAFLOW_S3_ENDPOINT": "http://elsewhere:9000"}).s3_endpoint == "http://elsewhere:9000"
    with pytest.raises(ValueError, match="NUMTAFLOW_DRIVER_MEMORY='lots': must be a JVM memory size"):
        Settings.from_env({"NUMTAFLOW_DRIVER_MEMORY": "lots"})


def test_form_values_override_the_environment_only_where_changed():
    """form > environment > default: an untouched form field leaves the worker's setting alone."""
    from numtaflow.config import form_fields, form_overrides

    form = {name: default for name, (default, _, _) in form_fields().items()}
    worker = Settings.from_env({"NUMTAFLOW_PER_CLASS": "80", "NUMTAFLOW_SEED": "5"})
    untouched = worker.with_overrides(form_overrides(form))
    assert (untouched.per_class, untouched.seed, untouched.backbone) == (80, 5, "MobileNetV2")
    changed = worker.with_overrides(form_overrides({**form, "per_class": 30}))
    assert (changed.per_class, changed.seed) == (30, 5)
    assert Settings.from_env({}).with_overrides(form_overrides(form)).per_class == 50


def test_the_form_is_generated_from_the_schema_with_its_bounds():
    from numtaflow.config import RunSettings, form_fields

    form = form_fields()
    assert set(form) <= set(RunSettings.model_fields)
    default, description, schema = form["per_class"]
    assert (default, schema["minimum"], schema["maximum"], schema["section"]) == (50, 2, 100_000, "Data")
    assert schema["type"] == "integer" and description
    assert "VGG16" in form["backbone"][2]["enum"] and form["min_accuracy"][2]["type"] == "number"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"backbone": "AlexNet"}, "backbone='AlexNet': Input should be 'MobileNetV2'"),
        ({"per_class": 1}, "per_class=1: Input should be greater than or equal to 2"),
        ({"per_class": "ten"}, "per_class='ten': Input should be a valid integer"),
        ({"per_class": 2.5}, "per_class=2.5: Input should be a valid integer"),
        ({"min_accuracy": 1.5}, "min_accuracy=1.5: Input should be less than or equal to 1"),
        ({"lr_preset": "fast"}, "lr_preset='fast'"),
        ({"image_size": 16}, "image_size=16: must be 0"),
        ({"backbone": "InceptionV3", "image_size": 64}, "image_size=64: must be 0 .* or at least 75, the smallest input "
                                                         "InceptionV3 is built for"),
        ({"feature_layers": "out_relu:0"}, "feature_layers='out_relu:0': entry 'out_relu:0' must be a layer name"),
        ({"feature_layers": "block_13_expand_relu:2, out_relu:x"}, "entry 'out_relu:x'"),
        ({"feature_layers": "a:2:2"}, "entry 'a:2:2'"),
    ],
)
def test_invalid_values_name_the_setting(overrides, message):
    with pytest.raises(ValueError, match=message):
        Settings().with_overrides(overrides)


def test_an_invalid_environment_value_names_its_variable():
    """From the environment the message names the variable to fix; from a form or conf, the setting."""
    with pytest.raises(SettingsError, match="invalid settings: NUMTAFLOW_PER_CLASS='ten': Input should be a valid "
                                            "integer"):
        Settings.from_env({"NUMTAFLOW_PER_CLASS": "ten", "PER_CLASS": "3"})
    with pytest.raises(SettingsError, match="NUMTAFLOW_IMAGE_SIZE='64': must be 0 .* InceptionV3"):
        Settings.from_env({"NUMTAFLOW_BACKBONE": "InceptionV3", "NUMTAFLOW_IMAGE_SIZE": "64"})
    with pytest.raises(SettingsError, match="^invalid settings: image_size=64: must be 0 .* InceptionV3"):
        Settings.from_env({"NUMTAFLOW_BACKBONE": "InceptionV3"}).with_overrides({"image_size": 64})


def test_feature_layers_accept_names_with_an_optional_grid():
    assert Settings().with_overrides({"feature_layers": "block_13_expand_relu:2, out_relu"}).feature_layers
    assert Settings().with_overrides({"feature_layers": "last"}).feature_layers == "last"


@pytest.mark.parametrize("value", ["auto", "last", "", "block_13_expand_relu:2, out_relu", "a:7,b", " out_relu , ",
                                   "out_relu:0", "out_relu:8", "a:2:2", "out relu", "out_relu;rm", "a,,b:x"])
def test_the_form_refuses_the_feature_layers_the_settings_refuse(value):
    import jsonschema

    schema = form_fields()["feature_layers"][2]
    try:
        Settings().with_overrides({"feature_layers": value})
        accepted = True
    except ValueError:
        accepted = False
    assert (jsonschema.Draft7Validator(schema).is_valid(value)) == accepted, value
    assert jsonschema.Draft7Validator(schema).is_valid(", " * 40 + "!") is False  # at once: no backtracking blow-up


def test_run_settings_round_trip():
    settings = Settings().with_overrides({"seed": 3, "backbone": "VGG16"})
    again = Settings().with_overrides(settings.run_settings())
    assert again == settings


def test_every_setting_is_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    names = [*Settings().all_settings(), *ScoringSettings.model_fields]
    assert [name for name in names if f"| `{name}` |" not in readme] == []
