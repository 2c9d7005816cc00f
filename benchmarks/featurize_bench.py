"""Featurization throughput inside Spark versus plain batched Keras on the same images and model.

    python benchmarks/featurize_bench.py [--images 512] [--out bench/results] [--cluster-optional]

Writes ``featurize.json`` and ``featurize.md``: images per second for the plain in-process
baseline (decode, prepare, model in batches), for the Spark pandas-UDF path in local mode
(local[*]) and on a standalone cluster on this machine (the one ``make cluster`` runs, started
and stopped here if it is not running), all measured in the same run. With ``--cluster-optional``
a cluster that cannot start leaves its row out, with the reason, instead of failing. Timings of
each DAG step of the latest finished run are added when an S3 server with runs is reachable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path

import pandas as pd

from numtaflow.cli import STATE_DIR
from numtaflow.config import SHARED_DIR, Settings
from numtaflow.features import FeaturizerSpec, featurize_contents, load_featurizer
from numtaflow.services import running_pid, start_spark_cluster, stop_spark_cluster
from numtaflow.spark import py_files, spark_conf


def load_images(count: int) -> pd.DataFrame:
    folder = SHARED_DIR / "numtadb" / "training-a"
    labels = pd.read_csv(folder.parent / "training-a.csv").head(count)
    return pd.DataFrame({
        "image_id": labels["filename"],
        "label": labels["digit"].astype("int32"),
        "content": [(folder / name).read_bytes() for name in labels["filename"]],
    })


def plain_keras(images: pd.DataFrame, spec: FeaturizerSpec) -> float:
    load_featurizer(spec)  # model build excluded, as Spark's workers reuse theirs
    started = time.perf_counter()
    featurize_contents(list(images["content"]), spec)
    return len(images) / (time.perf_counter() - started)


def spark_udf(images: pd.DataFrame, spec: FeaturizerSpec, settings: Settings, master: str) -> float:
    """Images/s through the featurize step's UDF, with the jobs' Spark configuration and package."""
    from pyspark.sql import SparkSession

    from numtaflow.steps.featurize import featurize_frame

    builder = SparkSession.builder.master(master).appName("numtaflow-bench").config("spark.ui.enabled", "false")
    for key, value in {**spark_conf(settings), "spark.submit.pyFiles": ",".join(py_files(settings))}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    frame = spark.createDataFrame(images).cache()
    frame.count()
    partitions = spark.sparkContext.defaultParallelism
    featurize_frame(frame.limit(partitions * 8), spec, partitions, 0, 0).count()  # warm workers and models
    started = time.perf_counter()
    featurize_frame(frame, spec, partitions, 0, 0).write.mode("overwrite").format("noop").save()
    rate = len(images) / (time.perf_counter() - started)
    spark.stop()
    return rate


def on_cluster(images: pd.DataFrame, spec: FeaturizerSpec, settings: Settings, optional: bool) -> dict:
    """The same measurement on the standalone cluster (all of this machine's cores on one worker)."""
    state = STATE_DIR / "spark"
    started_here = not running_pid("spark-master", state)
    try:
        master = start_spark_cluster(state, os.cpu_count() or 1, "8g")
    except (OSError, RuntimeError) as error:
        if started_here:
            stop_spark_cluster(state)
        if not optional:
            raise
        return {"skipped": f"cluster did not start: {error}"}
    try:
        return {"master": master, "images_per_second": round(spark_udf(images, spec, settings, master), 1)}
    finally:
        if started_here:
            stop_spark_cluster(state)


def step_timings(settings: Settings) -> dict | None:
    try:
        from numtaflow.registry import read_index
        from numtaflow.storage import Storage

        storage = Storage(settings)
        runs = read_index(storage)
        latest = max(runs, key=lambda r: r.get("finished_at") or "")
        return {"run_id": latest["run_id"],
                **storage.get_json(f"runs/{latest['run_id']}/evaluate/metrics.json")["timings"]}
    except Exception:  # no server or no runs: the step table is simply left out
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--image-size", type=int, default=0)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--cluster-optional", action="store_true",
                        help="leave the cluster row out (with the reason) when the cluster cannot start")
    args = parser.parse_args()
    # one view per image on both paths: the comparison is of the machinery, not of augmentation
    settings = Settings.from_env().with_overrides({"image_size": args.image_size, "test_views": 0})
    images = load_images(args.images)
    cores = os.cpu_count() or 1
    spec = FeaturizerSpec.from_settings(settings, task_cpus=1)
    baseline = plain_keras(images, FeaturizerSpec.from_settings(settings, task_cpus=cores))
    in_spark = spark_udf(images, spec, settings, "local[*]")
    cluster = on_cluster(images, spec, settings, args.cluster_optional)
    result = {
        "backbone": spec.backbone, "image_size": spec.image_size, "layers": list(spec.layers) or ["last"],
        "images": len(images), "cores": cores, "machine": platform.machine(),
        "plain_keras_images_per_second": round(baseline, 1),
        "spark_udf_images_per_second": round(in_spark, 1),
        "ratio_spark_to_plain": round(in_spark / baseline, 3),
        "standalone_cluster": cluster,
        "peak_rss_mb_driver": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "dag_step_seconds": step_timings(settings),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "featurize.json").write_text(json.dumps(result, indent=2))
    lines = ["| path | images/s |", "|---|---|",
             f"| plain Keras, in process ({cores} threads) | {result['plain_keras_images_per_second']} |",
             f"| Spark pandas UDF, local[*] | {result['spark_udf_images_per_second']} |",
             f"| Spark pandas UDF, standalone cluster ({cores} cores, one worker) | "
             f"{cluster.get('images_per_second', cluster.get('skipped'))} |",
             f"| ratio local[*] / plain | {result['ratio_spark_to_plain']} |"]
    if result["dag_step_seconds"]:
        lines += ["", "| DAG step | seconds |", "|---|---|"] + [
            f"| {k} | {v} |" for k, v in result["dag_step_seconds"].items() if k != "run_id"]
    (out / "featurize.md").write_text("\n".join(lines) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
