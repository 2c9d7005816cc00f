import pytest

from numtaflow.jobs import StepFailed, context_from_args, parse_args


def test_context_normalises_run_id_and_type_and_applies_form_values():
    args = parse_args(["--run-id", "scheduled__2026-01-01T00:00:00+00:00", "--run-type", "DagRunType.SCHEDULED",
                       "--settings-json", '{"per_class": 7, "seed": null}'])
    context = context_from_args("sample", args)
    assert context.run_id == "scheduled__2026-01-01T00_00_00_00_00"
    assert context.run_type == "scheduled"
    assert context.settings.per_class == 7 and context.settings.seed == 42
    assert context.s3a("train.parquet") == f"s3a://{context.settings.bucket}/runs/{context.run_id}/sample/train.parquet"


def test_form_values_must_be_an_object_of_known_settings():
    with pytest.raises(StepFailed, match="must be a JSON object"):
        context_from_args("sample", parse_args(["--run-id", "r", "--settings-json", "[1]"]))
    with pytest.raises(ValueError, match="unknown setting"):
        context_from_args("sample", parse_args(["--run-id", "r", "--settings-json", '{"nope": 1}']))
