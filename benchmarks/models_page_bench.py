"""How fast the Models page answers with a long history: 500 past runs in the index.

    python benchmarks/models_page_bench.py [--runs 500] [--out bench/results]

Uses a bucket of its own on the configured S3 server and the app's own page code; writes
``models_page.json`` with the median and worst of 20 renders.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from numtaflow.catalog import INDEX_KEY, REGISTRY_PREFIX
from numtaflow.config import Settings
from numtaflow.contracts import Featurizer
from numtaflow.registry import Metrics, ModelVersion, switch_champion
from numtaflow.storage import Storage
from numtaflow.webapp import models_page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    storage = Storage(Settings.from_env({**os.environ, "NUMTAFLOW_BUCKET": "numtaflow-bench"}))
    storage.ensure_bucket()
    storage.delete_prefix(REGISTRY_PREFIX)
    runs = [{"run_id": f"scheduled__{i:04d}", "run_type": "scheduled", "finished_at": f"2026-01-01T00:{i:04d}",
             "backbone": "MobileNetV2", "metrics": {"accuracy": 0.9, "f1": 0.9, "roc_auc": 0.99},
             "promoted": i % 3 == 0, "reasons": ["accuracy 0.9000 meets the minimum 0.8500"]} for i in range(args.runs)]
    storage.put_json(INDEX_KEY, {"runs": runs})
    served = ModelVersion(run_id=runs[-1]["run_id"], model_uri="s3://numtaflow-bench/unused", metrics=Metrics(accuracy=0.9, f1=0.9),
                          settings={"backbone": "MobileNetV2"}, eval_ids_sha256="",
                          featurizer=Featurizer(backbone="MobileNetV2", image_size=128, layers=[], weights="imagenet",
                                                weights_sha256=None), version="0" * 16)
    switch_champion(storage, lambda current: (served, "promote", ["benchmark"]), "benchmark setup")
    seconds = []
    for _ in range(20):
        started = time.perf_counter()
        page = models_page(storage, "/numtaflow")
        seconds.append(time.perf_counter() - started)
    result = {"runs": args.runs, "page_bytes": len(page), "median_seconds": round(statistics.median(seconds), 4),
              "max_seconds": round(max(seconds), 4)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "models_page.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
