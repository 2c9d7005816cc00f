"""How batch scoring scales with the batch: seconds, images per second and peak memory per size.

    python benchmarks/scoring_bench.py [--sizes 500,5000,44000] [--out bench/results]

Needs the embedded S3 server (``make s3-start``); loads NumtaDB into it (``numtaflow load-data``) if
training-a is not there yet. Scores with the champion; when the bucket has none (or one saved without
its pipeline), a small training run ``bench__scoring-model`` is made first, as the training DAG makes
one: its six jobs through spark-submit with every setting at its default (promoted by its own gate,
else with ``numtaflow models promote``, since only a registered model can score).

For each size N, a batch of exactly N images of training-a + training-c (every image at 44,000, else a
seeded random choice) is copied server-side to ``s3://<bucket>/bench-scoring/n<N>/`` (kept, and
reused when complete). A scoring run ``bench__scoring-n<N>`` (its prefix cleared first, so the model is
pinned anew) then runs the scoring DAG's three jobs through spark-submit, each with the DAG's
defaults, as the form would pass them: ``check_batch``, ``score_batch``, ``report_batch``. Per job:
the spark-submit wall time, the step's own seconds from its commit record, and the peak resident
memory of its whole process tree (spark-submit's JVM, the Python driver, every Python worker),
sampled twice a second; for score_batch its images per second. From these, in the same run: seconds
per image at each size, the per-image cost of each size against the smallest, the marginal cost per
1,000 images between consecutive sizes (equal marginal costs: the cost grows linearly), and peak
memory against the smallest size. Nothing is asserted: the figures are written as measured, in
``scoring_scale.json`` and ``scoring_scale.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise

import psutil
from bench_support import run_job, write_results
from numtaflow.catalog import DATASETS_PREFIX, SCORING_STEPS, STEPS, RunLayout
from numtaflow.config import ScoringSettings, Settings
from numtaflow.contracts import parse_commit
from numtaflow.data import is_image_name
from numtaflow.registry import read_champion
from numtaflow.storage import Storage

MODEL_RUN = "bench__scoring-model"
BATCH_PREFIX = "bench-scoring/"
SOURCES = ("training-a", "training-c")  # 19,702 + 24,298 = 44,000 images


def numtaflow(*arguments: str) -> subprocess.CompletedProcess:
    """``python -m numtaflow ...`` in this environment, its output kept for an error message."""
    done = subprocess.run([sys.executable, "-m", "numtaflow", *arguments], check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"numtaflow {' '.join(arguments)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done


# --- the model -------------------------------------------------------------------------------------
def ensure_data(settings: Settings, storage: Storage) -> None:
    if not storage.exists(f"{DATASETS_PREFIX}/_loaded/training-a.json"):
        print("loading NumtaDB into the bucket (numtaflow load-data) ...", flush=True)
        numtaflow("load-data")


def ensure_model(settings: Settings, storage: Storage) -> dict:
    """The model the batches are scored with: the champion, trained first when there is none usable."""
    champion = read_champion(storage)[0]
    if champion is not None and champion.pipeline_uri:
        return {"model": "champion", "version": champion.version, "run_id": champion.run_id,
                "settings": champion.settings, "featurizer": champion.featurizer.model_dump(),
                "trained_by_this_bench": False}
    layout = RunLayout(settings.bucket, MODEL_RUN)
    committed = True
    trained = {}
    for step in STEPS:  # a step already committed by an earlier bench is kept, unless an earlier one re-ran
        committed = committed and storage.exists(layout.marker_key(step))
        if not committed:
            print(f"training the model to score with: {step} of {MODEL_RUN} ...", flush=True)
            trained[step] = run_job(step, MODEL_RUN, {})["wall_seconds"]
    champion = read_champion(storage)[0]
    if champion is not None and champion.run_id == MODEL_RUN:
        how = "promoted by its own gate" if trained else "trained and promoted by an earlier bench"
    else:  # the gate refused it (or a champion saved without a pipeline, which cannot score, beat it)
        numtaflow("models", "promote", MODEL_RUN)
        champion = read_champion(storage)[0]
        how = "promoted with `numtaflow models promote` (its gate did not promote it)"
    return {"model": "champion", "version": champion.version, "run_id": champion.run_id,
            "settings": champion.settings, "featurizer": champion.featurizer.model_dump(),
            "trained_by_this_bench": True, "promotion": how,
            "training_wall_seconds": trained}


# --- the batches -----------------------------------------------------------------------------------
def source_images(storage: Storage) -> list[str]:
    """Keys of every image of the two sources, sorted."""
    keys = []
    for name in SOURCES:
        prefix = f"{DATASETS_PREFIX}/{name}/"
        keys += [obj["Key"] for obj in storage.list_objects(prefix) if is_image_name(obj["Key"])]
    return sorted(keys)


def batch_of(storage: Storage, images: list[str], size: int, seed: int) -> tuple[str, dict]:
    """``s3://<bucket>/bench-scoring/n<size>/`` holding exactly ``size`` images (file names kept: a00012.png,
    c04211.png), reused as it is when complete; the seconds spent copying."""
    if size > len(images):
        raise SystemExit(f"--sizes: {size} images asked for, the sources hold {len(images)}")
    chosen = images if size == len(images) else random.Random(seed).sample(images, size)
    wanted = {key.rsplit("/", 1)[-1]: key for key in chosen}
    prefix = f"{BATCH_PREFIX}n{size}/"
    started = time.time()
    present = {obj["Key"][len(prefix):] for obj in storage.list_objects(prefix)}
    extra = sorted(present - set(wanted))
    missing = sorted(set(wanted) - present)
    for start in range(0, len(extra), 1000):
        storage.client.delete_objects(Bucket=storage.bucket, Delete={
            "Objects": [{"Key": prefix + name} for name in extra[start:start + 1000]], "Quiet": True})
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda name: storage.copy(storage.bucket, wanted[name], prefix + name), missing))
    return f"s3://{storage.bucket}/{prefix}", {"copied": len(missing), "removed": len(extra),
                                                  "seconds": round(time.time() - started, 1)}


# --- scoring ---------------------------------------------------------------------------------------
def clear_run(storage: Storage, layout: RunLayout) -> None:
    """Remove a scoring run's earlier outputs, its model pin included, so that nothing is reused."""
    if any(True for _ in storage.list_objects(layout.root)):
        storage.delete_prefix(layout.root)


