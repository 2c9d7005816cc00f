"""spark-submit's command line and configuration, and the package archive shipped to executors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

from numtaflow.config import PROJECT_ROOT, Settings
from numtaflow.spark import (class_archive_options, class_archive_path, package_archive, shipped_jars, spark_conf,
                             submit_command)


def test_package_archive_holds_the_package_and_is_rebuilt_only_when_the_code_changes():
    archive = package_archive()
    assert archive == package_archive()
    names = zipfile.ZipFile(archive).namelist()
    assert {"numtaflow/__init__.py", "numtaflow/steps/featurize.py", "numtaflow/log4j2.properties"} <= set(names)
    assert not any("__pycache__" in name for name in names)


def test_a_driver_importing_the_archive_keeps_the_checkout_defaults():
    probe = ("import json, numtaflow.config as c; "
             "print(json.dumps([c.__file__, str(c.PROJECT_ROOT), c.Settings().weights_dir]))")
    result = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": package_archive()},
                            capture_output=True, text=True, timeout=60)
    imported_from, root, weights_dir = json.loads(result.stdout)
    assert imported_from.startswith(package_archive())
    assert root == str(PROJECT_ROOT) and weights_dir == Settings().weights_dir


def test_submit_command_ships_the_package_unless_turned_off():
    command = submit_command(Settings(), "job.py", ["--run-id", "r"])
    assert command[command.index("--py-files") + 1] == package_archive()
    assert command[-3:] == ["job.py", "--run-id", "r"]
    assert "--py-files" not in submit_command(Settings(ship_package=False), "job.py", [])
    extra = submit_command(Settings(), "job.py", [], driver_java_options=["-Xlog:x"])
    driver = next(item for item in extra if item.startswith("spark.driver.extraJavaOptions="))
    assert driver == f"spark.driver.extraJavaOptions={spark_conf(Settings())['spark.driver.extraJavaOptions']} -Xlog:x"


def test_executor_python_arrow_batch_and_memory_are_settings():
    conf = spark_conf(Settings(executor_python="/opt/py/bin/python", arrow_batch_rows=64, driver_memory="6g"))
    assert (conf["spark.driver.memory"], conf["spark.executor.memory"]) == ("6g", "2g")
    assert conf["spark.pyspark.python"] == "/opt/py/bin/python"
    assert conf["spark.pyspark.driver.python"] == sys.executable
    assert conf["spark.sql.execution.arrow.maxRecordsPerBatch"] == "64"
    assert spark_conf(Settings())["spark.pyspark.python"] == sys.executable


def test_s3a_reaches_aws_itself_over_https_with_the_credentials_boto_accepts():
    aws = spark_conf(Settings(s3_endpoint="", s3_region="eu-west-1"))
    assert aws["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"
    assert aws["spark.hadoop.fs.s3a.endpoint"] == "https://s3.eu-west-1.amazonaws.com"  # hadoop-aws 3.3.1 needs one
    assert spark_conf(Settings(s3_endpoint="http://minio:9000"))["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
    assert spark_conf(Settings(s3_endpoint="https://s3.example.org"))["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"
    providers = aws["spark.hadoop.fs.s3a.aws.credentials.provider"].split(",")
    assert [name.rsplit(".", 1)[-1] for name in providers] == [  # session keys, keys, then an instance role
        "TemporaryAWSCredentialsProvider", "SimpleAWSCredentialsProvider", "IAMInstanceCredentialsProvider"]
    with zipfile.ZipFile(PROJECT_ROOT / ".cache" / "jars" / "hadoop-aws-3.3.1.jar") as jar:
        classes = set(jar.namelist())
    assert all(name.replace(".", "/") + ".class" in classes for name in providers)


def fake_java(folder) -> None:
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "java").write_text("#!/bin/sh\n")


def test_the_driver_uses_the_class_archive_only_when_it_is_made_and_on(tmp_path, monkeypatch):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    fake_java(tmp_path / "jdk")
    settings = Settings(class_archive_dir=str(tmp_path / "jvm"))
    options = spark_conf(settings)["spark.driver.extraJavaOptions"]
    assert options.startswith("-Dlog4j2.configurationFile=") and "SharedArchiveFile" not in options  # not made
    archive = class_archive_path(settings)
    archive.parent.mkdir()
    archive.write_bytes(b"archive")
    options = spark_conf(settings)["spark.driver.extraJavaOptions"].split()
    assert options[0].startswith("-Dlog4j2.configurationFile=") and f"-XX:SharedArchiveFile={archive}" in options
    assert class_archive_options(Settings(class_archive_dir=str(tmp_path / "jvm"), class_archive=False)) == []


def test_another_java_gets_another_class_archive_and_no_java_none(tmp_path, monkeypatch):
    fake_java(tmp_path / "a")
    fake_java(tmp_path / "b")
    (tmp_path / "b" / "bin" / "java").write_text("#!/bin/sh\n# another build\n")
    names = set()
    for jdk in ("a", "b"):
        monkeypatch.setenv("JAVA_HOME", str(tmp_path / jdk))
        names.add(class_archive_path(Settings()).name)
    assert len(names) == 2
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "none"))
    assert class_archive_path(Settings()) is None and class_archive_options(Settings()) == []


def test_s3a_jars_are_on_the_drivers_class_path_and_shipped_only_to_a_clusters_executors(tmp_path):
    jars = str(tmp_path / "jars")
    local, cluster = Settings(spark_jars=jars), Settings(spark_jars=jars, spark_master="spark://host:7077")
    expected = [f"{jars}/hadoop-aws-3.3.1.jar", f"{jars}/aws-java-sdk-bundle-1.11.901.jar"]
    for settings in (local, cluster):
        assert spark_conf(settings)["spark.driver.extraClassPath"] == ":".join(expected)
    assert shipped_jars(local) == [] and shipped_jars(cluster) == expected
    assert class_archive_path(local) == class_archive_path(cluster)  # one driver class path: one archive
    assert class_archive_path(local) != class_archive_path(Settings(spark_jars=str(tmp_path / "elsewhere")))
    maven = Settings(spark_packages="org.apache.hadoop:hadoop-aws:3.3.1")
    assert "spark.driver.extraClassPath" not in spark_conf(maven) and shipped_jars(maven) == []
