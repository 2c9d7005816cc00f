import pytest

from numtaflow.storage import RunLayout, safe_run_id, spark_path, split_uri


def test_safe_run_id_is_deterministic_and_key_safe():
    run_id = "manual__2026-11-25T08:18:08.193853+00:00"
    assert safe_run_id(run_id) == "manual__2026-11-25T08_18_08.193853_00_00"
    assert safe_run_id(run_id) == safe_run_id(run_id)
    assert safe_run_id("scheduled__2026-01-01T00:00:00+00:00") != safe_run_id("scheduled__2026-01-02T00:00:00+00:00")
    with pytest.raises(ValueError):
        safe_run_id(":::")


def test_split_uri_forms():
    assert split_uri("s3://bucket/a/b") == ("s3", "bucket", "a/b")
    assert split_uri("s3a://bucket/a/b") == ("s3", "bucket", "a/b")
    assert split_uri("/data/x") == ("file", "", "/data/x")
    assert split_uri("file:///data/x") == ("file", "", "/data/x")
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        split_uri("gs://bucket/x")


def test_spark_path_uses_s3a_and_absolute_files(tmp_path):
    assert spark_path("s3://b/k/x.parquet") == "s3a://b/k/x.parquet"
    assert spark_path(str(tmp_path)).startswith("file:///")


def test_run_layout_keys_are_run_and_step_scoped():
    layout = RunLayout("bucket", "run1")
    assert layout.key("train", "model") == "runs/run1/train/model"
    assert layout.uri("evaluate", "metrics.json") == "s3://bucket/runs/run1/evaluate/metrics.json"
    assert layout.marker_key("sample") == "runs/run1/sample/_COMMITTED.json"
    assert layout.run_record_key == "runs/run1/run.json"
