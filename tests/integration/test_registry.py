"""The model registry on the real S3 server: compare-and-set promotion, immutable versions, and a
broken pointer that stops promotion instead of being taken for "no champion"."""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from numtaflow.catalog import (CHAMPION_KEY, LINEAGE, METRICS, MODEL, PIPELINE, REGISTRY_PREFIX, RUNS_PREFIX, TRAINED_ON,
                               RunLayout)
from numtaflow.contracts import Featurizer
from numtaflow.registry import (RegistryError, candidate_version, history, promote_run, read_champion, read_index,
                                read_version, register, rollback, switch_champion, training_images, update_index,
                                version_prefix)
from numtaflow.storage import PreconditionFailed

pytestmark = pytest.mark.integration
FEATURIZER = Featurizer(backbone="MobileNetV2", image_size=96, layers=["out_relu"], weights="random",
                        weights_sha256=None)


@pytest.fixture
def storage(s3_env):
    """A bucket of its own, emptied for each test: these tests rewrite the registry."""
    from numtaflow.config import Settings
    from numtaflow.storage import Storage

    registry = Storage(Settings.from_env({**os.environ, "NUMTAFLOW_BUCKET": "numtaflow-registry-test"}))
    registry.ensure_bucket()
    for prefix in (REGISTRY_PREFIX, RUNS_PREFIX):
        registry.delete_prefix(prefix)
    return registry


def trained(storage, run_id: str, accuracy: float, weights: bytes | None = None, pipeline: bool = True):
    """A run whose train step saved a (stand-in) model and its pipeline, as a candidate version."""
    layout = RunLayout(storage.bucket, run_id)
    weights = weights or run_id.encode()
    for name in ("metadata/part-00000", "data/part-00000.parquet"):
        storage.put_bytes(f"{layout.key(MODEL)}/{name}", weights + name.encode())
        if pipeline:
            storage.put_bytes(f"{layout.key(PIPELINE)}/{name}", weights + b"pipeline" + name.encode())
    return candidate_version(storage, layout, {"accuracy": accuracy, "f1": accuracy}, {"seed": 1}, FEATURIZER,
                             "ids")


def promote_if_better(storage, candidate):
    """The gate's shape: judge against the champion as read, register, then compare-and-set."""
    def choose(current):
        if current and current.metrics.accuracy >= candidate.metrics.accuracy:
            return None
        return register(storage, candidate), "promote", [f"accuracy {candidate.metrics.accuracy}"]

    return switch_champion(storage, choose, f"promotion of {candidate.run_id}")


def test_first_promotions_race_one_winner_at_the_storage_level(storage):
    def create(index):
        try:
            storage.compare_and_set(CHAMPION_KEY, {"run_id": f"race_{index}"}, None)
            return True
        except PreconditionFailed:
            return False

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(create, range(8)))
    assert outcomes.count(True) == 1


def test_eight_promotions_from_an_existing_champion_are_rejudged_against_each_winner(storage):
    promote_if_better(storage, trained(storage, "base", 0.50))
    candidates = [trained(storage, f"race_{i}", 0.60 + i / 100) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda c: promote_if_better(storage, c), candidates))
    champion, _ = read_champion(storage)
    assert champion.run_id == "race_7" and champion.metrics.accuracy == pytest.approx(0.67)
    changes = history(storage)
    # every change was made against the pointer it replaced: the versions form one chain, none lost
    assert [c["previous_version"] for c in changes[1:]] == [c["version"] for c in changes[:-1]]
    assert all(b["metrics"]["accuracy"] > a["metrics"]["accuracy"] for a, b in zip(changes, changes[1:]))


def test_a_rerun_of_the_champions_run_does_not_change_what_serves(storage):
    candidate = trained(storage, "champion_run", 0.9)
    served = promote_if_better(storage, candidate)
    assert served.model_uri.startswith(f"s3://{storage.bucket}/{version_prefix(served.version)}")
    before = {o["Key"]: o["ETag"] for o in storage.list_objects(version_prefix(served.version))}
    storage.delete_prefix(RunLayout(storage.bucket, "champion_run").prefix("train"))
    rerun = trained(storage, "champion_run", 0.9, weights=b"other settings")  # the same run, retrained
    assert rerun.model_sha256 != served.model_sha256  # so evaluate judges it instead of "already the champion"
    assert {o["Key"]: o["ETag"] for o in storage.list_objects(version_prefix(served.version))} == before
    assert read_champion(storage)[0].version == served.version
    assert register(storage, candidate).version == served.version  # registering again rewrites nothing
    assert {o["Key"]: o["ETag"] for o in storage.list_objects(version_prefix(served.version))} == before


def test_a_version_keeps_the_images_it_was_trained_on(storage):
    """A later candidate's gate leaves them out when it re-scores the version; a version registered
    without them says so (None), and an unreadable record is an error naming it, never "none"."""
    storage.put_json(RunLayout(storage.bucket, "recorded").key(TRAINED_ON), {"content_sha256": ["h1", "h2"]})
    recorded, unrecorded = (register(storage, trained(storage, run, 0.9)) for run in ("recorded", "unrecorded"))
    storage.delete_prefix(RunLayout(storage.bucket, "recorded").prefix("evaluate"))  # the run may be re-run
    assert training_images(storage, recorded.version) == frozenset({"h1", "h2"})
    assert training_images(storage, unrecorded.version) is None
    storage.put_json(version_prefix(unrecorded.version) + TRAINED_ON.name, ["h1"])
    with pytest.raises(RegistryError, match=re.escape(f"{version_prefix(unrecorded.version)}{TRAINED_ON.name} does not")):
        training_images(storage, unrecorded.version)


