"""The Models pages render S3 content and the mount prefix as text, never as markup."""

from __future__ import annotations

import json
import re
from functools import partial
from types import SimpleNamespace

import pytest

from numtaflow.catalog import (CHAMPION_KEY, CONFUSION, INDEX_KEY, LINEAGE, METRICS, MISCLASSIFIED, SCORING_INDEX_KEY,
                               SCORING_REPORT, VALIDATION_HTML, VERSIONS_PREFIX, RunLayout)
from numtaflow.webapp import create_app, models_page, page_url, run_page, scoring_page

HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


class FakeStorage:
    """The read calls the page functions make, over a dict of JSON objects."""

    bucket = "test"

    def __init__(self, objects: dict):
        self.objects = objects

    def read_with_etag(self, key: str):
        return (self.objects[key], "etag") if key in self.objects else (None, None)

    def get_json(self, key: str):
        if key not in self.objects:
            raise FileNotFoundError(key)
        return self.objects[key]

    def get_bytes(self, key: str) -> bytes:
        value = self.get_json(key)
        return value if isinstance(value, bytes) else json.dumps(value).encode()

    def list_objects(self, prefix: str) -> list[dict]:
        return [{"Key": key} for key in sorted(self.objects) if key.startswith(prefix)]


def metrics(reason: str) -> dict:
    per_class = {str(d): {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 20} for d in range(10)}
    scores = {"accuracy": 0.9123, "f1": 0.9045, "precision": 0.91, "recall": 0.9123, "roc_auc": None}
    return {**scores, "split": dict(scores, accuracy=0.875), "per_class": per_class, "backbone": "MobileNetV2",
            "per_class_sample": 100, "seed": 1, "lr_params": {"regParam": 0.01}, "n_eval": 200, "n_split_test": 40,
            "gate": {"promoted": False, "reasons": [reason], "champion_before": "older", "champion_after": "older",
                     "compared_with": "champion re-scored on this run's evaluation set"}}


def storage(run_id: str = "manual__1", reason: str = "f1 0.9045 is below the minimum 0.95") -> FakeStorage:
    summary = {"run_id": run_id, "run_type": "manual", "finished_at": "2026-01-02T00:00:00", "backbone": "MobileNetV2",
               "metrics": {"accuracy": 0.9123, "f1": 0.9045, "roc_auc": 0.99}, "promoted": False, "reasons": [reason]}
    champion = {"run_id": "older", "model_uri": f"s3://{FakeStorage.bucket}/{VERSIONS_PREFIX}v1/model",
                "settings": {"backbone": "MobileNetV2"},
                "metrics": {"accuracy": 0.95, "f1": 0.94}, "eval_ids_sha256": "0" * 64,
                "featurizer": {"backbone": "MobileNetV2", "image_size": 128, "layers": ["out_relu"],
                               "weights": "imagenet", "weights_sha256": None},
                "changed_at": "2026-01-01T00:00:00", "action": "promote", "reasons": [reason]}
    layout = RunLayout(FakeStorage.bucket, run_id)
    return FakeStorage({
        CHAMPION_KEY: champion,
        INDEX_KEY: {"runs": [summary]},
        layout.key(METRICS): metrics(reason),
        layout.key(LINEAGE): {"run_id": run_id, "note": reason},
    })


def links(page: str) -> list[str]:
    return re.findall(r"(?:href|src)='([^']*)'", page)


def test_models_page_lists_champion_and_runs():
    page = models_page(storage(), "/numtaflow")
    assert "<h2>Champion</h2>" in page and "accuracy 0.9500, F1 0.9400" in page
    assert "<td>0.9123</td>" in page and "<td class='no'>rejected</td>" in page
    assert links(page) == ["/numtaflow/runs/older", "/numtaflow/runs/manual__1"]
    assert "No model has been promoted yet." in models_page(FakeStorage({}), "/numtaflow")


def test_run_page_shows_gate_metrics_and_evidence():
    page = run_page(storage(), "manual__1", "/numtaflow")
    assert "<title>Run manual__1</title>" in page and "Gate: <span class='no'>not promoted</span>" in page
    assert "<tr><th>accuracy</th><td>0.9123</td><td>0.8750</td></tr>" in page
    assert "<tr><th>ROC AUC (OvR)</th><td>–</td><td>–</td></tr>" in page
    assert "<tr><td>7</td><td>0.9000</td><td>0.8000</td><td>0.8500</td><td>20</td></tr>" in page
    assert links(page) == ["/numtaflow/"] + [f"/numtaflow/runs/manual__1/{artifact.served_as}" for artifact in (
        CONFUSION["eval"], MISCLASSIFIED, VALIDATION_HTML, CONFUSION["split"], METRICS, LINEAGE)]