def measure(settings: Settings, storage: Storage, size: int, uri: str, model: str) -> dict:
    run_id = f"bench__scoring-n{size}"
    layout = RunLayout.scoring(settings.bucket, run_id)
    clear_run(storage, layout)
    form = {"scoring_input": uri, "model": model}  # as the form passes them; every other field at its default
    row = {"images": size, "run_id": run_id, "input": uri}
    for step in SCORING_STEPS:
        figures = run_job(step, run_id, form)
        commit = parse_commit(step, storage.require_step(layout, step))
        row[step] = {**figures, "step_seconds": commit.seconds, "summary": commit.summary.model_dump()}
        print(f"  n={size:,} {step}: {figures['wall_seconds']} s wall, {commit.seconds} s in the step, "
              f"peak {figures['peak_rss_gb_all']} GB", flush=True)
    check, score = row["check_batch"]["summary"], row["score_batch"]["summary"]
    if check["scorable"] != size or score["images"] != size:
        print(f"  note: {size} images in the batch, {check['scorable']} scorable, {score['images']} scored", flush=True)
    row["score_batch"]["images_per_second"] = score["images_per_second"]
    row["total_wall_seconds"] = round(sum(row[step]["wall_seconds"] for step in SCORING_STEPS), 1)
    row["peak_rss_gb_all"] = max(row[step]["peak_rss_gb_all"] for step in SCORING_STEPS)
    return row


# --- what the figures show -------------------------------------------------------------------------
MEASURES = {  # name -> seconds of a row
    # score_batch's own timer: reading the checked images, loading the pipeline, classifying, writing
    "score_batch_scoring": lambda row: row["score_batch"]["summary"]["seconds"],
    "score_batch_step": lambda row: row["score_batch"]["step_seconds"],  # + the Spark session's start
    "score_batch_wall": lambda row: row["score_batch"]["wall_seconds"],
    "check_batch_wall": lambda row: row["check_batch"]["wall_seconds"],
    "report_batch_wall": lambda row: row["report_batch"]["wall_seconds"],
    "all_three_wall": lambda row: row["total_wall_seconds"],
}


def scaling(rows: list[dict]) -> dict:
    """Per-image cost and marginal cost per size, and peak memory, each against the smallest size."""
    smallest = rows[0]
    result = {}
    for name, seconds in MEASURES.items():
        per_image = [seconds(row) / row["images"] for row in rows]
        marginal = [1000 * (seconds(b) - seconds(a)) / (b["images"] - a["images"]) for a, b in pairwise(rows)]
        entry = {
            "seconds_per_1000_images": {str(row["images"]): round(1000 * cost, 2) for row, cost in zip(rows, per_image)},
            "per_image_cost_vs_smallest": {str(row["images"]): round(cost / per_image[0], 3)
                                           for row, cost in zip(rows[1:], per_image[1:])},
            "marginal_seconds_per_1000_images": {f"{a['images']}-{b['images']}": round(cost, 2)
                                                 for (a, b), cost in zip(pairwise(rows), marginal)},
        }
        if len(marginal) >= 2 and marginal[0] > 0:
            # 1: the cost grows linearly (a fixed start-up cost plus the same cost per image); above 1: faster
            entry["marginal_cost_last_vs_first_segment"] = round(marginal[-1] / marginal[0], 3)
        if len(rows) >= 2:
            entry["fixed_seconds_fitted"] = round(seconds(smallest) - marginal[0] / 1000 * smallest["images"], 1)
        result[name] = entry
    result["peak_memory_vs_smallest"] = {
        step: {str(row["images"]): round(row[step]["peak_rss_gb_all"] / smallest[step]["peak_rss_gb_all"], 3)
               for row in rows[1:]} for step in SCORING_STEPS}
    result["score_batch_images_per_second"] = {str(row["images"]): row["score_batch"]["images_per_second"]
                                               for row in rows}
    return result


