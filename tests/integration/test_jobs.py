"""Each Spark job, run with spark-submit against the real S3 server, on a small real input."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from numtaflow import catalog
from numtaflow.catalog import (CANARY, CHAMPION_KEY, CONFUSION, EVAL_PREDICTIONS, FEATURES, FEATURIZER, LINEAGE,
                               METRICS, MISCLASSIFIED, MODEL, MODEL_CARD_EXAMPLES, MODEL_CARD_TEXT, PIPELINE,
                               PREDICTIONS, SAMPLED_IMAGES, SCORING_REPORT, STEPS, TRAIN_PARAMS, TRAINED_ON)
from numtaflow.contracts import JobExit
from numtaflow.registry import version_prefix
from tests.conftest import commit, layout, make_numtadb, read_parquet, run_job, upload_folder

pytestmark = pytest.mark.integration
RUN_ID = "scheduled__2026-01-05T00:00:00+00:00"
PER_CLASS, EVAL_PER_CLASS = 6, 4
BUCKET = {"NUMTAFLOW_BUCKET": "numtaflow-jobs-test"}  # a registry of its own: the first promotion is this run's


@pytest.fixture(scope="module")
def storage(s3_env):
    from numtaflow.catalog import REGISTRY_PREFIX
    from numtaflow.config import Settings
    from numtaflow.storage import Storage

    storage = Storage(Settings.from_env({**os.environ, **BUCKET}))
    storage.ensure_bucket()
    storage.delete_prefix(REGISTRY_PREFIX)
    return storage


@pytest.fixture(scope="module")
def inputs_env(tmp_path_factory, storage, s3_env, featurizer_env):
    """Training input in S3, evaluation input on local disk: both forms in one run."""
    root = tmp_path_factory.mktemp("inputs")
    train = upload_folder(storage, make_numtadb(root / "training-a", PER_CLASS + 2), "datasets/jobs")
    evaluation = make_numtadb(root / "training-c", EVAL_PER_CLASS, source="training-c")
    return {**featurizer_env, **BUCKET, "NUMTAFLOW_TRAIN_INPUT": train, "NUMTAFLOW_EVAL_INPUT": str(evaluation),
            "NUMTAFLOW_PER_CLASS": str(PER_CLASS), "NUMTAFLOW_EVAL_PER_CLASS": str(EVAL_PER_CLASS),
            "NUMTAFLOW_MIN_ACCURACY": "0", "NUMTAFLOW_MIN_F1": "0"}


@pytest.fixture(scope="module")
def pipeline(inputs_env):
    results = {}
    for step in STEPS:
        results[step] = run_job(step, RUN_ID, inputs_env)
        if results[step].returncode != 0:
            break
    return results


def assert_step_ok(pipeline, step):
    result = pipeline[step]
    assert result.returncode == 0, result.stderr[-4000:]


def test_validate_passes_and_keeps_the_report(pipeline, storage):
    assert_step_ok(pipeline, "validate")
    report = storage.get_json(layout(RUN_ID).key(catalog.VALIDATION_REPORT))
    assert report["success"] and [s["name"] for s in report["suites"]] == ["train", "eval"]
    assert b"PASSED" in storage.get_bytes(layout(RUN_ID).key(catalog.VALIDATION_HTML))
    summary = commit(storage, RUN_ID, "validate").summary
    assert summary.inputs["train"].layout == "numtadb" and len(summary.inputs["train"].manifest_sha256) == 64
    images = read_parquet(storage, RUN_ID, catalog.VALIDATED_IMAGES["train"])
    assert len(images) == 10 * (PER_CLASS + 2) and images["content"].map(len).min() > 0


def test_sample_is_exact_and_disjoint(pipeline, storage):
    assert_step_ok(pipeline, "sample")
    train = read_parquet(storage, RUN_ID, SAMPLED_IMAGES["train"])
    evaluation = read_parquet(storage, RUN_ID, SAMPLED_IMAGES["eval"])
    assert train.groupby("label").size().to_dict() == {d: PER_CLASS for d in range(10)}
    assert evaluation.groupby("label").size().to_dict() == {d: EVAL_PER_CLASS for d in range(10)}
    assert set(train["source"]) == {"train"} and set(evaluation["source"]) == {"eval"}


def test_featurize_writes_one_vector_per_image(pipeline, storage):
    assert_step_ok(pipeline, "featurize")
    features = read_parquet(storage, RUN_ID, FEATURES["train"])
    assert len(features) == 10 * PER_CLASS * 2  # each image and one distorted view (TRAIN_VIEWS=1)
    assert sorted(features["view"].unique()) == [0, 1]
    assert len(read_parquet(storage, RUN_ID, FEATURES["eval"])) == 10 * EVAL_PER_CLASS
    assert features["features"].map(len).nunique() == 1 and len(features["features"].iloc[0]) > 100
    assert any(storage.list_objects(layout(RUN_ID).key(FEATURIZER) + "/metadata/"))  # the pipeline's first stage
    summary = commit(storage, RUN_ID, "featurize").summary  # a fresh bucket: every feature computed, then cached
    assert summary.train.reused == 0 and summary.train.images_through_cnn == len(features)


def test_train_saves_model_and_exact_holdout(pipeline, storage):
    assert_step_ok(pipeline, "train")
    params = storage.get_json(layout(RUN_ID).key(TRAIN_PARAMS))
    assert params["params"]["preset"] == "tuned"
    assert params["n_train"] + params["n_holdout"] == 10 * PER_CLASS
    assert any(storage.list_objects(layout(RUN_ID).key(MODEL) + "/metadata/"))
    stages = {o["Key"].split("/stages/")[1].split("/")[0] for o in storage.list_objects(layout(RUN_ID).key(PIPELINE))
              if "/stages/" in o["Key"]}
    # stage folders are <index>_<uid>, a uid being <class>_<hex>
    assert sorted(stage.split("_")[1] for stage in stages) == ["ImageFeaturizer", "LogisticRegression",
                                                               "SQLTransformer"]


def test_evaluate_writes_metrics_and_promotes_first_champion(pipeline, storage, featurizer_env, tmp_path):
    assert_step_ok(pipeline, "evaluate")
    metrics = storage.get_json(layout(RUN_ID).key(METRICS))
    for key in ("accuracy", "f1", "precision", "recall", "roc_auc", "per_class", "n_train", "n_eval", "backbone",
                "per_class_sample", "seed", "gate", "timings"):
        assert key in metrics, key
    for key in ("accuracy", "f1", "precision", "recall", "roc_auc"):
        assert 0.0 <= metrics["split"][key] <= 1.0
    assert metrics["n_eval"] == 10 * EVAL_PER_CLASS and metrics["per_class_sample"] == PER_CLASS
    assert set(metrics["timings"]) == set(STEPS)
    gate = metrics["gate"]
    assert gate["reasons"][0] == ("the saved pipeline, loaded in its own process, gave evaluate's digit for all "
                                  f"{10 * EVAL_PER_CLASS} canary images, every probability within 0.0001")
    predictions = read_parquet(storage, RUN_ID, EVAL_PREDICTIONS)
    assert len(predictions) == 10 * EVAL_PER_CLASS and (predictions["label"] == predictions["digit"]).mean() == \
        pytest.approx(metrics["accuracy"], abs=1e-4)
    canary = storage.get_json(layout(RUN_ID).key(CANARY))
    assert canary["error"] is None and set(canary["scores"]) == set(predictions["image_id"])
    assert set(gate) >= {"promoted", "reasons", "champion_before", "champion_after"}
    champion = storage.get_json(CHAMPION_KEY)
    assert gate["promoted"] and gate["champion_before"] is None
    assert champion["run_id"] == layout(RUN_ID).run_id == gate["champion_after"]
    assert champion["version"] == gate["candidate_version"] and champion["model_uri"].endswith(
        f"{version_prefix(champion['version'])}model")
    assert any(storage.list_objects(version_prefix(champion["version"]) + "model/metadata/"))
    card = storage.get_bytes(version_prefix(champion["version"]) + MODEL_CARD_TEXT).decode()
    assert f"# Model card: version {champion['version']}" in card and "## Most confused digits" in card
    assert f"Accuracy {metrics['accuracy']:.4f}" in card
    assert storage.get_bytes(layout(RUN_ID).key(CONFUSION["eval"])).startswith(b"\x89PNG")
    assert storage.get_bytes(layout(RUN_ID).key(MISCLASSIFIED)).startswith(b"\x89PNG")
    assert storage.get_bytes(version_prefix(champion["version"]) + MODEL_CARD_EXAMPLES).startswith(b"\x89PNG")
    record = storage.get_json(layout(RUN_ID).key(LINEAGE))
    assert record["run_type"] == "manual" and record["featurizer"]["backbone"] == "MobileNetV2"
    for artifact in (METRICS, LINEAGE, CONFUSION["eval"], MODEL, PIPELINE):  # URIs in this module's bucket
        expected = f"s3://{storage.bucket}/{layout(RUN_ID).key(artifact)}"
        assert any(uri.startswith(expected) for uri in record["artifacts"]), artifact.name
    assert set(record["versions"]) >= {"python", "pyspark", "keras", "great-expectations"}
    (tmp_path / "notes.png").write_text("not a scan")  # nothing to score: the model is found, Spark never starts
    by_run = subprocess.run([sys.executable, "-m", "numtaflow", "predict", str(tmp_path / "notes.png"), "--model",
                             RUN_ID], env={**os.environ, **featurizer_env, **BUCKET}, capture_output=True, text=True,
                            timeout=120)  # the run id as Airflow shows it, ':' and '+' included
    assert by_run.returncode == 1 and by_run.stderr.strip() == "predict: no image could be scored", by_run.stderr


def test_a_second_run_reads_every_feature_from_the_cache_and_gets_the_same_model(pipeline, storage, inputs_env):
    """The same inputs and settings under another run id: no image goes through the network again, and
    the metrics and every prediction equal those of the run that computed the features. A committed
    cache part that cannot be read is left out, named, and the readable ones still serve."""
    assert_step_ok(pipeline, "evaluate")
    run_id = "manual__cached"
    folders = {"/".join(o["Key"].split("/")[:3]) for o in storage.list_objects(catalog.FEATURE_CACHE_PREFIX)}
    broken = [f"{folder}/zz-broken/" for folder in folders]
    for part in broken:
        storage.put_bytes(part + "part-00000.parquet", b"not parquet")
        storage.put_json(part + catalog.COMMIT_MARKER, {"rows": 1})
    try:
        for step in STEPS:  # validate and sample reused; from featurize on, the setting that makes each step compute
            computing = STEPS.index(step) >= STEPS.index("featurize")
            result = run_job(step, run_id, {**inputs_env, "NUMTAFLOW_REUSE_STEPS": str(not computing).lower()})
            assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
            assert (commit(storage, run_id, step).reused_from is None) == computing, step
            if step == "featurize":
                assert "left out the unreadable cache part" in result.stdout + result.stderr
    finally:
        for part in broken:
            storage.delete_prefix(part)
    featurized = commit(storage, run_id, "featurize").summary
    for name in ("train", "eval"):
        assert getattr(featurized, name).reused == getattr(featurized, name).rows > 0, name
        assert getattr(featurized, name).images_through_cnn == 0, name
    assert storage.get_json(layout(run_id).key(LINEAGE))["features"]["eval"]["reused"] == featurized.eval.rows
    first, second = (storage.get_json(layout(run).key(METRICS)) for run in (RUN_ID, run_id))
    for key in ("accuracy", "f1", "roc_auc", "per_class", "confusion_matrix", "split"):
        assert first[key] == second[key], key
    before, after = (read_parquet(storage, run, EVAL_PREDICTIONS).sort_values("image_id").reset_index(drop=True)
                     for run in (RUN_ID, run_id))
    assert before["digit"].tolist() == after["digit"].tolist()
    assert np.array_equal(np.stack(before["p"].to_numpy()), np.stack(after["p"].to_numpy()))


def test_a_run_whose_inputs_did_not_change_reuses_each_step_and_gets_the_same_model(pipeline, storage, inputs_env):
    """Same inputs, settings and code under a third run id: validate, sample, featurize and train take an
    earlier run's committed output (copied, no Spark session started); canary and evaluate run. The
    metrics and every prediction equal those of the first run."""
    assert_step_ok(pipeline, "evaluate")
    run_id = "manual__reused"
    logs = {}
    for step in STEPS:
        result = run_job(step, run_id, inputs_env)
        logs[step] = result.stdout + result.stderr
        assert result.returncode == 0, logs[step][-4000:]
    record = storage.get_json(layout(run_id).key(LINEAGE))
    for step in ("validate", "sample", "featurize", "train"):
        marker = commit(storage, run_id, step)
        source = commit(storage, marker.reused_from, step)
        assert marker.reused_from in (layout(RUN_ID).run_id, "manual__cached") and source.reused_from is None, step
        assert f"reused the committed output of run {marker.reused_from}" in logs[step], step
        assert marker.fingerprint == source.fingerprint, step
        # the same data; a reused validate records this run's own batch selection (its cut-off, when chosen)
        run_facts = {"data_until", "incoming"} if step == "validate" else set()
        assert marker.summary.model_dump(exclude=run_facts) == source.summary.model_dump(exclude=run_facts), step
        assert set(marker.outputs) == set(source.outputs), step
        assert record["steps"][step]["reused_from"] == marker.reused_from
    assert [commit(storage, run_id, step).reused_from for step in ("canary", "evaluate")] == [None, None]
    page = storage.get_bytes(layout(run_id).key(catalog.VALIDATION_HTML)).decode()
    assert f"Input validation, run {run_id}" in page and commit(storage, run_id, "validate").reused_from not in page
    first, again = (storage.get_json(layout(run).key(METRICS)) for run in (RUN_ID, run_id))
    for key in ("accuracy", "f1", "roc_auc", "per_class", "confusion_matrix", "split"):
        assert first[key] == again[key], key
    before, after = (read_parquet(storage, run, EVAL_PREDICTIONS).sort_values("image_id").reset_index(drop=True)
                     for run in (RUN_ID, run_id))
    assert np.array_equal(np.stack(before["p"].to_numpy()), np.stack(after["p"].to_numpy()))


def scoring_layout(run_id: str):
    return catalog.RunLayout.scoring(BUCKET["NUMTAFLOW_BUCKET"], run_id)


def score(run_id: str, env: dict, settings: dict, steps=catalog.SCORING_STEPS) -> None:
    for step in steps:
        result = run_job(step, run_id, env, settings=settings)
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def predictions(storage, run_id: str) -> pd.DataFrame:
    return storage.get_frame(scoring_layout(run_id).key(PREDICTIONS["parquet"]))


def test_scoring_the_evaluation_images_gives_evaluates_digits(pipeline, storage, featurizer_env, tmp_path):
    """The evaluation images of the finished run, labels removed, through check, score and report with the
    champion: each gets the digit (and the probabilities) evaluate recorded; scoring again rewrites the
    same predictions."""
    assert_step_ok(pipeline, "evaluate")
    champion = storage.get_json(CHAMPION_KEY)
    images = read_parquet(storage, RUN_ID, SAMPLED_IMAGES["eval"])
    folder = tmp_path / "unlabelled"
    folder.mkdir()
    for image_id, content in zip(images["image_id"], images["content"]):
        (folder / image_id.rsplit("/", 1)[-1]).write_bytes(content)
    run_id, env = "manual__score-eval", {**featurizer_env, **BUCKET}
    score(run_id, env, {"scoring_input": str(folder)})
    table = predictions(storage, run_id)
    expected = read_parquet(storage, RUN_ID, EVAL_PREDICTIONS)
    expected["name"] = expected["image_id"].str.rsplit("/", n=1).str[-1]
    assert dict(zip(table["image_id"], table["digit"])) == dict(zip(expected["name"], expected["digit"]))
    served = table.set_index("image_id")[[f"p_{d}" for d in range(10)]]
    recorded = np.stack(expected.set_index("name").loc[served.index, "p"].to_numpy())
    np.testing.assert_allclose(served.to_numpy(), recorded, atol=1e-4)
    assert set(table["model_version"]) == {champion["version"]}
    assert table["path"].tolist() == [f"{folder}/{name}" for name in table["image_id"]]
    report = storage.get_json(scoring_layout(run_id).key(SCORING_REPORT))
    assert report["images_scored"] == 10 * EVAL_PER_CLASS and report["images_rejected"] == 0
    assert report["model"]["version"] == champion["version"] and report["model"]["requested"] == "champion"
    assert sum(report["predicted_distribution"].values()) == 10 * EVAL_PER_CLASS
    assert report["evaluation_low_confidence_share"] is not None and 0 <= report["psi"]
    assert [entry["n"] for entry in report["gallery"]] == list(range(24))
    assert storage.get_bytes(f"{scoring_layout(run_id).key(catalog.GALLERY)}/23.png").startswith(b"\x89PNG")
    labels = tmp_path / "withheld.csv"
    withheld = pd.DataFrame({"filename": images["image_id"].str.rsplit("/", n=1).str[-1], "digit": images["label"]})
    withheld.to_csv(labels, index=False)
    right = (table.merge(withheld, left_on="image_id", right_on="filename").eval("digit_x == digit_y")).mean()
    command = [sys.executable, "-m", "numtaflow", "scoring-report", "--run-id", run_id, "--labels"]
    printed = subprocess.run([*command, str(labels)], env={**os.environ, **env}, capture_output=True, text=True)
    assert printed.returncode == 0, printed.stderr
    assert f"accuracy:    {right:.4f} on {10 * EVAL_PER_CLASS} images, against the withheld labels" in printed.stdout
    (tmp_path / "other.csv").write_text("filename,digit\nnot-scored.png,3\n")
    for arguments, message in (
            ([str(tmp_path / "other.csv")], "not one of its 1 file names is among the run's 40 scored images"),
            ([str(tmp_path / "nope.csv")], "No such file or directory")):
        refused = subprocess.run([*command, *arguments], env={**os.environ, **env}, capture_output=True, text=True)
        assert refused.returncode == 1 and message in refused.stderr and "Traceback" not in refused.stderr
    unfinished = subprocess.run([*command[:5], "manual__never-finished"], env={**os.environ, **env},
                                capture_output=True, text=True)
    assert unfinished.returncode == 1 and "scoring run manual__never-finished has no report" in unfinished.stderr
    csv = storage.get_bytes(scoring_layout(run_id).key(PREDICTIONS["csv"]))
    score(run_id, env, {"scoring_input": str(folder)}, steps=("score_batch",))
    assert storage.get_bytes(scoring_layout(run_id).key(PREDICTIONS["csv"])) == csv
    gate_key = layout(champion["run_id"]).key(catalog.GATE)
    gate = storage.get_json(gate_key)
    storage.put_json(gate_key, {**gate, "candidate_version": "0" * 16})  # as if a re-run had evaluated another model
    try:
        score(run_id, env, {"scoring_input": str(folder)}, steps=("report_batch",))
    finally:
        storage.put_json(gate_key, gate)
    assert storage.get_json(scoring_layout(run_id).key(SCORING_REPORT))["evaluation_low_confidence_share"] is None


def test_a_scoring_run_keeps_its_pinned_model_and_scores_around_bad_files(pipeline, storage, featurizer_env,
                                                                         tmp_path):
    """A zip holding a truncated file, a text file named .png, a decompression bomb, a scan whose name
    Spark takes for hidden, a member the archive cannot give (encrypted) and a 16-bit grey PNG among good
    images; a new champion promoted between check and score: those five are in rejected.csv with their
    reasons, the rest scored, all by the version the run pinned."""
    import zipfile

    from PIL import Image, ImageDraw

    from numtaflow.data import HIDDEN_REASON
    from numtaflow.registry import ModelVersion, read_champion, switch_champion

    assert_step_ok(pipeline, "evaluate")
    folder = make_numtadb(tmp_path / "batch", 1, source="training-c", offset=60)
    good = sorted(p.name for p in folder.iterdir())
    (folder / "truncated.png").write_bytes((folder / good[0]).read_bytes()[:60])
    (folder / "notes.png").write_text("not a scan")
    Image.new("1", (5000, 5000), 1).save(folder / "bomb.png")
    (folder / "_scan.png").write_bytes((folder / good[0]).read_bytes())
    grey16 = Image.new("I;16", (40, 40), 60000)
    ImageDraw.Draw(grey16).line((8, 8, 30, 32), fill=2000, width=4)
    grey16.save(folder / "grey16.png")
    batch = tmp_path / "scans.zip"
    with zipfile.ZipFile(batch, "w") as archive:  # every member in one folder, as most zip tools make them
        for path in sorted(folder.iterdir()):
            archive.write(path, f"scans/{path.name}")
        archive.writestr("scans/locked.png", (folder / good[1]).read_bytes())
    content = bytearray(batch.read_bytes())
    content[content.rindex(b"PK\x01\x02") + 8] |= 0x1  # locked.png, the last member, flagged as encrypted
    batch.write_bytes(bytes(content))
    run_id, env = "manual__score-batch", {**featurizer_env, **BUCKET}
    score(run_id, env, {"scoring_input": str(batch)}, steps=("check_batch",))
    champion, _ = read_champion(storage)
    pinned = ModelVersion(**champion.model_dump(include=set(ModelVersion.model_fields)))
    other = pinned.model_copy(update={"version": "0" * 16, "pipeline_uri": pinned.pipeline_uri + "-elsewhere"})
    switch_champion(storage, lambda current: (other, "promote", ["promoted while a scoring run was under way"]),
                    "a promotion during scoring")
    try:
        score(run_id, env, {"scoring_input": str(batch)}, steps=("score_batch", "report_batch"))
    finally:
        switch_champion(storage, lambda current: (pinned, "rollback", ["restored after the test"]), "restoring")
    table = predictions(storage, run_id)
    assert sorted(table["image_id"]) == sorted(good + ["grey16.png"])
    assert set(table["model_version"]) == {pinned.version}
    rejected = pd.read_csv(io.BytesIO(storage.get_bytes(scoring_layout(run_id).key(catalog.REJECTED))))
    reasons = dict(zip(rejected["image_id"], rejected["reason"]))
    assert set(reasons) == {"truncated.png", "notes.png", "bomb.png", "_scan.png", "locked.png"}
    assert reasons["locked.png"] == "encrypted in its archive: it needs a password"  # the rest still scored
    # the files as the user named them, not the bucket's staged copy of the archive
    assert set(rejected["path"]) | set(table["path"]) == {f"{batch}/scans/{name}"
                                                          for name in [*reasons, *table["image_id"]]}
    assert reasons["_scan.png"] == HIDDEN_REASON
    assert reasons["notes.png"] == "not an image (unrecognised format)" and "truncated" in reasons["truncated.png"]
    assert reasons["bomb.png"].startswith("image too large: 5000x5000")
    report = storage.get_json(scoring_layout(run_id).key(SCORING_REPORT))
    assert report["images_rejected"] == 5 and report["model"]["version"] == pinned.version


def test_a_batch_with_nothing_scorable_fails_naming_each_file(pipeline, storage, featurizer_env, tmp_path):
    assert_step_ok(pipeline, "evaluate")  # the champion to pin
    (tmp_path / "notes.png").write_text("not a scan")
    result = run_job("check_batch", "manual__nothing", {**featurizer_env, **BUCKET},
                     settings={"scoring_input": str(tmp_path)})
    assert result.returncode == JobExit.REFUSED
    output = result.stdout + result.stderr  # spark-submit passes the driver's stderr to its stdout
    assert f"all 1 files were refused ({tmp_path}/notes.png: not an image (unrecognised format))" in output


def test_an_empty_inbox_batch_is_refused_without_blocking_those_claimed_with_it(pipeline, storage, featurizer_env,
                                                                               tmp_path):
    """An inbox batch committed with nothing but its marker, claimed by one run together with a batch of
    scans: the empty one is a row of rejected.csv, and the scans are checked and scorable; a marker in the
    wrong place is named in the task's log."""
    from numtaflow.incoming import land, new_batch

    assert_step_ok(pipeline, "evaluate")
    inbox = f"s3://{BUCKET['NUMTAFLOW_BUCKET']}/inbox-with-an-empty-batch"
    storage.delete_prefix("inbox-with-an-empty-batch/")
    scans = make_numtadb(tmp_path / "scans", 1, source="training-c", offset=70)
    full, empty = (new_batch(storage, inbox, "2026-11-04", name) for name in ("scans", "empty"))
    land(storage, full, [(path.name, str(path)) for path in sorted(scans.glob("*.png"))], {"source": "a test"})
    land(storage, empty, [], {"source": "a test"})
    storage.put_json("inbox-with-an-empty-batch/dt=2026-11-4/late/_BATCH.json", {})  # the day not zero-padded
    result = run_job("check_batch", "manual__empty-batch", {**featurizer_env, **BUCKET, "NUMTAFLOW_INBOX_INPUT": inbox})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert f"inbox batch refused, not scored: {inbox}/dt=2026-11-4/late/_BATCH.json" in result.stdout + result.stderr
    rejected = pd.read_csv(io.BytesIO(storage.get_bytes(scoring_layout("manual__empty-batch").key(catalog.REJECTED))))
    assert rejected.values.tolist() == [["dt=2026-11-04/empty/", empty.uri, f"{empty.uri} holds no files"]]
    marker = storage.get_json(scoring_layout("manual__empty-batch").marker_key("check_batch"))
    assert (marker["summary"]["scorable"], marker["summary"]["rejected"]) == (10, 1)