def test_hostile_run_id_reason_and_base_are_escaped():
    hostile = storage(run_id=HOSTILE, reason=HOSTILE)
    for page in (models_page(hostile, HOSTILE), run_page(hostile, HOSTILE, HOSTILE)):
        assert HOSTILE not in page and "<script" not in page
        assert ESCAPED in page
        assert all(link.startswith(ESCAPED) for link in links(page))
    quote = "/x' onmouseover='alert(1)"
    page = models_page(storage(), quote)
    assert "onmouseover='" not in page and links(page)[0] == "/x&#39; onmouseover=&#39;alert(1)/runs/older"


@pytest.mark.filterwarnings("ignore:Using `httpx`")
def test_app_serves_pages_and_refuses_bad_run_ids():
    from fastapi.testclient import TestClient

    client = TestClient(create_app(storage_factory=storage), root_path="/numtaflow")
    response = client.get("/runs/manual__1")
    assert response.status_code == 200 and f"/numtaflow/runs/manual__1/{METRICS.served_as}" in response.text
    assert client.get("/").status_code == 200
    assert client.get("/runs/other").status_code == 404
    assert client.get("/runs/bad%3Cid%3E").status_code == 400
    run_url = partial(page_url, "", "run")
    assert client.get(f"{run_url(run_id='..')}/metrics.json").status_code in (400, 404)  # normalised, or refused
    assert client.get(f"{run_url(run_id='..%2E')}/metrics.json").status_code == 400
    assert client.get(run_url(run_id=".x")).status_code == 400
    assert json.loads(client.get("/api/runs").text)["champion"]["run_id"] == "older"
    served = client.get(f"{run_url(run_id='manual__1')}/{METRICS.served_as}")
    assert served.status_code == 200 and served.headers["content-security-policy"] == "sandbox"
    assert served.headers["x-content-type-options"] == "nosniff"


def test_a_broken_champion_record_is_shown_not_a_server_error():
    broken = storage()
    broken.objects[CHAMPION_KEY] = {"run_id": "older"}  # parses, but has nothing the gate needs
    page = models_page(broken, "/numtaflow")
    assert "is not a usable champion record" in page and "manual__1" in page
    from fastapi.testclient import TestClient

    listed = TestClient(create_app(storage_factory=lambda: broken)).get("/api/runs")
    assert listed.status_code == 200 and "is not a usable champion record" in listed.json()["champion_error"]


class UnreachableStorage(FakeStorage):
    """S3 that does not answer: every read fails as botocore fails when nothing listens at the endpoint."""

    settings = SimpleNamespace(s3_endpoint="http://127.0.0.1:9")

    def _fail(self, *args):
        from botocore.exceptions import EndpointConnectionError

        raise EndpointConnectionError(endpoint_url=self.settings.s3_endpoint)

    read_with_etag = get_json = get_bytes = _fail


@pytest.mark.filterwarnings("ignore:Using `httpx`")
def test_unreachable_s3_and_unreadable_records_are_said_not_server_errors():
    from fastapi.testclient import TestClient

    down = TestClient(create_app(storage_factory=lambda: UnreachableStorage({})))
    for path in ("/", "/api/runs", "/runs/manual__1", f"/runs/manual__1/{METRICS.served_as}", f"/scoring/{SCORING_RUN}",
                 "/versions/0123456789abcdef", "/versions/0123456789abcdef/model_card.md"):
        response = down.get(path)
        assert response.status_code == 503 and "cannot reach S3 at http://127.0.0.1:9" in response.text, path
    incomplete = storage()
    del incomplete.objects[RunLayout(FakeStorage.bucket, "manual__1").key(METRICS)]["lr_params"]
    incomplete.objects[INDEX_KEY] = "not an index"
    client = TestClient(create_app(storage_factory=lambda: incomplete))
    run = client.get("/runs/manual__1")
    assert run.status_code == 502 and "a stored record cannot be shown (KeyError: 'lr_params')" in run.text
    assert client.get("/").status_code == 502 and client.get("/api/runs").status_code == 502


def test_json_that_does_not_parse_is_an_error_naming_the_object(tmp_path):
    from numtaflow.config import Settings
    from numtaflow.storage import Storage

    class Body:
        def read(self):
            return b"{not json"

    class Client:
        def get_object(self, Bucket, Key):
            return {"Body": Body(), "ETag": "e"}

    bucket = Storage(Settings(), client=Client())
    for read in (bucket.get_json, bucket.read_with_etag):
        with pytest.raises(ValueError, match=rf"s3://{bucket.bucket}/models/index.json is not valid JSON"):
            read("models/index.json")


SCORING_RUN = "asset_triggered__2026-02-01"


