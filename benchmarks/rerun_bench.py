"""What a run pays for when little or nothing changed: four DAG runs on the real data, one after the other.

    python benchmarks/rerun_bench.py [--batch-per-class 20] [--out bench/results]

Needs the embedded S3 server with NumtaDB loaded (``make bench-rerun`` does both). Every run is
``airflow dags test`` of the training DAG with the demo's inputs (training-a, training-c) and default
settings, in a bucket of its own, emptied first, so the first run finds both caches (steps, features)
cold, and in an Airflow home of its own (temporary, migrated before the first run), so that neither its
runs nor its bucket's Assets meet the demo's: Airflow keeps one active Asset per name, and the demo's
``numtadb_champion`` of another bucket would leave the benchmark's inactive and fail its ``evaluate``.

1. ``cold``: the first run;
2. ``repeat``: the same inputs and settings under a new run id;
3. ``seed``: the same inputs with another sampling seed;
4. ``plus_batch``: after landing a batch of ``--batch-per-class`` new labelled images per digit
   (training-c images, 1% of training-a at 20 per digit) under the incoming prefix.

Then ``validate`` alone (spark-submit, step reuse off) over the same inputs: with the inspection cache
off (every file read and decoded: cold), on (every file known: warm), and after landing 500 and then
5,000 more new images (``--validate-batches``): its own seconds and how many files it read and decoded.

Per run: the DAG's wall seconds, each step's own seconds and whether it was reused (from its marker),
what is left outside the steps (spark-submit, JVM and Python start, Airflow), the metrics; each run's
wall time as a ratio of the cold run's, measured in the same benchmark run. Goals: repeat at most
0.4 of cold, plus_batch at most 0.5; the repeat's metrics identical to the cold run's. Writes
``rerun.json`` and ``rerun.md``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench_support import run_job, write_results
from numtaflow.catalog import DAG_ID, DATASETS_PREFIX, LINEAGE, METRICS, STEPS, RunLayout
from numtaflow.cli import find_run
from numtaflow.config import Settings
from numtaflow.incoming import drop_batch
from numtaflow.services import migrated_airflow_home
from numtaflow.storage import Storage

BUCKET = "numtaflow-bench-rerun"
GOALS = {"repeat": 0.4, "plus_batch": 0.5}
RUNS = (("cold", "2026-01-01", {}), ("repeat", "2026-01-02", {}), ("seed", "2026-01-03", {"seed": 7}),
        ("plus_batch", "2026-01-05", {}))
BATCH_DAY = "2026-01-04"  # seen by plus_batch only: a run trains on batches landed up to its logical date


def dag_run(name: str, day: str, conf: dict, env: dict, storage: Storage) -> dict:
    logical_date = f"{day}T00:00:00+00:00"
    command = ["airflow", "dags", "test", DAG_ID, logical_date] + (["--conf", json.dumps(conf)] if conf else [])
    started = time.time()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.time() - started
    if result.returncode != 0:
        raise SystemExit(f"run {name} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    run_id = find_run(storage, None, logical_date)
    layout = RunLayout(storage.bucket, run_id)
    record, metrics = storage.get_json(layout.key(LINEAGE)), storage.get_json(layout.key(METRICS))
    markers = {step: storage.require_step(layout, step) for step in STEPS}
    steps = {step: {"seconds": marker["seconds"], "reused": bool(marker.get("reused_from"))}
             for step, marker in markers.items()}
    return {"run": name, "run_id": run_id, "conf": conf, "wall_seconds": round(wall, 1), "steps": steps,
            "outside_steps_seconds": round(wall - sum(s["seconds"] for s in steps.values()), 1),
            "features": record["features"], "promoted": metrics["gate"]["promoted"],
            "metrics": {key: metrics[key] for key in ("accuracy", "f1", "roc_auc", "confusion_matrix")}}


def validate_run(name: str, data_until: str, extra_env: dict, env: dict, storage: Storage) -> dict:
    """``validate`` alone under its own run id, as the DAG submits it; its seconds and files decoded."""
    run_id = f"manual__validate-{name}"
    wall = run_job("validate", run_id, {}, {**env, "NUMTAFLOW_REUSE_STEPS": "false", **extra_env},
                   data_until)["wall_seconds"]
    marker = storage.require_step(RunLayout(storage.bucket, run_id), "validate")
    inputs = marker["summary"]["inputs"]
    sources = [record for part in ("train", "eval") for record in (inputs[part], *inputs[part].get("batches", []))]
    return {"run": name, "wall_seconds": wall, "step_seconds": marker["seconds"],
            "files": sum(r["files"] for r in sources), "files_decoded": sum(r["files_decoded"] for r in sources)}


def markdown(result: dict) -> str:
    lines = [f"# Re-runs: what a run pays for ({result['machine']})", "",
             "| run | DAG s | × cold | " + " | ".join(STEPS) + " | outside steps s | accuracy |",
             "|---|---|---|" + "---|" * len(STEPS) + "---|---|"]
    for row in result["runs"]:
        cells = [f"{s['seconds']:.0f}{' (reused)' if s['reused'] else ''}" for s in row["steps"].values()]
        lines.append(f"| {row['run']} | {row['wall_seconds']:.0f} | {row['ratio_to_cold']:.2f} | " + " | ".join(cells)
                     + f" | {row['outside_steps_seconds']:.0f} | {row['metrics']['accuracy']:.4f} |")
    lines += ["", f"- goals: {', '.join(f'{k} ≤ {v}× cold' for k, v in GOALS.items())}; met: {result['goals_met']}",
              f"- repeat's metrics identical to cold's: {result['repeat_metrics_identical']}",
              f"- batch landed for plus_batch: {result['batch_images']} images", "",
              "| validate alone | files | read and decoded | step s | wall s |", "|---|---|---|---|---|"]
    lines += [f"| {row['run']} | {row['files']} | {row['files_decoded']} | {row['step_seconds']:.0f} | "
              f"{row['wall_seconds']:.0f} |" for row in result["validate"]]
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-per-class", type=int, default=20)
    parser.add_argument("--validate-batches", type=lambda text: [int(n) for n in text.split(",")], default=[500, 5000],
                        help="new images landed before each warm validate run")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    home = Settings.from_env()
    data = f"s3://{home.bucket}/{DATASETS_PREFIX}"
    airflow_home = Path(tempfile.mkdtemp(prefix="numtaflow-bench-airflow-"))
    try:
        env = migrated_airflow_home(airflow_home, {
            **os.environ, "NUMTAFLOW_BUCKET": BUCKET, "NUMTAFLOW_TRAIN_INPUT": f"{data}/training-a",
            "NUMTAFLOW_EVAL_INPUT": f"{data}/training-c", "NUMTAFLOW_INCOMING_INPUT": f"s3://{BUCKET}/incoming"})
        measure(args, data, env)
    finally:
        shutil.rmtree(airflow_home, ignore_errors=True)


def measure(args: argparse.Namespace, data: str, env: dict) -> None:
    """The four DAG runs and the validate runs, then their results written."""
    storage = Storage(Settings.from_env(env))
    storage.ensure_bucket()
    for top in sorted({obj["Key"].split("/")[0] + "/" for obj in storage.list_objects("")}):
        storage.delete_prefix(top)  # cold: no steps, features, runs or champion from an earlier benchmark
    runs, batch_images = [], 0
    for name, day, conf in RUNS:
        if name == "plus_batch":
            _, batch_images = drop_batch(storage, f"{data}/training-c", f"s3://{BUCKET}/incoming", BATCH_DAY,
                                         "rerun-bench", args.batch_per_class)
        runs.append(dag_run(name, day, conf, env, storage))
        print(f"{name}: {runs[-1]['wall_seconds']} s", flush=True)
    validate = [validate_run("cold", "2026-01-05", {"NUMTAFLOW_VALIDATION_CACHE": "false"}, env, storage),
                validate_run("warm", "2026-01-05", {}, env, storage)]
    for day, images in zip(("2026-01-06", "2026-01-07"), args.validate_batches):
        drop_batch(storage, f"{data}/training-c", f"s3://{BUCKET}/incoming", day, f"validate-{images}", images // 10)
        validate.append(validate_run(f"plus_{images}_new", day, {}, env, storage))
    for row in validate:
        print(f"validate {row['run']}: {row['step_seconds']} s, {row['files_decoded']} files decoded", flush=True)
    cold = runs[0]["wall_seconds"]
    for row in runs:
        row["ratio_to_cold"] = round(row["wall_seconds"] / cold, 3)
    result = {"machine": f"{os.cpu_count()} cores, {platform.machine()}", "runs": runs, "batch_images": batch_images,
              "validate": validate,
              "repeat_metrics_identical": runs[1]["metrics"] == runs[0]["metrics"],
              "goals_met": {name: next(r["ratio_to_cold"] for r in runs if r["run"] == name) <= goal
                            for name, goal in GOALS.items()}}
    write_results(args.out, "rerun", result, markdown(result))


if __name__ == "__main__":
    main()
