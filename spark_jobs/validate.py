"""Spark job 'validate': read each input, decode every image once in Spark, run the GX suites.

    spark-submit [--jars <s3a jars>] [--conf ...] spark_jobs/validate.py --run-id RUN [--settings-json '{...}']

(`python -m numtaflow submit validate --run-id RUN` runs it as the DAG does; `--print-only` prints the command.)
"""

from numtaflow.jobs import run_step
from numtaflow.steps import validate


def main() -> None:
    run_step("validate", validate.run, reuse=validate.REUSE)


if __name__ == "__main__":
    main()