def scoring_storage(image_id: str = "dt=2026-02-01/b1/scan 7.png") -> FakeStorage:
    layout = RunLayout.scoring(FakeStorage.bucket, SCORING_RUN)
    line = {"run_id": SCORING_RUN, "run_type": "asset_triggered", "created_at": "2026-02-01T10:00:00+00:00",
            "images_scored": 498, "images_rejected": 2, "psi": 0.31, "drift": True, "low_confidence_share": 0.104,
            "evaluation_low_confidence_share": 0.05, "version": "0123456789abcdef"}
    report = {**line, "model": {"requested": "champion", "version": "0123456789abcdef", "run_id": "manual__1",
                                "pipeline_uri": "s3://test/models/versions/0123456789abcdef/pipeline",
                                "pinned_at": "2026-02-01T09:59:00+00:00"},
              "inputs": ["s3://test/inbox/dt=2026-02-01/b1"], "predicted_distribution": {str(d): 50 for d in range(10)},
              "training_distribution": {str(d): 50 for d in range(10)}, "chi_square_p": 1.0, "drift_threshold": 0.2,
              "confidence_threshold": 0.7,
              "gallery": [{"n": 0, "image_id": image_id, "path": "s3://test/x.png", "top": [[3, 0.41], [5, 0.39]]}]}
    base = storage()
    base.objects.update({SCORING_INDEX_KEY: {"runs": [line]}, layout.key(SCORING_REPORT): report,
                         f"{layout.key(SCORING_REPORT).rsplit('/', 2)[0]}/report_batch/gallery/0.png": b"\x89PNG"})
    return base


def test_the_scoring_page_shows_drift_confidence_and_the_gallery_through_the_app():
    page = scoring_page(scoring_storage(), SCORING_RUN, "/numtaflow")
    assert "498 images scored, 2 rejected" in page and "PSI 0.3100 (threshold 0.2): <span class='no'>drift</span>" in page
    assert "10.4% of this batch, against 5.0% of the model's evaluation images" in page
    assert "<td>3 (0.410)</td><td>5 (0.390)</td>" in page
    run_url = f"/numtaflow/scoring/{SCORING_RUN}"
    assert links(page) == ["/numtaflow/", "/numtaflow/versions/0123456789abcdef", "/numtaflow/runs/manual__1",
                           f"{run_url}/gallery/0.png", f"{run_url}/predictions.csv", f"{run_url}/rejected.csv",
                           f"{run_url}/report.json", f"{run_url}/model.json"]
    models = models_page(scoring_storage(), "/numtaflow")
    assert f"/numtaflow/scoring/{SCORING_RUN}" in links(models) and "0.3100 drift" in models


def test_a_hostile_image_name_in_the_gallery_is_inert():
    page = scoring_page(scoring_storage(HOSTILE), SCORING_RUN, "/numtaflow")
    assert HOSTILE not in page and ESCAPED in page


@pytest.mark.filterwarnings("ignore:Using `httpx`")
def test_the_app_serves_gallery_images_and_only_declared_scoring_files():
    from fastapi.testclient import TestClient

    client = TestClient(create_app(storage_factory=scoring_storage), root_path="/numtaflow")
    assert client.get(f"/scoring/{SCORING_RUN}").status_code == 200
    image = client.get(f"/scoring/{SCORING_RUN}/gallery/0.png")
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert client.get(f"/scoring/{SCORING_RUN}/gallery/1.png").status_code == 404
    assert client.get(f"/scoring/{SCORING_RUN}/images.parquet").status_code == 404  # the batch's bytes stay private
    assert client.get(f"/scoring/{SCORING_RUN}/gallery/..%2F..%2Fmodels.png").status_code == 404
    assert client.get("/scoring/nope").status_code == 404


def test_each_dags_pages_are_guarded_by_that_dags_own_check():
    from fastapi import Depends, HTTPException
    from fastapi.testclient import TestClient

    def refused():
        raise HTTPException(status_code=403, detail="not allowed")

    run_url, scoring_url = page_url("", "run", run_id="manual__1"), page_url("", "scoring", run_id=SCORING_RUN)
    for training, scoring in (([Depends(refused)], []), ([], [Depends(refused)])):
        client = TestClient(create_app(training=training, scoring=scoring, storage_factory=scoring_storage))
        codes = {path: client.get(path).status_code for path in
                 ("/", "/api/runs", run_url, scoring_url, f"{scoring_url}/gallery/0.png")}
        expected = 403 if training else 200
        assert [codes["/"], codes["/api/runs"], codes[run_url]] == [expected] * 3, codes
        assert [codes[scoring_url], codes[f"{scoring_url}/gallery/0.png"]] == [403 if scoring else 200] * 2, codes
