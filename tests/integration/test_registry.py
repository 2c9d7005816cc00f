"""Promotion is compare-and-set on the real S3 server: of concurrent writers exactly one wins."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from numtaflow.registry import read_champion, read_index, set_champion, update_index
from numtaflow.storage import PreconditionFailed

pytestmark = pytest.mark.integration


@pytest.fixture
def storage(s3_env):
    """A bucket of its own: these tests rewrite the registry, which other tests read."""
    from numtaflow.config import Settings
    from numtaflow.storage import Storage

    registry = Storage(Settings.from_env().with_overrides({"bucket": "numtaflow-registry-test"}))
    registry.ensure_bucket()
    return registry


def test_concurrent_promotions_one_winner(storage):
    storage.delete_prefix("models/")
    _, etag = read_champion(storage)
    assert etag is None

    def promote(index):
        try:
            set_champion(storage, {"run_id": f"race_{index}"}, etag, action="promote")
            return True
        except PreconditionFailed:
            return False

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(promote, range(8)))
    assert outcomes.count(True) == 1
    champion, new_etag = read_champion(storage)
    assert champion["run_id"] == f"race_{outcomes.index(True)}"
    with pytest.raises(PreconditionFailed):  # a stale ETag cannot overwrite the winner
        set_champion(storage, {"run_id": "late"}, "\"0000\"", action="promote")
    set_champion(storage, {"run_id": "next"}, new_etag, action="promote")
    assert read_champion(storage)[0]["run_id"] == "next"


def test_index_updates_are_not_lost_under_concurrency(storage):
    storage.delete_prefix("models/")
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: update_index(storage, f"run_{i}", {"run_id": f"run_{i}"}), range(6)))
    update_index(storage, "run_3", {"run_id": "run_3", "note": "replaced"})
    runs = {r["run_id"]: r for r in read_index(storage)}
    assert sorted(runs) == [f"run_{i}" for i in range(6)]
    assert runs["run_3"]["note"] == "replaced"


def test_wrong_keys_are_refused(s3_env):
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("s3", endpoint_url=s3_env["NUMTAFLOW_S3_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"], aws_secret_access_key="wrong-secret")
    with pytest.raises(ClientError) as refused:
        client.list_objects_v2(Bucket=s3_env["NUMTAFLOW_BUCKET"])
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_delete_prefix_leaves_no_folders_behind(storage):
    """A retried step must be able to rewrite its outputs (Hadoop sees leftover folders as paths)."""
    for key in ("step/model/metadata/part-0", "step/model/data/part-0", "step/a.json", "step10/keep.json"):
        storage.put_bytes(key, b"x")
    assert storage.delete_prefix("step/") == 3
    listing = storage.client.list_objects_v2(Bucket=storage.bucket, Prefix="step", Delimiter="/")
    assert [p["Prefix"] for p in listing.get("CommonPrefixes", [])] == ["step10/"]
    assert storage.exists("step10/keep.json")
