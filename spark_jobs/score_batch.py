"""Spark job 'score_batch' of the scoring DAG (numtadb_batch_predict): see include/numtaflow/steps/score_batch.py.

    spark-submit [--jars <s3a jars>] [--conf ...] spark_jobs/score_batch.py --run-id RUN [--form-json '{...}']

(`python -m numtaflow submit score_batch --run-id RUN` runs it as the DAG does; `--print-only` prints the command.)
"""

from numtaflow.jobs import run_step
from numtaflow.steps import score_batch


def main() -> None:
    run_step("score_batch", score_batch.run)


if __name__ == "__main__":
    main()
