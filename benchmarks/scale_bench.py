"""How featurize and train scale with the number of images: time, throughput and peak memory.

    python benchmarks/scale_bench.py [--sizes 500 5000 44000] [--out bench/results]

Needs the embedded S3 server with NumtaDB loaded (``make demo`` or ``python -m numtaflow
load-data``). For each size, a run ``scale-<size>`` gets a sample of that many images from the
training and evaluation inputs together (training-a + training-c by default; stratified, the same number per class; the largest size takes every
image), committed as that run's ``sample`` step; then the DAG's own ``featurize`` and ``train``
jobs run on it through spark-submit, one view per image (no augmentation), every other setting
at its default. While each job runs, the resident memory of its whole process tree (spark-submit's
JVM, the Python driver, every Python worker) is sampled twice a second. Writes ``scale.json``
and ``scale.md``.
"""

from __future__ import annotations

import argparse
import json
import time

import psutil
from bench_support import run_job, write_results
from numtaflow.catalog import SAMPLED_IMAGES, RunLayout
from numtaflow.config import Settings
from numtaflow.contracts import SampleSummary, parse_commit
from numtaflow.jobs import commit, context_from_args, parse_args
from numtaflow.spark import interactive_session
from numtaflow.steps.sample import sampled_set
from numtaflow.storage import Storage, spark_path

JOB_SETTINGS = {"train_views": 0, "test_views": 0}
EVAL_PER_CLASS = 10  # featurize also needs an evaluation sample; its size is not what is measured


def all_images(spark, settings: Settings, storage: Storage):
    """Every image of the training and evaluation inputs: image_id (prefixed with the input's
    folder name), label, source, content (read by Spark)."""
    from functools import reduce

    from numtaflow.data import build_manifest, resolve_input
    from numtaflow.data import relative_path_pattern
    from pyspark.sql import functions as F

    frames = []
    for uri in (settings.train_input, settings.eval_input):
        source = uri.rstrip("/").rsplit("/", 1)[-1]
        dataset = resolve_input(uri, storage)
        labels = build_manifest(dataset)[["image_id", "label_raw"]]
        files = (spark.read.format("binaryFile").load(spark_path(dataset.root_uri))
                 .withColumn("image_id", F.regexp_extract("path", relative_path_pattern(dataset.root_uri), 1)))
        frames.append(files.join(spark.createDataFrame(labels), on="image_id")
                      .select(F.concat(F.lit(f"{source}/"), "image_id").alias("image_id"),
                              F.col("label_raw").cast("int").alias("label"), F.lit(source).alias("source"), "content"))
    return reduce(lambda a, b: a.unionByName(b), frames)


def commit_samples(settings: Settings, storage: Storage, sizes: list[int]) -> dict[int, int]:
    """Commit a ``sample`` step for each size; returns the images each run actually holds."""
    from numtaflow.sampling import stratified_sample

    spark = interactive_session(settings, "numtaflow-scale-samples")
    images = all_images(spark, settings, storage).cache()
    total = images.count()
    held = {}
    for size in sizes:
        started = time.time()
        # committed as the sample step commits, so that featurize and train read it as theirs
        context = context_from_args("sample", parse_args(["--run-id", f"scale-{size}",
                                                          "--settings-json", json.dumps(JOB_SETTINGS)]))
        storage.begin_step(context.layout, "sample")
        train = images if size >= total else stratified_sample(images, size // 10, settings.seed)
        evaluation = stratified_sample(images, EVAL_PER_CLASS, settings.seed + 1)
        summary = {}
        for name, frame in (("train", train), ("eval", evaluation)):
            frame.write.mode("overwrite").parquet(context.s3a(SAMPLED_IMAGES[name]))
            summary[name] = sampled_set(spark.read.parquet(context.s3a(SAMPLED_IMAGES[name])))
        held[size] = summary["train"].rows
        commit(context, started, time.time(), SampleSummary(**summary).model_dump(), fingerprint=None)
    spark.stop()
    return held


def measure(settings: Settings, storage: Storage, size: int, images: int) -> dict:
    run_id = f"scale-{size}"
    # the cost of computing every feature: nothing read back from earlier runs' steps or feature cache
    computing = {"NUMTAFLOW_FEATURE_CACHE": "false", "NUMTAFLOW_REUSE_STEPS": "false"}
    featurize, train = (run_job(step, run_id, JOB_SETTINGS, computing) for step in ("featurize", "train"))
    layout = RunLayout(settings.bucket, run_id)
    featurized = parse_commit("featurize", storage.require_step(layout, "featurize")).summary.train.model_dump()
    trained = parse_commit("train", storage.require_step(layout, "train")).summary.model_dump()
    return {"images": images, "featurize": {**featurize, "step_seconds": featurized["seconds"],
                                            "tasks": featurized["partitions"],
                                            "images_per_second": featurized["images_per_second"]},
            "train": {**train, "n_train": trained["n_train"], "n_holdout": trained["n_holdout"],
                      "training_accuracy": trained["training_accuracy"]}}


def linearity(rows: list[dict], seconds) -> str:
    """How far the largest size lies from the line through the two smallest (fixed + per-image cost)."""
    (n0, t0), (n1, t1), (n2, t2) = [(row["images"], seconds(row)) for row in (rows[0], rows[1], rows[-1])]
    per_image = (t1 - t0) / (n1 - n0)
    predicted = t0 + per_image * (n2 - n0)
    return (f"{t0 - per_image * n0:.0f} s fixed + {1000 * per_image:.2f} s per 1,000 images; "
            f"at {n2:,} images that line predicts {predicted:.0f} s, measured {t2:.0f} s ({t2 / predicted:.2f}x)")


def markdown(rows: list[dict]) -> str:
    lines = ["| images | featurize s | images/s | train s (wall) | peak RSS featurize: all processes / one Python worker "
             "| peak RSS train: all processes |", "|---|---|---|---|---|---|"]
    for row in rows:
        f, t = row["featurize"], row["train"]
        lines.append(f"| {row['images']:,} | {f['step_seconds']:.0f} | {f['images_per_second']} | {t['wall_seconds']:.0f} "
                     f"| {f['peak_rss_gb_all']} GB / {f['peak_rss_gb_one_python_worker']} GB | {t['peak_rss_gb_all']} GB |")
    if len(rows) >= 3:
        lines += ["", f"- featurize: {linearity(rows, lambda row: row['featurize']['step_seconds'])}",
                  f"- train: {linearity(rows, lambda row: row['train']['wall_seconds'])}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000, 44000])
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    settings = Settings.from_env()
    storage = Storage(settings)
    held = commit_samples(settings, storage, sorted(args.sizes))
    rows = []
    for size in sorted(args.sizes):
        rows.append(measure(settings, storage, size, held[size]))
        print(json.dumps(rows[-1]), flush=True)
    result = {"job_settings": JOB_SETTINGS, "spark_master": settings.spark_master,
              "cores": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "runs": rows}
    write_results(args.out, "scale", result, markdown(rows))


if __name__ == "__main__":
    main()