def test_an_inbox_batch_leaves_out_a_runs_evaluation_images(pipeline, storage, inputs_env, tmp_path):
    """``inbox-batch --exclude-run`` (``make demo``'s scans) lands none of that run's evaluation images, so
    scoring's accuracy against the withheld labels is measured on images the model never saw."""
    assert_step_ok(pipeline, "evaluate")
    evaluation = set(read_parquet(storage, RUN_ID, EVAL_PREDICTIONS)["image_id"])
    assert len(evaluation) == 10 * EVAL_PER_CLASS  # every image of the evaluation input
    source = make_numtadb(tmp_path / "training-c", EVAL_PER_CLASS + 1, source="training-c")  # and one more each
    env = {**os.environ, **inputs_env, "NUMTAFLOW_INBOX_INPUT": f"s3://{BUCKET['NUMTAFLOW_BUCKET']}/inbox-exclude"}
    command = [sys.executable, "-m", "numtaflow", "inbox-batch", "--exclude-run", RUN_ID, "--date", "2026-11-05"]
    refused = subprocess.run([*command, "--source", inputs_env["NUMTAFLOW_EVAL_INPUT"], "--count", "1"], env=env,
                             capture_output=True, text=True)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    assert "inbox-batch: " in refused.stderr and "has only 0 labelled images outside those excluded" in refused.stderr
    landed = subprocess.run([*command, "--source", str(source), "--count", "10", "--labels-out",
                             str(tmp_path / "labels.csv")], env=env, capture_output=True, text=True)
    assert landed.returncode == 0, landed.stderr[-2000:]
    assert f"none of run {layout(RUN_ID).run_id}'s {len(evaluation)} evaluation images" in landed.stdout
    labels = pd.read_csv(tmp_path / "labels.csv")
    assert sorted(labels["digit"]) == list(range(10)) and not set(labels["filename"]) & evaluation
    assert len({name.rsplit("/", 1)[-1] for name in evaluation} | set(labels["filename"].str.rsplit("/").str[-1])) \
        == 10 * (EVAL_PER_CLASS + 1)  # the names differ, not only their folders


