"""The jobs' driver JVM starts from the class archive `make setup` made: Spark's and s3a's classes come
from it, not from the jars, in a spark-submit built as every job's is."""

from __future__ import annotations

import subprocess

import pytest

from numtaflow.config import Settings
from numtaflow.spark import class_archive_path, spark_conf, submit_command
from tests.conftest import ROOT

pytestmark = pytest.mark.integration
JOB = '''from pyspark.sql import SparkSession

spark = SparkSession.builder.getOrCreate()
print("rows", spark.range(10).count())
hadoop = spark.sparkContext._jsc.hadoopConfiguration()
spark.sparkContext._jvm.org.apache.hadoop.fs.Path("s3a://any-bucket/").getFileSystem(hadoop)  # no request made
'''


def test_a_jobs_driver_loads_sparks_classes_from_the_archive_made_by_setup(tmp_path):
    settings = Settings.from_env()
    archive = class_archive_path(settings)
    assert archive is not None and archive.is_file(), f"no class archive at {archive}: `make setup` makes it"
    (tmp_path / "job.py").write_text(JOB)
    assert f"-XX:SharedArchiveFile={archive}" in spark_conf(settings)["spark.driver.extraJavaOptions"].split()
    loaded = tmp_path / "classes.log"
    command = submit_command(settings, str(tmp_path / "job.py"), [],
                             driver_java_options=[f"-Xlog:class+load=info:file={loaded}"])
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0 and "rows 10" in result.stdout, result.stderr[-3000:]
    sources = {line.split()[1]: line.split(" source: ")[-1] for line in loaded.read_text().splitlines()
               if " source: " in line}
    for name in ("org.apache.spark.SparkContext", "org.apache.spark.sql.classic.SparkSession",
                 "org.apache.hadoop.fs.s3a.S3AFileSystem"):
        assert sources.get(name) == "shared objects file (top)", (name, sources.get(name))