def test_rollback_points_at_the_earlier_version_which_is_still_there(storage):
    first = promote_if_better(storage, trained(storage, "first", 0.8))
    second = promote_if_better(storage, trained(storage, "second", 0.9))
    back = rollback(storage, "bad outputs")
    assert (back.version, back.previous_version, back.action) == (first.version, second.version, "rollback")
    assert read_version(storage, second.version).run_id == "second"  # versions are never deleted
    with pytest.raises(RegistryError, match="does not exist"):
        rollback(storage, "typo", version="0123456789abcdef")


def test_rollbacks_go_back_one_promotion_each_and_stop_at_the_first(storage):
    first, second, third = (promote_if_better(storage, trained(storage, run, accuracy))
                            for run, accuracy in (("first", 0.7), ("second", 0.8), ("third", 0.9)))
    assert rollback(storage, "third is bad").version == second.version
    assert rollback(storage, "second is bad too").version == first.version  # not back to third
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(storage, "and first?")
    assert read_champion(storage)[0].version == first.version
    changes = len(history(storage))
    assert rollback(storage, "to what serves", version=first.version) is None  # nothing to change, nor to log
    assert len(history(storage)) == changes


def test_a_version_without_its_pipeline_never_serves(storage):
    served = promote_if_better(storage, trained(storage, "with_pipeline", 0.8))
    with pytest.raises(RegistryError, match="without its pipeline"):
        promote_if_better(storage, trained(storage, "model_only", 0.9, pipeline=False))
    assert read_champion(storage)[0].version == served.version


def test_promote_serves_only_the_model_its_run_evaluation_judged(storage):
    judged = trained(storage, "retrained", 0.9)
    layout = RunLayout(storage.bucket, "retrained")
    storage.put_json(layout.key(METRICS), {"accuracy": 0.9, "f1": 0.9, "gate": {"candidate_version": judged.version}})
    storage.put_json(layout.key(LINEAGE), {"settings": {"seed": 1}, "featurizer": FEATURIZER.model_dump(),
                                           "sample": {"eval": {"ids_sha256": "ids"}}})
    storage.delete_prefix(layout.prefix("train"))  # train runs again: its folder is emptied, then rewritten
    with pytest.raises(RegistryError, match=f"not the version {judged.version} its evaluation judged"):
        promote_run(storage, "retrained", "mid re-train")
    trained(storage, "retrained", 0.9, weights=b"other settings")
    with pytest.raises(RegistryError, match="trained again since"):
        promote_run(storage, "retrained", "before its evaluate")
    assert read_champion(storage) == (None, None)  # (promoting the judged bytes: test_jobs, on a real run)


@pytest.mark.parametrize("content", [b"{not json", b'{"run_id": "x", "model_uri": "s3://b/k"}', None])
def test_a_broken_champion_record_stops_promotion_and_can_be_repaired(storage, content):
    """Unparsable, incomplete, or deleted (None) while the history records promotions."""
    good = promote_if_better(storage, trained(storage, "good", 0.8))
    if content is None:
        storage.delete_keys([CHAMPION_KEY], "the test")
    else:
        storage.put_bytes(CHAMPION_KEY, content)
    with pytest.raises(RegistryError, match=re.escape(CHAMPION_KEY)):
        read_champion(storage)
    with pytest.raises(RegistryError, match="nothing is promoted until it is repaired"):
        promote_if_better(storage, trained(storage, "candidate", 0.99))
    if content is None:
        with pytest.raises(RegistryError, match=f"models rollback {good.version}"):
            read_champion(storage)
        assert not storage.exists(CHAMPION_KEY)  # still none: the candidate was not taken for a first champion
    else:
        assert storage.get_bytes(CHAMPION_KEY) == content  # untouched
    repaired = rollback(storage, "repair", version=good.version)
    assert read_champion(storage)[0].version == repaired.version == good.version
    assert (repaired.sequence, repaired.previous_version) == (2, good.version)  # from the history, not from 1
    assert [(change["sequence"], change["action"]) for change in history(storage)] == [(1, "promote"), (2, "rollback")]


def test_index_updates_are_not_lost_under_concurrency(storage):
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


def test_the_servers_own_http_apis_refuse_unsigned_requests(s3_server, storage):
    """The filer's and volume server's HTTP APIs, beside the S3 port, do not serve the bucket to anyone
    who asks: they take only requests signed with the keys the server drew at its start."""
    import urllib.error
    import urllib.request

    storage.put_json("models/probe.json", {"secret": "model"})
    for port in (s3_server.ports.filer, s3_server.ports.volume):
        url = f"http://127.0.0.1:{port}/buckets/{storage.bucket}/models/probe.json"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401, (port, refused.value.code)
    assert storage.get_json("models/probe.json") == {"secret": "model"}  # through S3, with the keys
