"""The saved digit pipeline against the same featurizer and classifier without Spark, on the same images.

    python benchmarks/pipeline_bench.py [--images 512] [--rounds 3] [--train-images 128]
                                        [--lr-iterations 10] [--out bench/results]

Writes ``pipeline.json`` and ``pipeline.md``, all measured in the same run:

* a logistic regression (the jobs' estimator, ``--lr-iterations`` iterations) is fitted on the
  featurizer stage's features of ``--train-images`` labelled images that are not among the timed ones;
* the pipeline (``ml.digit_pipeline``: that stage, that model, the digit stage) is saved to a temporary
  folder and read back with ``PipelineModel.load``: the loaded artifact is what is timed, its
  ``transform`` of ``--images`` images collected (image id, digit, probability) in local[*];
* the baseline runs in a process of its own, without Spark: ``features.featurize_contents`` (plain
  batched Keras, TensorFlow on all cores) and a NumPy softmax of the loaded classifier's coefficients;
* images per second of each (the median of ``--rounds`` rounds, the two paths taking turns, so that
  a change in this machine's load reaches both), their ratio (the goal is at least 0.9), the peak
  memory of each, and on how many images both give the same digit.

Both use the settings' featurizer, test views included (each image averaged over 1 + test_views
views). Both rates exclude one-off costs, reported apart: building the model in process; in Spark,
fitting (which starts the Python workers and builds their models: the loaded stage reuses them),
loading the pipeline and its first pass.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context

import numpy as np
import pandas as pd
from bench_support import PeakMemory, load_images, write_results
from numtaflow.config import Settings
from numtaflow.features import FeaturizerSpec, featurize_contents, load_featurizer, weights_sha256
from numtaflow.ml import ImageFeaturizer, digit_pipeline
from numtaflow.model import make_estimator
from numtaflow.spark import interactive_session
from numtaflow.vocabulary import LR_PRESETS

GOAL = 0.9  # pipeline images/s over the in-process baseline's


def saved_pipeline(spark, train: pd.DataFrame, spec: FeaturizerSpec, iterations: int, folder: str):
    """The pipeline fitted on ``train``, saved to ``folder`` and loaded back; with the load's seconds
    (fitting and saving not included)."""
    from pyspark.ml import PipelineModel

    stage = ImageFeaturizer.from_spec(spec, weights_sha256(spec.weights))
    estimator = make_estimator(replace(LR_PRESETS["tuned"], max_iter=iterations))
    model = estimator.fit(stage.transform(spark.createDataFrame(train[["label", "content"]])))
    digit_pipeline(stage, model).write().save(folder)
    started = time.perf_counter()
    loaded = PipelineModel.load(folder)
    return loaded, time.perf_counter() - started


def scores(pipeline, frame) -> pd.DataFrame:
    """Digit and probabilities per image id, every row collected."""
    rows = pipeline.transform(frame).select("image_id", "digit", "probability").collect()
    return pd.DataFrame({"digit": [row["digit"] for row in rows],
                         "probability": [row["probability"].toArray() for row in rows]},
                        index=[row["image_id"] for row in rows])


def build_in_process(spec: FeaturizerSpec) -> tuple[int, float]:
    """Builds the baseline's model (once per process); returns this process's id and the seconds."""
    started = time.perf_counter()
    load_featurizer(spec)
    return os.getpid(), time.perf_counter() - started


def classify_in_process(contents: list[bytes], spec: FeaturizerSpec, coefficients: np.ndarray,
                        intercepts: np.ndarray) -> tuple[float, dict, np.ndarray]:
    """One baseline round in a process without Spark: seconds, peak memory, probabilities."""
    memory = PeakMemory(os.getpid())
    started = time.perf_counter()
    # each image's test views are seeded by its sha256, as the pipeline's featurizer stage seeds them
    features = featurize_contents(contents, spec, keys=[hashlib.sha256(c).hexdigest() for c in contents])
    logits = features.astype(np.float64) @ coefficients.T + intercepts
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    return time.perf_counter() - started, memory.stop(), probabilities


def compare(timed: pd.DataFrame, train: pd.DataFrame, settings: Settings, rounds: int, iterations: int) -> dict:
    """The two paths, taking turns for ``rounds`` rounds after their one-off costs."""
    cores = os.cpu_count() or 1
    spec = FeaturizerSpec.from_settings(settings, task_cpus=1)
    spark = interactive_session(settings, "numtaflow-pipeline-bench", "local[*]")
    frame = spark.createDataFrame(timed[["image_id", "content"]]).cache()
    frame.count()
    partitions = spark.sparkContext.defaultParallelism
    with tempfile.TemporaryDirectory() as folder, ProcessPoolExecutor(1, mp_context=get_context("spawn")) as plain:
        started = time.perf_counter()
        pipeline, load_seconds = saved_pipeline(spark, train, spec, iterations, f"{folder}/pipeline")
        fit_and_save = time.perf_counter() - started - load_seconds
        started = time.perf_counter()
        # a few rows per core, so that every Python worker has run the loaded pipeline; collected in
        # full, as a task that stops reading early (a limit) leaves its worker unusable for the next job
        scores(pipeline, spark.createDataFrame(train.head(partitions * 8)[["image_id", "content"]]))
        first_pass = time.perf_counter() - started
        classifier = pipeline.stages[1]
        coefficients, intercepts = classifier.coefficientMatrix.toArray(), classifier.interceptVector.toArray()
        plain_spec = replace(spec, intra_op_threads=cores)
        plain_pid, build = plain.submit(build_in_process, plain_spec).result()
        memory = PeakMemory(os.getpid(), exclude=frozenset({plain_pid}))
        pipeline_rates, plain_rates, plain_peaks = [], [], []
        for _ in range(rounds):
            started = time.perf_counter()
            served = scores(pipeline, frame)
            pipeline_rates.append(round(len(timed) / (time.perf_counter() - started), 1))
            seconds, peaks, probabilities = plain.submit(classify_in_process, list(timed["content"]), plain_spec,
                                                         coefficients, intercepts).result()
            plain_rates.append(round(len(timed) / seconds, 1))
            plain_peaks.append(peaks["peak_rss_gb_all"])
        spark_peaks = memory.stop()
    spark.stop()
    served = served.loc[timed["image_id"]]
    in_spark = {"master": "local[*]", "images_per_second": statistics.median(pipeline_rates),
                "images_per_second_rounds": pipeline_rates, "pipeline_load_seconds": round(load_seconds, 2),
                "fit_and_save_seconds": round(fit_and_save, 1), "first_pass_seconds": round(first_pass, 1),
                **spark_peaks}
    in_process = {"tf_threads": cores, "images_per_second": statistics.median(plain_rates),
                  "images_per_second_rounds": plain_rates, "model_build_seconds": round(build, 1),
                  "peak_rss_gb_process": max(plain_peaks)}
    return {
        "backbone": spec.backbone, "image_size": spec.image_size, "layers": list(spec.layers) or ["last"],
        "test_views": spec.test_views, "udf_batch_size": spec.batch_size, "cores": cores,
        "machine": platform.machine(), "images": len(timed), "rounds": rounds, "train_images": len(train),
        "lr_iterations": iterations,
        "excluded_from_rates": "building the model in process; in Spark, fitting (which starts the Python workers "
                               "and builds their models) and saving, loading the pipeline and its first pass",
        "spark_pipeline": in_spark, "plain_keras_numpy": in_process,
        "ratio_pipeline_to_plain": round(in_spark["images_per_second"] / in_process["images_per_second"], 3),
        "goal_ratio": GOAL,
        "digits_agree": int((probabilities.argmax(axis=1) == served["digit"].to_numpy()).sum()),
        "max_abs_probability_difference": float(np.abs(probabilities - np.stack(served["probability"])).max()),
    }


def markdown(result: dict) -> str:
    spark, plain = result["spark_pipeline"], result["plain_keras_numpy"]
    return "\n".join([
        f"{result['backbone']} at {result['image_size']} px, each image averaged over 1 + {result['test_views']} "
        f"views; {result['images']} images, median of {result['rounds']} rounds, {result['cores']} cores", "",
        "| path | images/s | peak memory |", "|---|---|---|",
        f"| plain Keras + NumPy, one process ({plain['tf_threads']} TensorFlow threads) | "
        f"{plain['images_per_second']} | {plain['peak_rss_gb_process']} GB |",
        f"| saved pipeline, `PipelineModel.load(...).transform`, local[*] | {spark['images_per_second']} | "
        f"{spark['peak_rss_gb_all']} GB all processes (JVM {spark['peak_rss_gb_jvm']} GB, one Python worker "
        f"{spark['peak_rss_gb_one_python_worker']} GB) |",
        f"| **ratio pipeline / plain** (goal ≥ {result['goal_ratio']}) | "
        f"**{result['ratio_pipeline_to_plain']}** | |", "",
        f"Same digit on {result['digits_agree']} of {result['images']} images; largest probability difference "
        f"{result['max_abs_probability_difference']:.2g}. One-off, not in the rates: "
        f"{plain['model_build_seconds']} s to build the model in process; in Spark, {spark['fit_and_save_seconds']} s "
        f"to fit the classifier (which starts the Python workers and builds their models) and save the pipeline, "
        f"{spark['pipeline_load_seconds']} s to load it and {spark['first_pass_seconds']} s for its first pass.",
    ]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512, help="timed images")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes of each path, taking turns")
    parser.add_argument("--train-images", type=int, default=128, help="images the classifier is fitted on")
    parser.add_argument("--lr-iterations", type=int, default=10)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    images = load_images(args.images + args.train_images)
    result = compare(images.head(args.images), images.tail(args.train_images), Settings.from_env(), args.rounds,
                     args.lr_iterations)
    write_results(args.out, "pipeline", result, markdown(result))


if __name__ == "__main__":
    main()
