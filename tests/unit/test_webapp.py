"""The Models pages render S3 content and the mount prefix as text, never as markup."""

from __future__ import annotations

import json
import re

import pytest

from numtaflow.catalog import (CHAMPION_KEY, CONFUSION, INDEX_KEY, LINEAGE, METRICS, VALIDATION_HTML, VERSIONS_PREFIX,
                               RunLayout)
from numtaflow.webapp import create_app, models_page, run_page

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
        CONFUSION["eval"], VALIDATION_HTML, CONFUSION["split"], METRICS, LINEAGE)]


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
    assert json.loads(client.get("/api/runs").text)["champion"]["run_id"] == "older"


def test_a_broken_champion_record_is_shown_not_a_server_error():
    broken = storage()
    broken.objects[CHAMPION_KEY] = {"run_id": "older"}  # parses, but has nothing the gate needs
    page = models_page(broken, "/numtaflow")
    assert "is not a usable champion record" in page and "manual__1" in page
