"""Each Spark job, run with spark-submit against the real S3 server, on a small real input."""

from __future__ import annotations

import pytest

from tests.conftest import make_numtadb, run_job, upload_folder

pytestmark = pytest.mark.integration
RUN_ID = "scheduled__2026-01-05T00:00:00+00:00"
SAFE_RUN_ID = "scheduled__2026-01-05T00_00_00_00_00"
PER_CLASS, EVAL_PER_CLASS = 6, 4


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, storage, s3_env, featurizer_env):
    """Training input in S3, evaluation input on local disk: both forms in one run."""
    root = tmp_path_factory.mktemp("inputs")
    train = upload_folder(storage, make_numtadb(root / "training-a", PER_CLASS + 2), "datasets/jobs")
    evaluation = make_numtadb(root / "training-c", EVAL_PER_CLASS, source="training-c")
    env = {**featurizer_env, "NUMTAFLOW_TRAIN_INPUT": train, "NUMTAFLOW_EVAL_INPUT": str(evaluation),
           "NUMTAFLOW_PER_CLASS": str(PER_CLASS), "NUMTAFLOW_EVAL_PER_CLASS": str(EVAL_PER_CLASS),
           "NUMTAFLOW_MIN_ACCURACY": "0", "NUMTAFLOW_MIN_F1": "0"}
    results = {}
    for step in ("validate", "sample", "featurize", "train", "evaluate"):
        results[step] = run_job(step, RUN_ID, env)
        if results[step].returncode != 0:
            break
    return results


def prefix(step):
    return f"runs/{SAFE_RUN_ID}/{step}/"


def read_parquet(storage, key_prefix):
    import io

    import pandas as pd

    parts = [o["Key"] for o in storage.list_objects(key_prefix) if o["Key"].endswith(".parquet")]
    assert parts, f"no Parquet parts under {key_prefix}"
    return pd.concat([pd.read_parquet(io.BytesIO(storage.get_bytes(k))) for k in parts], ignore_index=True)


def assert_step_ok(pipeline, step):
    result = pipeline[step]
    assert result.returncode == 0, result.stderr[-4000:]


def test_validate_passes_and_keeps_the_report(pipeline, storage):
    assert_step_ok(pipeline, "validate")
    report = storage.get_json(prefix("validate") + "report.json")
    assert report["success"] and [s["name"] for s in report["suites"]] == ["train", "eval"]
    assert b"PASSED" in storage.get_bytes(prefix("validate") + "report.html")
    marker = storage.get_json(prefix("validate") + "_COMMITTED.json")
    assert marker["summary"]["inputs"]["train"]["layout"] == "numtadb"
    assert len(marker["summary"]["inputs"]["train"]["manifest_sha256"]) == 64
    images = read_parquet(storage, prefix("validate") + "train_images.parquet/")
    assert len(images) == 10 * (PER_CLASS + 2) and images["content"].map(len).min() > 0


def test_sample_is_exact_and_disjoint(pipeline, storage):
    assert_step_ok(pipeline, "sample")
    train = read_parquet(storage, prefix("sample") + "train.parquet/")
    evaluation = read_parquet(storage, prefix("sample") + "eval.parquet/")
    assert train.groupby("label").size().to_dict() == {d: PER_CLASS for d in range(10)}
    assert evaluation.groupby("label").size().to_dict() == {d: EVAL_PER_CLASS for d in range(10)}
    assert set(train["source"]) == {"train"} and set(evaluation["source"]) == {"eval"}


def test_featurize_writes_one_vector_per_image(pipeline, storage):
    assert_step_ok(pipeline, "featurize")
    features = read_parquet(storage, prefix("featurize") + "train.parquet/")
    assert len(features) == 10 * PER_CLASS * 2  # each image and one distorted view (TRAIN_VIEWS=1)
    assert sorted(features["view"].unique()) == [0, 1]
    assert len(read_parquet(storage, prefix("featurize") + "eval.parquet/")) == 10 * EVAL_PER_CLASS
    assert features["features"].map(len).nunique() == 1 and len(features["features"].iloc[0]) > 100


def test_train_saves_model_and_exact_holdout(pipeline, storage):
    assert_step_ok(pipeline, "train")
    params = storage.get_json(prefix("train") + "params.json")
    assert params["params"]["preset"] == "tuned"
    assert params["n_train"] + params["n_holdout"] == 10 * PER_CLASS
    assert any(o["Key"].startswith(prefix("train") + "model/metadata/") for o in storage.list_objects(prefix("train")))


def test_evaluate_writes_metrics_and_promotes_first_champion(pipeline, storage):
    assert_step_ok(pipeline, "evaluate")
    metrics = storage.get_json(prefix("evaluate") + "metrics.json")
    for key in ("accuracy", "f1", "precision", "recall", "roc_auc", "per_class", "n_train", "n_eval", "backbone",
                "per_class_sample", "seed", "gate", "timings"):
        assert key in metrics, key
    for key in ("accuracy", "f1", "precision", "recall", "roc_auc"):
        assert 0.0 <= metrics["split"][key] <= 1.0
    assert metrics["n_eval"] == 10 * EVAL_PER_CLASS and metrics["per_class_sample"] == PER_CLASS
    assert set(metrics["timings"]) == {"validate", "sample", "featurize", "train", "evaluate"}
    gate = metrics["gate"]
    assert set(gate) >= {"promoted", "reasons", "champion_before", "champion_after"}
    champion = storage.get_json("models/champion.json")
    if gate["promoted"]:
        assert champion["run_id"] == SAFE_RUN_ID == gate["champion_after"]
    assert storage.get_bytes(prefix("evaluate") + "confusion_eval.png").startswith(b"\x89PNG")
    record = storage.get_json(f"runs/{SAFE_RUN_ID}/run.json")
    assert record["run_type"] == "manual" and record["backbone"]["backbone"] == "MobileNetV2"
    assert set(record["versions"]) >= {"python", "pyspark", "keras", "great-expectations"}


def test_rerunning_a_step_is_idempotent(pipeline, storage, s3_env, featurizer_env):
    """Retried steps rewrite their prefix: same sample ids, no duplicates, the model replaced."""
    assert_step_ok(pipeline, "sample")
    before = storage.get_json(prefix("sample") + "_COMMITTED.json")["summary"]
    env = {**featurizer_env, "NUMTAFLOW_TRAIN_INPUT": "unused", "NUMTAFLOW_PER_CLASS": str(PER_CLASS),
           "NUMTAFLOW_EVAL_PER_CLASS": str(EVAL_PER_CLASS)}
    again = run_job("sample", RUN_ID, env)
    assert again.returncode == 0, again.stderr[-3000:]
    after = storage.get_json(prefix("sample") + "_COMMITTED.json")["summary"]
    assert after["train"]["ids_sha256"] == before["train"]["ids_sha256"]
    assert len(read_parquet(storage, prefix("sample") + "train.parquet/")) == 10 * PER_CLASS
    assert_step_ok(pipeline, "train")
    retrain = run_job("train", RUN_ID, env)
    assert retrain.returncode == 0, (retrain.stdout + retrain.stderr)[-3000:]
    assert storage.get_json(prefix("train") + "_COMMITTED.json")["summary"]["n_train"] == 10 * round(PER_CLASS * 0.8)


def test_a_step_refuses_to_start_without_its_input_committed(storage, featurizer_env):
    result = run_job("train", "manual__never_sampled", featurizer_env)
    assert result.returncode == 1
    assert "step 'featurize' of run manual__never_sampled has no commit marker" in result.stdout + result.stderr
