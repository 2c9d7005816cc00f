"""Spark job 'featurize': pooled CNN features for the sampled images, in batched Arrow UDFs.

    spark-submit [--jars <s3a jars>] [--conf ...] spark_jobs/featurize.py --run-id RUN [--settings-json '{...}']

(`python -m numtaflow submit featurize --run-id RUN` runs it as the DAG does; `--print-only` prints the command.)
"""

from numtaflow.jobs import run_step
from numtaflow.steps import featurize


def main() -> None:
    run_step("featurize", featurize.run, reuse=featurize.REUSE)


if __name__ == "__main__":
    main()
