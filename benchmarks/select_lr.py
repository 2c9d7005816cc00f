"""Which logistic-regression settings the `tuned` preset holds, decided inside training samples only.

    python benchmarks/select_lr.py [--runs seeds__seed-1 seeds__seed-2 ...] [--out bench/results]

For each run whose featurize step is committed (by default the five runs ``seed_spread.py``
makes), the training rows of the train step's own 80/20 split are cross-validated over a grid
holding the study's preset, the tuned one and their neighbours: 3 folds, assigned per original
image so that its distorted copies never straddle two folds. Neither the 20% split nor the
evaluation set is read. Writes ``select_lr.json`` and ``select_lr.md``: mean cross-validated
accuracy per grid point, per run and over runs. Each run is searched in a process (and a Spark
driver) of its own: one driver searching run after run of the default featurizer's 7,744 features
ran out of its 4 GB heap on the second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from bench_support import write_results
from numtaflow.catalog import FEATURES, RunLayout
from numtaflow.config import Settings
from numtaflow.model import cross_validate
from numtaflow.spark import interactive_session
from numtaflow.steps.train import split_sample, training_rows
from numtaflow.vocabulary import LR_PRESETS

GRID = {"max_iter": [5, 100], "reg_param": [0.003, 0.01, 0.03, 0.1], "elastic_net_param": [0.0, 0.5]}


def point(row: dict) -> tuple:
    return row["max_iter"], row["reg_param"], row["elastic_net_param"]


def search_run(run_id: str) -> dict[tuple, float]:
    """Mean cross-validated accuracy per grid point on one run's training split, in its own session."""
    settings = Settings.from_env()
    spark = interactive_session(settings, "numtaflow-select-lr")
    started = time.time()
    features = spark.read.parquet(RunLayout(settings.bucket, run_id).s3a(FEATURES["train"]))
    train = training_rows(split_sample(features, settings), settings, spark.sparkContext.defaultParallelism).cache()
    _, table = cross_validate(train, GRID, settings.split_seed)
    spark.stop()
    print(f"{run_id}: {len(table)} points in {time.time() - started:.0f} s: {json.dumps(table)}", flush=True)
    return {point(row): row["cv_accuracy"] for row in table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=[f"seeds__seed-{seed}" for seed in range(1, 6)])
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        per_run = dict(zip(args.runs, pool.map(search_run, args.runs)))
    points = sorted(next(iter(per_run.values())))
    rows = [{"max_iter": p[0], "reg_param": p[1], "elastic_net_param": p[2],
             "mean_cv_accuracy": round(statistics.mean(scores[p] for scores in per_run.values()), 4),
             "per_run": {run: scores[p] for run, scores in per_run.items()}} for p in points]
    rows.sort(key=lambda row: -row["mean_cv_accuracy"])
    presets = {name: (p.max_iter, p.reg_param, p.elastic_net_param) for name, p in LR_PRESETS.items()}
    result = {"grid": GRID, "runs": args.runs, "presets": presets, "points": rows}
    names = {value: name for name, value in presets.items()}
    lines = ["| maxIter | regParam | elasticNetParam | mean CV accuracy | preset |", "|---|---|---|---|---|"]
    lines += [f"| {r['max_iter']} | {r['reg_param']} | {r['elastic_net_param']} | {r['mean_cv_accuracy']:.4f} | "
              f"{names.get(point(r), '')} |" for r in rows]
    write_results(args.out, "select_lr", result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