def test_rerunning_a_step_is_idempotent(pipeline, storage, s3_env, featurizer_env):
    """Retried steps rewrite their prefix: same sample ids, no duplicates, the model replaced."""
    assert_step_ok(pipeline, "sample")
    before = commit(storage, RUN_ID, "sample").summary
    env = {**featurizer_env, **BUCKET, "NUMTAFLOW_TRAIN_INPUT": "unused", "NUMTAFLOW_PER_CLASS": str(PER_CLASS),
           "NUMTAFLOW_EVAL_PER_CLASS": str(EVAL_PER_CLASS)}
    again = run_job("sample", RUN_ID, env)
    assert again.returncode == 0, again.stderr[-3000:]
    after = commit(storage, RUN_ID, "sample").summary
    assert after.train.ids_sha256 == before.train.ids_sha256
    assert len(read_parquet(storage, RUN_ID, SAMPLED_IMAGES["train"])) == 10 * PER_CLASS
    assert_step_ok(pipeline, "train")
    retrain = run_job("train", RUN_ID, env)
    assert retrain.returncode == 0, (retrain.stdout + retrain.stderr)[-3000:]
    assert commit(storage, RUN_ID, "train").summary.n_train == 10 * round(PER_CLASS * 0.8)


def test_a_step_refuses_to_start_without_its_input_committed(storage, featurizer_env):
    result = run_job("train", "manual__never_sampled", featurizer_env)
    assert result.returncode == JobExit.REFUSED
    assert "step 'featurize' of run manual__never_sampled has no commit marker" in result.stdout + result.stderr


