import pytest
from botocore.utils import parse_timestamp as botocore_parse

from numtaflow.catalog import (ARTIFACTS, EVAL_PREDICTIONS, LINEAGE, METRICS, MODEL, PREDICTIONS, RUNS_PREFIX,
                               SERVED, STEPS, RunLayout)
from numtaflow.storage import parse_timestamp, safe_run_id, spark_path, split_uri


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
    assert spark_path(str(tmp_path / "my scans ছবি [1]")) == f"file://{tmp_path}/my scans ছবি [1]"


def test_run_layout_keys_are_run_and_step_scoped():
    layout = RunLayout("bucket", "run1")
    assert layout.key(MODEL) == f"{RUNS_PREFIX}run1/train/model"
    assert layout.uri(METRICS) == f"s3://bucket/{RUNS_PREFIX}run1/evaluate/metrics.json"
    assert layout.s3a(METRICS) == f"s3a://bucket/{RUNS_PREFIX}run1/evaluate/metrics.json"
    assert layout.marker_key("sample") == f"{RUNS_PREFIX}run1/sample/_COMMITTED.json"
    assert layout.key(LINEAGE) == f"{RUNS_PREFIX}run1/run.json"


def test_the_catalog_declares_each_artifact_once_and_serves_only_declared_names():
    keys = [RunLayout("b", "r").key(artifact) for artifact in ARTIFACTS]
    assert len(keys) == len(set(keys))
    assert all(artifact.step in (*STEPS, "") for artifact in ARTIFACTS)
    assert set(SERVED) == {"confusion_eval.png", "confusion_split.png", "validation.html", "metrics.json", "run.json",
                           "misclassified.png"}


def test_s3_errors_name_the_endpoint_the_bucket_and_what_was_refused():
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    from numtaflow.storage import StorageRefused, s3_failure

    def describe_s3_error(error, endpoint, bucket):
        return str(s3_failure(error, endpoint, bucket))

    def refuses_settings(error):
        return isinstance(s3_failure(error, "http://s3:9000", "b"), StorageRefused)

    def refused(code, status):
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadBucket")

    text = describe_s3_error(refused("SignatureDoesNotMatch", 403), "http://127.0.0.1:8333", "numtaflow")
    assert "http://127.0.0.1:8333" in text and "'numtaflow'" in text and "refused the credentials" in text
    assert "does not exist" in describe_s3_error(refused("NoSuchBucket", 404), "http://s3:9000", "nope")
    assert "cannot reach" in describe_s3_error(EndpointConnectionError(endpoint_url="http://x:1"), "http://x:1", "b")
    # a setting to fix (exit 3, not retried) versus an outage a retry may outlast (exit 1)
    assert refuses_settings(refused("InvalidAccessKeyId", 403)) and refuses_settings(refused("NoSuchBucket", 404))
    assert not refuses_settings(refused("SlowDown", 503)) and not refuses_settings(refused("InternalError", 500))
    assert not refuses_settings(EndpointConnectionError(endpoint_url="http://x:1"))
    missing = NoCredentialsError()  # no keys in the step's environment at all
    assert refuses_settings(missing) and "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in describe_s3_error(
        missing, "http://s3:9000", "b")


def stubbed_storage(**settings):
    """A Storage whose boto3 client answers from a Stubber: any request not expected fails the test."""
    import boto3
    from botocore.stub import Stubber

    from numtaflow.config import Settings
    from numtaflow.storage import Storage

    client = boto3.client("s3", region_name="us-east-1", endpoint_url="http://127.0.0.1:1",
                          aws_access_key_id="key", aws_secret_access_key="secret")
    return Storage(Settings(bucket="landing", **settings), client=client), Stubber(client)


def test_copy_is_one_server_side_request():
    storage, stub = stubbed_storage()
    stub.add_response("copy_object", {"CopyObjectResult": {"ETag": '"e1"'}},
                      {"Bucket": "landing", "Key": "incoming/b/a.png",
                       "CopySource": {"Bucket": "datasets", "Key": "training-a/a.png"}})
    with stub:
        assert storage.copy("datasets", "training-a/a.png", "incoming/b/a.png") == '"e1"'
    stub.assert_no_pending_responses()


def test_a_parquet_object_reads_as_a_frame_with_the_columns_asked_for():
    import pandas as pd

    key = RunLayout.scoring("landing", "r").key(PREDICTIONS["parquet"])
    storage, stub = stubbed_storage()
    stub.add_response("get_object", {"Body": parquet_body(pd.DataFrame({"image_id": ["0/a.png", "1/b.png"],
                                                                        "digit": [0, 1]}))},
                      {"Bucket": "landing", "Key": key})
    with stub:
        frame = storage.get_frame(key, columns=["image_id"])
    assert frame.to_dict("list") == {"image_id": ["0/a.png", "1/b.png"]}


