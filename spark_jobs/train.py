"""Spark job 'train': exact per-class 80/20 split of the sample (seed 42), logistic regression on the 80%.

    spark-submit [--jars <s3a jars>] [--conf ...] spark_jobs/train.py --run-id RUN [--settings-json '{...}']

(`python -m numtaflow submit train --run-id RUN` runs it as the DAG does; `--print-only` prints the command.)
"""

from numtaflow.jobs import run_step
from numtaflow.steps import train


def main() -> None:
    run_step("train", train.run, reuse=train.REUSE)


if __name__ == "__main__":
    main()