def test_retraining_the_champions_run_goes_through_the_gate(pipeline, storage, featurizer_env):
    """Re-running train and evaluate on the champion's own run id with other settings must not swap the
    served model behind the gate's back (it used to answer 'already the champion'); nor is the served
    model judged on images it was trained on."""
    assert_step_ok(pipeline, "evaluate")
    served = storage.get_json(CHAMPION_KEY)
    files = {o["Key"]: o["ETag"] for o in storage.list_objects(version_prefix(served["version"]))}
    env = {**featurizer_env, **BUCKET, "NUMTAFLOW_MIN_ACCURACY": "0", "NUMTAFLOW_MIN_F1": "0"}
    # the served version keeps its training sample's images; as if it had been trained on a quarter of
    # this run's evaluation images too (an evaluation input overlapping its training input)
    record = version_prefix(served["version"]) + TRAINED_ON.name
    recorded = storage.get_bytes(record)
    trained_on = json.loads(recorded)["content_sha256"]
    assert len(trained_on) == 10 * PER_CLASS
    evaluation = read_parquet(storage, RUN_ID, SAMPLED_IMAGES["eval"])
    shared = [hashlib.sha256(bytes(content)).hexdigest() for content in evaluation["content"]][: len(evaluation) // 4]
    storage.put_json(record, {"content_sha256": trained_on + shared})
    try:
        for step in ("train", "canary", "evaluate"):
            result = run_job(step, RUN_ID, env, settings={"lr_preset": "study"})
            assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    finally:
        storage.put_bytes(record, recorded)
    gate = storage.get_json(layout(RUN_ID).key(METRICS))["gate"]
    assert gate["candidate_version"] != served["version"]
    assert not any("already the champion" in reason for reason in gate["reasons"])
    assert gate["champion_version_before"] == served["version"]
    unseen = len(evaluation) - len(shared)
    assert gate["compared_with"].startswith(f"champion re-scored on the {unseen} of this run's {len(evaluation)} "
                                            "evaluation images it was not trained on")
    assert gate["candidate_metrics_compared"]["n"] == unseen
    after = storage.get_json(CHAMPION_KEY)
    assert after["version"] == (gate["candidate_version"] if gate["promoted"] else served["version"])
    # whatever the verdict, the version that served is still there, byte for byte
    assert {o["Key"]: o["ETag"] for o in storage.list_objects(version_prefix(served["version"]))} == files


def break_a_stage(storage, run_id: str) -> None:
    """Delete the logistic regression's folder from the saved pipeline."""
    prefix = layout(run_id).key(PIPELINE) + "/stages/"
    key = next(o["Key"] for o in storage.list_objects(prefix) if "LogisticRegression" in o["Key"])
    assert storage.delete_prefix(prefix + key[len(prefix):].split("/")[0] + "/") > 0


def claim_other_weights(storage, run_id: str) -> None:
    """Rewrite the pipeline's featurizer metadata to name weights with another sha256."""
    prefix = layout(run_id).key(PIPELINE) + "/stages/"
    key = next(o["Key"] for o in storage.list_objects(prefix)
               if "ImageFeaturizer" in o["Key"] and "/metadata/part-" in o["Key"])
    text = storage.get_bytes(key).decode()
    sha256 = json.loads(text)["paramMap"]["weightsSha256"]
    storage.put_bytes(key, text.replace(sha256, "ab" * 32).encode())


@pytest.mark.parametrize("corrupt, cause, retried", [
    (break_a_stage, "Path does not exist", True),
    (claim_other_weights, "WeightsMismatch: weights file", False),
])
def test_a_saved_pipeline_that_cannot_serve_is_never_promoted(pipeline, storage, featurizer_env, corrupt, cause,
                                                              retried):
    """A candidate good enough by its metrics, whose saved pipeline is broken after train: canary records
    why (on its last try; an earlier one fails, to be retried, as a passing S3 outage would), the gate
    refuses it, and the champion and its files stay as they were."""
    assert_step_ok(pipeline, "evaluate")
    served = storage.get_json(CHAMPION_KEY)
    files = {o["Key"]: o["ETag"] for o in storage.list_objects(version_prefix(served["version"]))}
    env = {**featurizer_env, **BUCKET, "NUMTAFLOW_MIN_ACCURACY": "0", "NUMTAFLOW_MIN_F1": "0"}
    settings = {"split_seed": 7, "max_regression": 1.0}  # another model, which the metrics alone would promote
    assert run_job("train", RUN_ID, env, settings=settings).returncode == 0
    corrupt(storage, RUN_ID)
    if retried:
        result = run_job("canary", RUN_ID, env, settings=settings, retries_left=1)
        assert result.returncode == JobExit.FAILED, (result.stdout + result.stderr)[-3000:]
        assert "the task's next try scores the canary again" in result.stdout + result.stderr
        assert not storage.exists(layout(RUN_ID).marker_key("canary"))
    for step in ("canary", "evaluate"):
        result = run_job(step, RUN_ID, env, settings=settings)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert cause in storage.get_json(layout(RUN_ID).key(CANARY))["error"]
    gate = storage.get_json(layout(RUN_ID).key(METRICS))["gate"]
    assert not gate["promoted"] and gate["reasons"][0].startswith("the saved pipeline is not servable: it could not be "
                                                                  "loaded or run")
    assert cause in gate["reasons"][0]
    assert all("regresses" not in reason for reason in gate["reasons"])  # the canary alone refused it
    assert storage.get_json(CHAMPION_KEY) == served
    assert {o["Key"]: o["ETag"] for o in storage.list_objects(version_prefix(served["version"]))} == files


def test_predict_classifies_new_images_with_the_champions_pipeline(pipeline, storage, featurizer_env, tmp_path):
    """`numtaflow predict` on unlabelled files: a digit and the three most likely per image, a one-line
    reason for a file that is no image; the champion's pipeline from its registry version. The same
    files in a local folder, a zip in S3 and an S3 prefix (another bucket than the workflow's) get the
    same lines; a prefix holding only a zip is refused, naming the archive to pass instead."""
    assert_step_ok(pipeline, "evaluate")
    scans = make_numtadb(tmp_path / "scans", 1, source="training-c", offset=40)
    (scans / "notes.png").write_text("not a scan")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(scans.iterdir()):
            out.write(path, f"scans/{path.name}")
    storage.put_bytes("predict-input/scans.zip", archive.getvalue())
    storage.put_bytes("predict-input/downloads/scans.zip", archive.getvalue())
    in_s3 = upload_folder(storage, scans, "predict-input")
    in_zip = f"s3://{storage.bucket}/predict-input/scans.zip"
    only_a_zip = f"s3://{storage.bucket}/predict-input/downloads"
    env = {**os.environ, **featurizer_env, **BUCKET}
    result = subprocess.run([sys.executable, "-m", "numtaflow", "predict", str(scans), in_zip, in_s3, only_a_zip],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    for folder in (str(scans), f"{in_zip}/scans", in_s3):
        assert f"{folder}/notes.png: refused: not an image (unrecognised format)" in lines
    assert f"{only_a_zip}: refused: no image file in it: 1 file, none ending in .png, .jpg, .jpeg, .bmp, .gif, " \
           ".tif, .tiff, .webp; an archive inside is opened only when named itself, such as scans.zip" in lines
    described = {}  # file name: its descriptions under the three inputs
    for line in lines:
        if "refused" not in line:
            name, description, digit, top = re.fullmatch(
                r".+/(\w+\.png): ((\d) \((\d) [0-9.]+, \d [0-9.]+, \d [0-9.]+\))", line).groups()
            assert digit == top
            described.setdefault(name, set()).add(description)
    assert len(lines) == 3 * 11 + 1 and len(described) == 10
    assert all(len(descriptions) == 1 for descriptions in described.values()), described
    served = storage.get_json(CHAMPION_KEY)
    assert f"version {served['version']} of run" in result.stderr
    missing = subprocess.run([sys.executable, "-m", "numtaflow", "predict", str(scans), "--model", "0" * 16], env=env,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_validate_reads_and_decodes_only_files_it_has_not_seen_in_their_present_state(pipeline, storage, inputs_env):
    """A later validate (reuse off, so it runs) takes every unchanged file's inspection and bytes from
    the inspection cache, and reads again only a rewritten S3 object (new ETag) and a touched local
    file (new modification time); its images tables hold the bytes as they are now. A cache part that
    cannot be read is left out: the files it held are inspected again, the others still come from the cache."""
    from PIL import Image, PngImagePlugin

    from numtaflow.catalog import INSPECTION_CACHE_PREFIX, VALIDATED_IMAGES

    assert_step_ok(pipeline, "validate")
    first = commit(storage, RUN_ID, "validate").summary
    assert all(first.inputs[name].files_decoded == first.inputs[name].files for name in ("train", "eval"))
    train_uri, eval_folder = inputs_env["NUMTAFLOW_TRAIN_INPUT"], inputs_env["NUMTAFLOW_EVAL_INPUT"]
    rewritten_key = sorted(o["Key"] for o in storage.list_objects(train_uri.split("/", 3)[3] + "/"))[0]
    info = PngImagePlugin.PngInfo()
    info.add_text("note", "the same pixels, other bytes")
    buffer = io.BytesIO()
    Image.open(io.BytesIO(storage.get_bytes(rewritten_key))).save(buffer, format="PNG", pnginfo=info)
    storage.put_bytes(rewritten_key, buffer.getvalue())
    touched = sorted(p for p in os.listdir(eval_folder) if p.endswith(".png"))[0]
    os.utime(os.path.join(eval_folder, touched), ns=(1, 1))
    env = {**inputs_env, "NUMTAFLOW_REUSE_STEPS": "false"}

    result = run_job("validate", "manual__inspected", env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    again = commit(storage, "manual__inspected", "validate").summary
    assert (again.inputs["train"].files_decoded, again.inputs["eval"].files_decoded) == (1, 1)
    for name in ("train", "eval"):
        before, after = (read_parquet(storage, run, VALIDATED_IMAGES[name]).set_index("image_id").sort_index()
                         for run in (RUN_ID, "manual__inspected"))
        assert list(before.index) == list(after.index), name
        changed = after.index[before["content_sha256"] != after["content_sha256"]].tolist()
        assert changed == ([rewritten_key.rsplit("/", 1)[1]] if name == "train" else []), name
        assert all(hashlib.sha256(content).hexdigest() == digest
                   for content, digest in zip(after["content"], after["content_sha256"])), name

    folders = {o["Key"].split("/")[2] for o in storage.list_objects(INSPECTION_CACHE_PREFIX)}
    assert len(folders) == 1
    broken = f"{INSPECTION_CACHE_PREFIX}{folders.pop()}/zz-broken/"
    storage.put_bytes(broken + "part-00000.parquet", b"not parquet")
    storage.put_json(broken + catalog.COMMIT_MARKER, {"rows": 1})
    try:
        result = run_job("validate", "manual__inspected", env)
    finally:
        storage.delete_prefix(broken)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "left out the unreadable cache part" in result.stdout + result.stderr and "zz-broken" in result.stderr + result.stdout
    readable = commit(storage, "manual__inspected", "validate").summary  # the other parts still serve
    assert all(readable.inputs[name].files_decoded == 0 for name in ("train", "eval"))


def test_cache_prune_deletes_only_what_this_code_can_never_read(pipeline, storage, inputs_env):
    """The folders the runs above wrote are listed as this code's and kept, each committed part as it
    was; a folder only other code wrote and a part whose write never committed are deleted once older
    than the grace period (the CLI's clock is moved on by asking ``prunable`` directly)."""
    from datetime import datetime, timezone

    from numtaflow.caches import GRACE, current_codes, prunable, read_folders

    assert_step_ok(pipeline, "evaluate")
    live = {folder.prefix: folder for folder in read_folders(storage)}
    assert {folder.cache for folder in live.values()} == {"inspections", "features"}
    stale = f"{catalog.FEATURE_CACHE_PREFIX}{'0' * 24}/"
    crashed = f"{next(p for p in live if p.startswith(catalog.FEATURE_CACHE_PREFIX))}zz-crashed-train/"
    storage.put_bytes(stale + "run-train/part-00000.parquet", b"features of other code")
    storage.put_json(stale + "run-train/" + catalog.COMMIT_MARKER, {"rows": 1, "code": "other"})
    storage.put_bytes(crashed + "part-00000.parquet", b"half written")

    listed = subprocess.run([sys.executable, "-m", "numtaflow", "cache"], env={**os.environ, **inputs_env},
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr[-4000:]
    lines = {line.split()[1]: line for line in listed.stdout.splitlines()[1:-1]}
    assert all(lines[folder.key].endswith("this code") for folder in live.values()), listed.stdout
    assert lines["0" * 24].endswith("other code") and "--prune would delete 0 prefix(es)" in listed.stdout

    later = datetime.now(timezone.utc) + 2 * GRACE
    doomed = prunable(read_folders(storage), current_codes(), later)
    assert sorted(doomed) == sorted([stale, crashed])
    for prefix in doomed:
        storage.delete_prefix(prefix)
    after = {folder.prefix: folder for folder in read_folders(storage)}
    assert after == live and prunable(after.values(), current_codes(), later) == []


def test_models_prune_deletes_old_runs_working_data_and_keeps_their_evidence(pipeline, storage, inputs_env,
                                                                              tmp_path):
    """Copies of the finished training run and of a finished scoring run, dated 2020 in their indexes,
    the featurize step record naming the old copy: `models prune` (after a dry run that deletes nothing)
    deletes their working data, each marker first, and nothing else; the record moves to a kept run
    holding the same features; the old run's page, report and model still serve."""
    from numtaflow.registry import read_index, update_index, version_of_run
    from numtaflow.webapp import run_page

    assert_step_ok(pipeline, "evaluate")
    old, old_scoring, dated = "manual__retention-old", "manual__retention-old-scoring", "2020-01-01T00:00:00+00:00"
    for source, copy, last in ((layout(RUN_ID), layout(old), "evaluate"),
                               (scoring_layout("manual__score-eval"), scoring_layout(old_scoring), "report_batch")):
        storage.copy_prefix(source.root, copy.root)
        storage.put_json(copy.marker_key(last), storage.get_json(copy.marker_key(last)))  # its newest object, as
        # in a finished run (prune leaves alone a run written after its last step committed: a re-run)
    summary = next(r for r in read_index(storage) if r["run_id"] == layout(RUN_ID).run_id)
    update_index(storage, old, {**summary, "run_id": old, "finished_at": dated})
    scoring = next(r for r in read_index(storage, catalog.SCORING_INDEX_KEY) if r["run_id"] == "manual__score-eval")
    update_index(storage, old_scoring, {**scoring, "run_id": old_scoring, "created_at": dated},
                 catalog.SCORING_INDEX_KEY)
    fingerprint = commit(storage, old, "featurize").fingerprint
    record_key = catalog.step_record_key("featurize", fingerprint)
    storage.put_json(record_key, {"run_id": old, "committed_at": dated})

    def others():
        return {o["Key"]: o["ETag"] for area in (catalog.RUNS_PREFIX, catalog.PREDICTIONS_PREFIX)
                for o in storage.list_objects(area) if not o["Key"].startswith((layout(old).root,
                                                                                scoring_layout(old_scoring).root))
                and not o["Key"].endswith("index.json")}

    def prune(*extra):
        result = subprocess.run([sys.executable, "-m", "numtaflow", "models", "prune", "--keep", "0",
                                 "--older-than", "365", *extra], env={**os.environ, **inputs_env},
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    untouched = others()
    dry = prune("--dry-run")
    assert f"training run {old}: would free" in dry and f"scoring  run {old_scoring}: would free" in dry, dry
    assert "2 to prune" in dry and "1 step record(s) would move" in dry, dry
    assert commit(storage, old, "featurize").fingerprint == fingerprint and storage.get_json(record_key)["run_id"] == old
    done = prune()
    assert "2 pruned" in done and "1 step record(s) moved" in done, done
    working = (*catalog.VALIDATED_IMAGES.values(), *catalog.SAMPLED_IMAGES.values(), *FEATURES.values(),
               catalog.HOLDOUT)
    for artifact in working:
        assert not list(storage.list_objects(layout(old).key(artifact) + "/")), artifact
    assert [storage.committed_step(layout(old), step) is None for step in STEPS] == [True] * 4 + [False] * 2
    for artifact in (METRICS, LINEAGE, catalog.GATE, CONFUSION["eval"], CANARY, TRAIN_PARAMS, catalog.VALIDATION_HTML):
        assert storage.exists(layout(old).key(artifact)), artifact
    for artifact in (MODEL, catalog.PIPELINE, EVAL_PREDICTIONS):
        assert list(storage.list_objects(layout(old).key(artifact) + "/")), artifact
    assert storage.committed_step(scoring_layout(old_scoring), "check_batch") is None
    assert not list(storage.list_objects(scoring_layout(old_scoring).key(catalog.SCORABLE) + "/"))
    assert storage.exists(scoring_layout(old_scoring).key(PREDICTIONS["csv"]))
    assert storage.exists(scoring_layout(old_scoring).key(SCORING_REPORT))
    holder = storage.get_json(record_key)["run_id"]
    assert holder != old and commit(storage, holder, "featurize").fingerprint == fingerprint
    assert others() == untouched
    assert "accuracy" in run_page(storage, old, "/numtaflow").lower()
    assert re.fullmatch(r"[0-9a-f]{16}", version_of_run(storage, old).version)  # `models promote` can serve it
    report = subprocess.run([sys.executable, "-m", "numtaflow", "report", "--run-id", old, "--reports", str(tmp_path)],
                            env={**os.environ, **inputs_env}, capture_output=True, text=True, timeout=120)
    assert "pruned:      the working data of validate, sample, featurize, train" in report.stdout, report.stderr
    assert "steps (s):   validate" in report.stdout
    assert ": 0 pruned, 0.0 MB" in prune()
