"""Spark job 'check_batch' of the scoring DAG (numtadb_batch_predict): see include/numtaflow/steps/check_batch.py.

    spark-submit [--jars <s3a jars>] [--conf ...] spark_jobs/check_batch.py --run-id RUN [--form-json '{...}']

(`python -m numtaflow submit check_batch --run-id RUN` runs it as the DAG does; `--print-only` prints the command.)
"""

from numtaflow.jobs import run_step
from numtaflow.steps import check_batch


def main() -> None:
    run_step("check_batch", check_batch.run)


if __name__ == "__main__":
    main()
