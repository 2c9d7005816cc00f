"""Spark job 'sample': exactly ``per_class`` training images per class and an independent evaluation set.

    spark-submit [--jars <s3a jars>] [--conf ...] spark_jobs/sample.py --run-id RUN [--settings-json '{...}']

(`python -m numtaflow submit sample --run-id RUN` runs it as the DAG does; `--print-only` prints the command.)
"""

from numtaflow.jobs import run_step
from numtaflow.steps import sample


def main() -> None:
    run_step("sample", sample.run, reuse=sample.REUSE)


if __name__ == "__main__":
    main()
