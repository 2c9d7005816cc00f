import pytest

from numtaflow.catalog import SAMPLED_IMAGES
from numtaflow.jobs import StepFailed, context_from_args, parse_args


def test_context_normalises_run_id_and_type_and_applies_form_values():
    args = parse_args(["--run-id", "scheduled__2026-01-01T00:00:00+00:00", "--run-type", "DagRunType.SCHEDULED",
                       "--settings-json", '{"per_class": 7, "seed": null}'])
    context = context_from_args("sample", args)
    assert context.run_id == "scheduled__2026-01-01T00_00_00_00_00"
    assert context.run_type == "scheduled"
    assert context.settings.per_class == 7 and context.settings.seed == 42
    assert context.s3a(SAMPLED_IMAGES["train"]).startswith(f"s3a://{context.settings.bucket}/")
    assert context.s3a(SAMPLED_IMAGES["train"]).endswith(f"/{context.run_id}/sample/train.parquet")


def test_form_values_apply_only_where_changed_and_explicit_settings_always(monkeypatch):
    monkeypatch.setenv("NUMTAFLOW_PER_CLASS", "80")
    monkeypatch.setenv("NUMTAFLOW_SEED", "9")
    form = '{"per_class": 50, "seed": 3, "backbone": "MobileNetV2"}'  # per_class untouched, seed changed
    settings = context_from_args("sample", parse_args(["--run-id", "r", "--form-json", form])).settings
    assert (settings.per_class, settings.seed) == (80, 3)
    explicit = context_from_args("sample", parse_args(["--run-id", "r", "--form-json", form,
                                                       "--settings-json", '{"per_class": 50}'])).settings
    assert explicit.per_class == 50


def test_form_values_must_be_an_object_of_known_settings():
    with pytest.raises(StepFailed, match="must be a JSON object"):
        context_from_args("sample", parse_args(["--run-id", "r", "--settings-json", "[1]"]))
    with pytest.raises(ValueError, match="unknown run setting"):
        context_from_args("sample", parse_args(["--run-id", "r", "--settings-json", '{"nope": 1}']))
