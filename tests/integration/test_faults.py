"""Faults in the middle of a step, with the real S3 server and spark-submit: nothing half-written is trusted.

A step clears its prefix, writes, and commits with a marker last; readers require the marker.
Here a featurize job is killed while writing, and the S3 server is stopped under a running job:
each time no marker appears, the next step refuses to start, and a retry commits a complete output.
A run id that maps to this run's prefix is refused before it touches it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from numtaflow.catalog import FEATURE_CACHE_PREFIX, FEATURES, RUN_OWNER, SAMPLED_IMAGES
from numtaflow.contracts import JobExit
from tests.conftest import ROOT, commit, layout, make_numtadb, read_parquet, run_job, upload_folder

pytestmark = pytest.mark.integration
RUN_ID = "manual__faults"
PER_CLASS = 4
RUN = layout(RUN_ID)
MARKER = RUN.marker_key("featurize")


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, storage, featurizer_env):
    """A run with validate and sample committed, ready for featurize."""
    root = tmp_path_factory.mktemp("faults")
    train = upload_folder(storage, make_numtadb(root / "training-a", PER_CLASS), "datasets/faults")
    evaluation = upload_folder(storage, make_numtadb(root / "training-c", 1, source="training-c"), "datasets/faults")
    env = {**featurizer_env, "NUMTAFLOW_TRAIN_INPUT": train, "NUMTAFLOW_EVAL_INPUT": evaluation,
           "NUMTAFLOW_PER_CLASS": str(PER_CLASS), "NUMTAFLOW_EVAL_PER_CLASS": "1",
           "NUMTAFLOW_REUSE_STEPS": "false"}  # each step computes, and so can be interrupted
    for step in ("validate", "sample"):
        result = run_job(step, RUN_ID, env)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return env


def start_featurize(env: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "numtaflow", "submit", "featurize", "--run-id", RUN_ID, "--settings-json", "{}"]
    return subprocess.Popen(command, env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def writing_features(storage) -> bool:
    """Spark has started writing computed features (temporary files included): into the feature cache's
    part of this run, or without the cache into the step's own output."""
    output = [o["Key"] for o in storage.list_objects(RUN.key(FEATURES["train"]))]
    cached = [o["Key"] for o in storage.list_objects(FEATURE_CACHE_PREFIX) if f"/{RUN_ID}-train-" in o["Key"]]
    return any(key.endswith(".parquet") or "_temporary" in key for key in output + cached)


def wait_until_writing(storage, job: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not writing_features(storage):
        assert job.poll() is None, job.stdout.read()[-3000:]
        assert time.time() < deadline, "featurize never started writing"
        time.sleep(0.2)


def assert_complete_features(storage) -> None:
    summary = commit(storage, RUN_ID, "featurize").summary
    features = read_parquet(storage, RUN_ID, FEATURES["train"])
    assert len(features) == summary.train.rows
    assert not features.duplicated(["image_id", "view"]).any()
    assert set(features["image_id"]) == set(read_parquet(storage, RUN_ID, SAMPLED_IMAGES["train"])["image_id"])


def test_a_job_killed_mid_write_leaves_nothing_trusted_and_a_retry_completes(sampled, storage):
    storage.delete_prefix(FEATURE_CACHE_PREFIX)  # other tests' images may be these: every feature is computed
    job = start_featurize(sampled)
    wait_until_writing(storage, job)
    os.killpg(job.pid, signal.SIGKILL)  # spark-submit, the driver JVM and its Python workers
    job.wait(timeout=60)
    assert not storage.exists(MARKER)
    # the cache part being written has no marker, so no run will ever read it
    part_markers = [o["Key"] for o in storage.list_objects(FEATURE_CACHE_PREFIX)
                    if f"/{RUN_ID}-train-" in o["Key"] and o["Key"].endswith("/_COMMITTED.json")]
    assert part_markers == []
    train = run_job("train", RUN_ID, sampled)
    assert train.returncode == JobExit.REFUSED  # a retry of train cannot help: featurize must run again
    assert "step 'featurize' of run manual__faults has no commit marker" in train.stdout + train.stderr
    retry = run_job("featurize", RUN_ID, sampled)
    assert retry.returncode == 0, (retry.stdout + retry.stderr)[-3000:]
    assert_complete_features(storage)


def test_s3_stopped_mid_step_fails_cleanly_and_a_retry_after_it_is_back_succeeds(sampled, storage, s3_server):
    storage.delete_prefix(RUN.prefix("featurize"))  # so the earlier test's output is not taken for this one's
    sampled = {**sampled, "NUMTAFLOW_FEATURE_CACHE": "false"}  # every feature computed again, as S3 goes away
    job = start_featurize(sampled)
    wait_until_writing(storage, job)
    s3_server.stop()
    stopped = time.time()
    try:
        output, _ = job.communicate(timeout=540)
    finally:
        s3_server.start()
    print(f"featurize failed {time.time() - stopped:.0f} s after the S3 server stopped")
    assert job.returncode != 0
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in output
    assert not storage.exists(MARKER)
    refused = run_job("train", RUN_ID, sampled)  # the next step will not read what the failed one left
    assert refused.returncode == JobExit.REFUSED and "step 'featurize' of run manual__faults has no commit marker" in (
        refused.stdout + refused.stderr)
    retry = run_job("featurize", RUN_ID, sampled)
    assert retry.returncode == 0, (retry.stdout + retry.stderr)[-3000:]
    assert_complete_features(storage)


def test_a_run_id_that_maps_to_another_runs_prefix_is_refused_and_writes_nothing(sampled, storage):
    """``manual:_faults`` and ``manual__faults`` share the key-safe prefix ``manual__faults``: the run
    that claimed it first keeps it, and the other is refused before it deletes or writes anything."""
    before = {o["Key"]: o["ETag"] for o in storage.list_objects(RUN.root)}
    assert storage.get_json(RUN.key(RUN_OWNER)) == {"run_id": RUN_ID}
    other = run_job("sample", "manual:_faults", sampled)
    output = other.stdout + other.stderr
    assert other.returncode == JobExit.REFUSED, output[-3000:]
    assert (f"run id 'manual:_faults' maps to s3://{storage.bucket}/{RUN.root}, which holds the artifacts of run "
            f"'{RUN_ID}'") in output and "Traceback" not in output
    assert {o["Key"]: o["ETag"] for o in storage.list_objects(RUN.root)} == before
    again = run_job("sample", RUN_ID, sampled)  # the owner's re-run still passes
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
