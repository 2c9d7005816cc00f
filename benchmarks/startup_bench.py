"""How long a job's spark-submit takes before and around its work, with and without the driver's class archive.

    python benchmarks/startup_bench.py [--repeats 5] [--out bench/results]

Each repeat runs the same small job twice, as every step's spark-submit is built (``submit_command``):
once with the class archive ``make setup`` made, once with ``class_archive`` off; the order alternates
so that a noisy machine weighs on both alike. The job starts its session, writes and reads back a
small Parquet table and prints the seconds its session took to start. Per variant: the median wall
seconds of the whole spark-submit and of the session start; the ratio with/without, measured in the
same run. Writes ``startup.json`` and ``startup.md``; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench_support import write_results
from numtaflow.config import PROJECT_ROOT, Settings
from numtaflow.spark import class_archive_path, make_class_archive, submit_command

JOB = '''import sys, tempfile, time
started = time.time()
from pyspark.sql import SparkSession
spark = SparkSession.builder.getOrCreate()
session = time.time() - started
with tempfile.TemporaryDirectory() as folder:
    spark.range(1000).selectExpr("id", "id % 10 AS label").write.parquet(folder + "/t")
    spark.read.parquet(folder + "/t").groupBy("label").count().collect()
print("session_seconds", round(session, 2))
'''


def one_submit(job: Path, with_archive: bool) -> dict:
    settings = Settings.from_env({**os.environ, "NUMTAFLOW_CLASS_ARCHIVE": str(with_archive).lower()})
    started = time.time()
    result = subprocess.run(submit_command(settings, str(job), []), capture_output=True, text=True, cwd=PROJECT_ROOT)
    wall = time.time() - started
    if result.returncode != 0:
        raise SystemExit(f"the job failed:\n{result.stderr[-3000:]}")
    session = next(float(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("session_seconds"))
    return {"wall_seconds": round(wall, 2), "session_seconds": session}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    settings = Settings.from_env()
    print(make_class_archive(settings), flush=True)
    runs = {"with_archive": [], "without_archive": []}
    with tempfile.TemporaryDirectory() as folder:
        job = Path(folder) / "job.py"
        job.write_text(JOB)
        one_submit(job, True)  # the page cache warm for both
        for repeat in range(args.repeats):
            for with_archive in ((True, False) if repeat % 2 == 0 else (False, True)):
                name = "with_archive" if with_archive else "without_archive"
                runs[name].append(one_submit(job, with_archive))
                print(name, runs[name][-1], flush=True)
    medians = {name: {key: round(statistics.median(r[key] for r in rows), 2) for key in ("wall_seconds", "session_seconds")}
               for name, rows in runs.items()}
    ratio = round(medians["with_archive"]["wall_seconds"] / medians["without_archive"]["wall_seconds"], 3)
    result = {"machine": f"{os.cpu_count()} cores, {platform.machine()}", "archive": str(class_archive_path(settings)),
              "repeats": args.repeats, "runs": runs, "medians": medians, "wall_ratio_with_to_without": ratio}
    rows = "\n".join(f"| {name.replace('_', ' ')} | {m['wall_seconds']} | {m['session_seconds']} |"
                     for name, m in medians.items())
    markdown = (f"# A job's spark-submit with and without the driver's class archive ({result['machine']})\n\n"
                f"| variant | spark-submit s (median of {args.repeats}) | session start s |\n|---|---|---|\n{rows}\n\n"
                f"- with / without: {ratio}x; every step of a DAG run starts once\n")
    write_results(args.out, "startup", result, markdown)


if __name__ == "__main__":
    main()
