"""Spark job 'evaluate': metrics on the 20% hold-out and the independent set, then the promotion gate.

    spark-submit [--jars <s3a jars>] [--conf ...] spark_jobs/evaluate.py --run-id RUN [--settings-json '{...}']

(`python -m numtaflow submit evaluate --run-id RUN` runs it as the DAG does; `--print-only` prints the command.)
"""

from numtaflow.jobs import run_step
from numtaflow.steps import evaluate


def main() -> None:
    run_step("evaluate", evaluate.run)


if __name__ == "__main__":
    main()
