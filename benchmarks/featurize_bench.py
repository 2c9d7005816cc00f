"""Featurization throughput inside Spark versus plain batched Keras on the same images and model.

    python benchmarks/featurize_bench.py [--images 4096] [--out bench/results] [--cluster-optional]
                                         [--backbone-seconds 10] [--backbone-images 384] [--backbone-repeats 3]
                                         [--backbones VGG16,...]
                                         [--shapes 1,2]
                                         [--no-backbones] [--no-sweep]

Writes ``featurize.json`` and ``featurize.md``, all measured in the same run:

* images per second of the default featurizer for the plain in-process baseline (decode, prepare,
  model in batches), for the Spark Arrow-UDF path in local mode (local[*]) and on a standalone
  cluster on this machine (the one ``make cluster`` runs, started and stopped here if it is not
  running); with ``--cluster-optional`` a cluster that cannot start leaves its row out, with the
  reason, instead of failing;
* the same comparison for every backbone (the default too), three times each on the images plain
  Keras takes about ``--backbone-seconds`` over (at least ``--backbone-images``), with the median run
  and every run's ratio (the spread between runs); a backbone whose ImageNet weights are not
  available offline runs with random weights, which do the same arithmetic; with
  ``--shapes``, each run also measures those TensorFlow threads per task core right after the
  backbone's own, so shapes are compared pairwise within a run rather than across noisy runs;
* what a user would tune: Arrow batch rows, images per model call, and TensorFlow threads per
  Python worker against Spark cores, each with the rate and the peak memory of one Python worker;
* the wall time of each DAG step of the latest finished run, when an S3 server with runs is reachable.

Plain Keras runs before and after every Spark pass, and each ratio is to the mean of the two around
it, so that the machine's drift during a run (a quarter on 2 noisy cores) shifts both sides alike.
Spark's rates exclude starting the Python workers and building their models (each worker builds
its model once and keeps it, as the plain baseline does); that one-off cost is reported apart.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from dataclasses import replace
from unittest import mock

import pandas as pd
from bench_support import PeakMemory, load_images, write_results
from numtaflow.catalog import METRICS, RunLayout
from numtaflow.cli import STATE_DIR
from numtaflow.config import Settings, env_name
from numtaflow.features import (
    BACKBONES,
    FeaturizerSpec,
    WeightsNotFound,
    featurize_contents,
    resolve_weights,
)
from numtaflow.services import running_pid, start_spark_cluster, stop_spark_cluster
from numtaflow.spark import interactive_session

THREADS_VARIABLE = env_name("tf_intra_op_threads")


def plain_spec(settings: Settings, cores: int) -> FeaturizerSpec:
    """The featurizer as plain Keras runs it: one process, a TensorFlow thread per core."""
    return replace(FeaturizerSpec.from_settings(settings), intra_op_threads=cores)


def plain_keras(images: pd.DataFrame, spec: FeaturizerSpec) -> float:
    # model build and the graph's first trace excluded, as Spark's warm-up pass excludes its workers'
    featurize_contents(list(images["content"][: spec.batch_size]), spec)
    started = time.perf_counter()
    featurize_contents(list(images["content"]), spec)
    return len(images) / (time.perf_counter() - started)


def spark_udf(images: pd.DataFrame, spec: FeaturizerSpec, settings: Settings, master: str, threads: int = 0) -> dict:
    """Images/s through the featurize step's UDF, with the jobs' Spark configuration and package and
    ``threads`` TensorFlow threads per Python worker (0: the backbone's default shape)."""
    from numtaflow.features import weights_sha256
    from numtaflow.ml import ImageFeaturizer
    from numtaflow.steps.featurize import featurized, training_copies

    spark = interactive_session(settings, "numtaflow-bench", master)
    frame = spark.createDataFrame(images).cache()
    frame.count()
    partitions = spark.sparkContext.defaultParallelism
    stage = ImageFeaturizer.from_spec(spec, weights_sha256(spec.weights))
    # the stage reads its TensorFlow threads from the platform settings when it builds the UDF, as a
    # served pipeline does
    with mock.patch.dict(os.environ, {THREADS_VARIABLE: str(threads)}):
        warm, timed = (featurized(stage, training_copies(rows, 0, 0), partitions, copies=True)
                       for rows in (frame.limit(partitions * 8), frame))

    def seconds(features) -> float:  # written, not counted: a count lets Spark prune the UDF away
        started = time.perf_counter()
        features.write.mode("overwrite").format("noop").save()
        return time.perf_counter() - started

    warm_up = seconds(warm)  # a few rows per core start every Python worker and build its model
    memory = PeakMemory(os.getpid())
    rate = len(images) / seconds(timed)
    peaks = memory.stop()
    spark.stop()
    return {"images_per_second": round(rate, 1), "worker_start_and_model_build_seconds": round(warm_up, 1),
            "peak_rss_gb_one_python_worker": peaks["peak_rss_gb_one_python_worker"]}


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
        return {"master": master, **spark_udf(images, spec, settings, master)}
    finally:
        if started_here:
            stop_spark_cluster(state)


def offline_or_random(settings: Settings) -> Settings:
    """The backbone with its offline ImageNet weights, or random ones (same arithmetic) without them."""
    try:
        resolve_weights(settings)
        return settings
    except WeightsNotFound:
        return settings.with_overrides({"weights": "random"})


def compare(images: pd.DataFrame, settings: Settings, cores: int, shapes: tuple[int, ...] = ()) -> dict:
    """Plain Keras (one process, a TensorFlow thread per core) against local[*] in the backbone's shape
    (its TensorFlow threads per task core) and in each of ``shapes`` (other threads per task core), one
    after the other on the same images. Plain Keras runs before and after each Spark pass, and each ratio
    is to the mean of the two around it: the machine's drift during a run shifts both sides alike."""
    in_process = plain_spec(settings, cores)
    spec = FeaturizerSpec.from_settings(settings, task_cpus=1)
    chosen = BACKBONES[settings.backbone].tf_threads_per_core
    plain = [plain_keras(images, in_process)]
    by_shape, ratios = {}, {}
    for threads in dict.fromkeys((chosen, *shapes)):
        by_shape[threads] = spark_udf(images, spec, settings, "local[*]", threads)
        plain.append(plain_keras(images, in_process))
        ratios[threads] = round(by_shape[threads]["images_per_second"] / ((plain[-2] + plain[-1]) / 2), 3)
    return {"backbone": settings.backbone, "weights": "imagenet" if settings.weights != "random" else "random",
            "images": len(images), "plain_keras_images_per_second": round(sum(plain) / len(plain), 1),
            "plain_keras_runs_images_per_second": [round(rate, 1) for rate in plain],
            "spark_udf": by_shape[chosen], "tf_threads_per_core": chosen,
            "ratio_spark_to_plain": ratios[chosen],
            "ratio_by_threads_per_core": dict(sorted(ratios.items()))}


def enough_images(images: pd.DataFrame, settings: Settings, cores: int, seconds: float, least: int) -> pd.DataFrame:
    """The first of ``images`` that plain Keras takes about ``seconds`` over, at least ``least``. A light
    backbone gets through a few hundred images in a second, of which a Spark job's fixed cost per pass
    (two stages and their tasks, about 0.4 s here) would be a third."""
    spec = plain_spec(settings, cores)
    rate = plain_keras(images.head(4 * spec.batch_size), spec)
    return images.head(max(least, int(rate * seconds)))


def backbone_rows(images: pd.DataFrame, settings: Settings, cores: int, repeats: int, names: list[str],
                  shapes: tuple[int, ...], seconds: float, least: int) -> list[dict]:
    """Each backbone of ``names`` compared ``repeats`` times on enough of ``images``: the median run, the
    spread of the ratios, and every run's ratio per shape of ``shapes``."""
    rows = []
    for name in names:
        backbone = offline_or_random(settings.with_overrides({"backbone": name}))
        chosen = enough_images(images, backbone, cores, seconds, least)
        runs = [compare(chosen, backbone, cores, shapes) for _ in range(repeats)]
        ratios = sorted(run["ratio_spark_to_plain"] for run in runs)
        median = next(run for run in runs if run["ratio_spark_to_plain"] == ratios[len(ratios) // 2])
        by_shape = {threads: [run["ratio_by_threads_per_core"][threads] for run in runs]
                    for threads in median["ratio_by_threads_per_core"]}
        rows.append({**median, "ratios": ratios, "ratios_by_threads_per_core": by_shape})
    return rows


def sweep_configurations(settings: Settings, cores: int) -> list[tuple[dict, Settings, str, int]]:
    """One knob at a time from the defaults: Arrow batch rows, images per model call, threads; each as
    (the knobs changed, the settings with them, Spark master, TensorFlow threads per worker)."""
    defaults = {"arrow_batch_rows": settings.arrow_batch_rows, "udf_batch_size": settings.udf_batch_size}
    layouts = [(f"local[{cores}]", 1), ("local[1]", cores), (f"local[{cores}]", cores)]
    configurations = (
        [({**defaults, "arrow_batch_rows": rows}, layouts[0]) for rows in (32, 128, 512)]
        + [({**defaults, "udf_batch_size": size}, layouts[0]) for size in (16, 32, 64) if size != settings.udf_batch_size]
        + [(defaults, layout) for layout in layouts[1:]]
    )
    # platform settings, which a run's overrides refuse: validated as the environment's would be
    return [(knobs, Settings(**{**settings.model_dump(), **knobs}), master, threads)
            for knobs, (master, threads) in configurations]


def sweep_rows(images: pd.DataFrame, settings: Settings, cores: int) -> list[dict]:
    return [{**knobs, "master": master, "tf_threads_per_worker": threads,
             **spark_udf(images, FeaturizerSpec.from_settings(tuned), tuned, master, threads)}
            for knobs, tuned, master, threads in sweep_configurations(settings, cores)]


def step_timings(settings: Settings) -> dict | None:
    """Seconds per step of the latest finished DAG run, if an S3 server with runs is reachable."""
    try:
        from numtaflow.registry import read_index
        from numtaflow.storage import Storage

        storage = Storage(settings)
        # the DAG's runs have a logical date; benchmark runs submitted directly have none
        dag_runs = [run for run in read_index(storage) if run.get("logical_date")]
        latest = max(dag_runs, key=lambda r: r.get("finished_at") or "")
        return {"run_id": latest["run_id"],
                **storage.get_json(RunLayout(settings.bucket, latest["run_id"]).key(METRICS))["timings"]}
    except Exception:  # no server or no runs: the step table is simply left out
        return None


def markdown(result: dict) -> str:
    main_row, cluster, cores = result["default"], result["standalone_cluster"], result["cores"]
    spark = main_row["spark_udf"]
    lines = [f"{result['backbone']} at {result['image_size']} px, {main_row['images']} images, {cores} cores", "",
             "| path | images/s |", "|---|---|",
             f"| plain Keras, in process ({cores} threads) | {main_row['plain_keras_images_per_second']} |",
             f"| Spark Arrow UDF, local[*] | {spark['images_per_second']} |",
             f"| Spark Arrow UDF, standalone cluster ({cores} cores, one worker) | "
             f"{cluster.get('images_per_second', cluster.get('skipped'))} |",
             f"| ratio local[*] / plain | {main_row['ratio_spark_to_plain']} |", "",
             f"One-off per run: {spark['worker_start_and_model_build_seconds']} s to start the Python workers and "
             f"build their models; peak memory of one Python worker {spark['peak_rss_gb_one_python_worker']} GB."]
    if result["backbones"]:
        lines += ["", "| backbone | weights | TF threads per core | images | plain Keras images/s | Spark images/s | "
                  "ratio (median run) | ratios of all runs |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['backbone']} | {r['weights']} | {r['tf_threads_per_core']} | {r['images']} | "
                  f"{r['plain_keras_images_per_second']} | "
                  f"{r['spark_udf']['images_per_second']} | {r['ratio_spark_to_plain']} | "
                  f"{', '.join(map(str, r['ratios']))} |" for r in result["backbones"]]
    shapes = sorted({threads for r in result["backbones"] for threads in r["ratios_by_threads_per_core"]})
    if any(len(r["ratios_by_threads_per_core"]) > 1 for r in result["backbones"]):  # --shapes was given
        lines += ["", "Spark / plain Keras per run, each shape measured in turn in the same run (TensorFlow threads "
                  "per task core; * the backbone's shape):", "",
                  "| backbone | " + " | ".join(f"{threads} per core" for threads in shapes) + " |",
                  "|---|" + "---|" * len(shapes)]
        lines += [f"| {r['backbone']} | " + " | ".join(
            ", ".join(map(str, r["ratios_by_threads_per_core"].get(threads, [])))
            + (" *" if threads == r["tf_threads_per_core"] else "") for threads in shapes) + " |"
            for r in result["backbones"]]
    if result["sweep"]:
        lines += ["", "| master | TF threads per worker | arrow_batch_rows | udf_batch_size | images/s | "
                  "peak RSS of one Python worker |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['master']} | {r['tf_threads_per_worker']} | {r['arrow_batch_rows']} | {r['udf_batch_size']} | "
                  f"{r['images_per_second']} | {r['peak_rss_gb_one_python_worker']} GB |" for r in result["sweep"]]
    if result["dag_step_seconds"]:
        lines += ["", f"| DAG step ({result['dag_step_seconds']['run_id']}) | seconds |", "|---|---|"] + [
            f"| {k} | {v} |" for k, v in result["dag_step_seconds"].items() if k != "run_id"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4096, help="images of the default featurizer's rows, and "
                        "the most any backbone gets")
    parser.add_argument("--backbone-seconds", type=float, default=10,
                        help="each backbone gets the images plain Keras takes about this long over")
    parser.add_argument("--backbone-images", type=int, default=384, help="the fewest images per backbone")
    parser.add_argument("--backbone-repeats", type=int, default=3,
                        help="runs per backbone: plain Keras itself varies by a quarter between runs on 2 noisy cores")
    parser.add_argument("--image-size", type=int, default=0)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--cluster-optional", action="store_true",
                        help="leave the cluster row out (with the reason) when the cluster cannot start")
    parser.add_argument("--no-backbones", action="store_true", help="skip the backbone table")
    parser.add_argument("--backbones", default=",".join(BACKBONES), help="the backbones to compare")
    parser.add_argument("--shapes", type=lambda text: tuple(int(n) for n in text.split(",") if n), default=(),
                        help="TensorFlow threads per task core to measure beside each backbone's own, e.g. 1,2")
    parser.add_argument("--no-sweep", action="store_true", help="skip the tuning sweep")
    args = parser.parse_args()
    # one view per image on every path: the comparison is of the machinery, not of augmentation
    settings = Settings.from_env().with_overrides({"image_size": args.image_size, "test_views": 0})
    images = load_images(args.images)
    cores = os.cpu_count() or 1
    spec = FeaturizerSpec.from_settings(settings, task_cpus=1)
    result = {
        "backbone": spec.backbone, "image_size": spec.image_size, "layers": list(spec.layers) or ["last"],
        "cores": cores, "machine": platform.machine(),
        "default": compare(images, settings, cores),
        "standalone_cluster": on_cluster(images, spec, settings, args.cluster_optional),
        "backbones": [] if args.no_backbones else backbone_rows(images, settings, cores, args.backbone_repeats,
                                                                    args.backbones.split(","), args.shapes,
                                                                    args.backbone_seconds, args.backbone_images),
        "sweep": [] if args.no_sweep else sweep_rows(images, settings, cores),
        "peak_rss_gb_benchmark_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "dag_step_seconds": step_timings(settings),
    }
    write_results(args.out, "featurize", result, markdown(result))

if __name__ == "__main__":
    main()