def parquet_body(frame):
    import io

    from botocore.response import StreamingBody

    written = io.BytesIO()
    frame.to_parquet(written, index=False)
    return StreamingBody(io.BytesIO(written.getvalue()), len(written.getvalue()))


def test_a_spark_parquet_folder_reads_as_one_frame_of_its_parts():
    import pandas as pd

    folder = RunLayout("landing", "r").key(EVAL_PREDICTIONS)
    parts = [f"{folder}/part-00001.snappy.parquet", f"{folder}/part-00000.snappy.parquet"]
    storage, stub = stubbed_storage()
    stub.add_response("list_objects_v2", {"Contents": [{"Key": key, "Size": 1}
                                                       for key in [f"{folder}/_SUCCESS", *parts]]},
                      {"Bucket": "landing", "Prefix": folder + "/"})
    for key, ids in ((parts[1], ["0/a.png"]), (parts[0], ["1/b.png", "2/c.png"])):  # in the parts' order
        stub.add_response("get_object", {"Body": parquet_body(pd.DataFrame({"image_id": ids, "digit": 0}))},
                          {"Bucket": "landing", "Key": key})
    with stub:
        frame = storage.get_folder_frame(folder, columns=["image_id"])
    stub.assert_no_pending_responses()
    assert frame.to_dict("list") == {"image_id": ["0/a.png", "1/b.png", "2/c.png"]}
    assert list(frame.index) == [0, 1, 2]

    storage, stub = stubbed_storage()
    stub.add_response("list_objects_v2", {"Contents": [{"Key": f"{folder}/_SUCCESS", "Size": 0}]},
                      {"Bucket": "landing", "Prefix": folder + "/"})
    with stub, pytest.raises(FileNotFoundError, match=f"s3://landing/{folder}/ holds no Parquet part"):
        storage.get_folder_frame(folder)


def test_parquet_in_memory_is_read_only_through_get_frame():
    """``pd.read_parquet``/``pq.read_table`` on an object built in memory can abort the process as it exits
    (Arrow's threads release it during interpreter shutdown); ``Storage.get_frame`` reads without them."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    for folder in ("include", "plugins", "spark_jobs", "dags", "scripts", "benchmarks", "tests"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args
                        and node.func.attr in ("read_parquet", "read_table") and isinstance(node.args[0], ast.Call)):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not offenders


def test_filesystem_uses_the_client_endpoint_region_and_environment_credentials_once_per_storage(monkeypatch):
    from pyarrow import fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    storage, _ = stubbed_storage(s3_endpoint="http://127.0.0.1:8633", s3_region="eu-west-1")
    expected = dict(access_key="env-key", secret_key="env-secret", region="eu-west-1",
                    endpoint_override="http://127.0.0.1:8633", scheme="http", connect_timeout=5, request_timeout=60)
    assert storage.filesystem() == fs.S3FileSystem(**expected)
    assert storage.filesystem() != fs.S3FileSystem(**{**expected, "secret_key": "other"})
    assert "env-secret" not in repr(storage.filesystem())
    assert storage.filesystem() is storage.filesystem()  # its connections serve every read


def test_response_times_parse_as_botocore_parses_them():
    for value in ("2026-12-04T06:14:31.565Z", "2026-12-04T06:14:31Z", "Wed, 12 Oct 2009 17:50:00 GMT"):
        assert parse_timestamp(value) == botocore_parse(value)
        assert parse_timestamp(value).isoformat() == botocore_parse(value).isoformat()


def test_an_object_the_server_would_not_delete_stops_the_step_that_clears_its_prefix():
    from numtaflow.storage import StorageError

    import re

    storage, stub = stubbed_storage()
    layout = RunLayout("landing", "r")
    prefix, parts = layout.prefix("train"), [f"{layout.key(MODEL)}/part-{i}" for i in (0, 1)]
    stub.add_response("list_objects_v2", {"Contents": [{"Key": part, "Size": 1} for part in parts],
                                          "IsTruncated": False})
    stub.add_response("delete_objects", {"Errors": [{"Key": parts[1], "Code": "AccessDenied",
                                                     "Message": "Access Denied"}]})
    expected = f"could not delete 1 of the objects under s3://landing/{prefix} ({parts[1]}: AccessDenied Access Denied)"
    with stub, pytest.raises(StorageError, match=re.escape(expected)):
        storage.delete_prefix(prefix)


def test_an_error_in_one_line_names_its_type_and_the_first_line_only():
    from numtaflow.storage import error_line

    assert error_line(KeyError()) == "KeyError"
    assert error_line(ValueError("Path does not exist\n\tat org.apache.spark...")) == "ValueError: Path does not exist"
    assert error_line(ValueError("x" * 900)) == "ValueError: " + "x" * 500