def markdown(result: dict) -> str:
    rows, model = result["runs"], result["model"]
    lines = [(f"Batch scoring with model version {model['version']} ({model['featurizer']['backbone']}, each image "
             f"through the CNN {result['cnn_passes_per_image']} times: 1 + test_views {result['test_views']}); "
             f"spark-submit on {result['spark_master']}, {result['cores']} cores; one job at a time."), "",
             ("| images | check_batch s | score_batch s (scoring / step / wall) | images/s | report_batch s | all three s "
             "| s per 1,000 images (scoring) | peak RSS check / score / report |"), "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        c, s, r = row["check_batch"], row["score_batch"], row["report_batch"]
        lines.append(f"| {row['images']:,} | {c['wall_seconds']:.0f} "
                     f"| {s['summary']['seconds']:.0f} / {s['step_seconds']:.0f} / {s['wall_seconds']:.0f} "
                     f"| {s['images_per_second']} | {r['wall_seconds']:.0f} | {row['total_wall_seconds']:.0f} "
                     f"| {1000 * s['summary']['seconds'] / row['images']:.1f} "
                     f"| {c['peak_rss_gb_all']} / {s['peak_rss_gb_all']} / {r['peak_rss_gb_all']} GB |")
    if len(rows) >= 2:
        figures = result["scaling"]
        lines.append("")
        for name in ("score_batch_scoring", "all_three_wall"):
            entry = figures[name]
            marginal = ", ".join(f"{span}: {cost} s" for span, cost in entry["marginal_seconds_per_1000_images"].items())
            ratio = ", ".join(f"{size}: {value}x" for size, value in entry["per_image_cost_vs_smallest"].items())
            line = (f"- {name.replace('_', ' ')}: per-image cost against {rows[0]['images']:,} images {ratio}; marginal "
                    f"cost per 1,000 images {marginal}; fitted fixed cost {entry['fixed_seconds_fitted']} s")
            if "marginal_cost_last_vs_first_segment" in entry:
                line += f"; last segment / first {entry['marginal_cost_last_vs_first_segment']} (1: linear)"
            lines.append(line)
        memory = ", ".join(f"{step} " + " ".join(f"{size}: {value}x" for size, value in sizes.items())
                           for step, sizes in figures["peak_memory_vs_smallest"].items())
        lines.append(f"- peak memory of the whole process tree against {rows[0]['images']:,} images: {memory}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="500,5000,44000", help="comma-separated batch sizes")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.sizes.replace(" ", ",").split(",") if size})
    settings = Settings.from_env()
    storage = Storage(settings)
    storage.check_bucket()
    load_before = os.getloadavg()
    ensure_data(settings, storage)
    model = ensure_model(settings, storage)
    print(f"scoring with version {model['version']} (run {model['run_id']})", flush=True)
    images = source_images(storage)
    rows, batches = [], {}
    for size in sizes:
        uri, batches[size] = batch_of(storage, images, size, settings.seed)
        print(f"batch of {size:,} images at {uri} ({batches[size]['copied']} copied)", flush=True)
        rows.append(measure(settings, storage, size, uri, model["model"]))
        print(json.dumps({k: v for k, v in rows[-1].items() if k not in SCORING_STEPS}), flush=True)
    test_views = model["settings"].get("test_views")
    result = {
        "what": "batch scoring jobs (check_batch, score_batch, report_batch) through spark-submit, one at a time",
        "model": model, "test_views": test_views,
        "cnn_passes_per_image": 1 + test_views if isinstance(test_views, int) else None,
        "scoring_settings": ScoringSettings().model_dump() | {"scoring_input": f"s3://{settings.bucket}/"
                                                                              f"{BATCH_PREFIX}n<N>/"},
        "batches": {str(size): {"source": ", ".join(f"{DATASETS_PREFIX}/{name}" for name in SOURCES),
                                "choice": "all" if size == len(images) else f"random.Random({settings.seed}).sample",
                                **batches[size]} for size in sizes},
        "spark_master": settings.spark_master, "udf_batch_size": settings.udf_batch_size,
        "featurize_task_images": settings.featurize_task_images,
        "cores": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "memory_note": "peak RSS of each job's whole process tree (spark-submit JVM, Python driver, Python "
                       "workers), sampled every 0.5 s; the S3 server is not included",
        "runs": rows,
    }
    if len(rows) >= 2:
        result["scaling"] = scaling(rows)
    write_results(args.out, "scoring_scale", result, markdown(result))


if __name__ == "__main__":
    main()
