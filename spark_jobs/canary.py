"""Spark job 'canary': the saved pipeline, loaded from the bucket in this process, scores a stratified canary of the evaluation images.

    spark-submit [--jars <s3a jars>] [--conf ...] spark_jobs/canary.py --run-id RUN [--settings-json '{...}']

(`python -m numtaflow submit canary --run-id RUN` runs it as the DAG does; `--print-only` prints the command.)
"""

from numtaflow.jobs import run_step
from numtaflow.steps import canary


def main() -> None:
    run_step("canary", canary.run)


if __name__ == "__main__":
    main()
