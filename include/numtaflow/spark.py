"""Spark configuration from settings: one place for s3a, Arrow and worker settings.

Credentials are never part of this configuration. Spark copies ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN`` from the submitting process's environment into
``fs.s3a.*``, so they appear in no command line and no task log; without them, an instance role.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

from .config import PROJECT_ROOT, Settings

S3A_JARS = ("hadoop-aws-3.3.1.jar", "aws-java-sdk-bundle-1.11.901.jar")
# What boto and pyarrow accept too, in this order: keys with a session token, keys (Spark copies all three
# AWS_* variables into fs.s3a.*), then an instance role
S3A_CREDENTIALS = ",".join(("org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider",
                            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
                            "org.apache.hadoop.fs.s3a.auth.IAMInstanceCredentialsProvider"))
LOG_CONFIG = Path(__file__).with_name("log4j2.properties")
PACKAGE_DIR = Path(__file__).resolve().parent
PY_FILES_DIR = PROJECT_ROOT / ".cache" / "py-files"
WARM_UP_JOB = Path(__file__).with_name("jvm_warm_up.py")
DRIVER_JAVA_OPTIONS = "spark.driver.extraJavaOptions"
QUIET_CLASS_SHARING = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")  # an unusable archive is no warning in a task log


def task_count(amount: float, cores: int, per_task: float) -> int:
    """Tasks in whole waves of ``cores``, each with at most about ``per_task`` of ``amount``, so a
    lost task redoes little and no core idles in the last wave."""
    cores = max(1, cores)
    return cores * max(1, math.ceil(amount / (cores * per_task)))


def spark_conf(settings: Settings) -> dict[str, str]:
    """Non-secret Spark settings every job needs (passed as ``--conf`` by the DAG)."""
    conf = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        # no endpoint is AWS itself: hadoop-aws 3.3.1 cannot find the region without one (HADOOP-17771)
        "spark.hadoop.fs.s3a.endpoint": settings.s3_endpoint or f"https://s3.{settings.s3_region}.amazonaws.com",
        "spark.hadoop.fs.s3a.endpoint.region": settings.s3_region,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": str(not settings.s3_endpoint.startswith("http://")).lower(),
        "spark.hadoop.fs.s3a.aws.credentials.provider": S3A_CREDENTIALS,
        # hadoop-aws 3.3.1 cannot parse the newer "60s"-style duration defaults: plain numbers.
        "spark.hadoop.fs.s3a.connection.establish.timeout": "30000",
        "spark.hadoop.fs.s3a.connection.timeout": "200000",
        "spark.hadoop.fs.s3a.connection.ttl": "300000",
        "spark.hadoop.fs.s3a.threads.keepalivetime": "60",
        "spark.hadoop.fs.s3a.multipart.purge.age": "86400",
        "spark.hadoop.fs.s3a.assumed.role.session.duration": "1800",
        # An unreachable server fails the step within a minute or two instead of retrying for ten;
        # Airflow's task retries (exponential backoff) carry a run over longer outages.
        "spark.hadoop.fs.s3a.attempts.maximum": "3",
        "spark.hadoop.fs.s3a.retry.limit": "3",
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "true",
        "spark.sql.execution.arrow.maxRecordsPerBatch": str(settings.arrow_batch_rows),
        "spark.python.worker.reuse": "true",
        "spark.driver.memory": settings.driver_memory,
        "spark.executor.memory": settings.executor_memory,
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        # images are small files: Spark's 4 MB "open cost" per file would split a folder of
        # 20k digits into 600 tiny tasks; 64 KB packs them into a handful
        "spark.sql.files.openCostInBytes": "65536",
        "spark.sql.session.timeZone": "UTC",
        # Feature rows are wide (7,744 floats by default): the Parquet reader's default batch of
        # 4,096 rows is 127 MB per column vector per task, not counted by Spark's memory
        # manager, and ran the 4 GB driver out of heap when training on all of NumtaDB
        "spark.sql.parquet.columnarReaderBatchSize": "256",
        # Training on all 44,000 images (2.7 GB of features as doubles) still ran a 4 GB driver out
        # of heap with Spark's default 0.6: less room for cached blocks leaves more for what the
        # memory manager does not track; MLlib's cached training blocks spill to disk instead.
        # 281 s with 4 GB against 229 s with an 8 GB driver at the default fraction.
        "spark.memory.fraction": "0.4",
        "spark.ui.showConsoleProgress": "false",
        "spark.driver.host": settings.spark_driver_host,
        "spark.driver.bindAddress": settings.spark_bind_address,
        "spark.pyspark.driver.python": sys.executable,
        "spark.pyspark.python": settings.executor_python or sys.executable,
        DRIVER_JAVA_OPTIONS: " ".join([f"-Dlog4j2.configurationFile=file:{LOG_CONFIG}",
                                       *class_archive_options(settings)]),
        "spark.executor.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{LOG_CONFIG}",
    }
    if class_path := driver_class_path(settings):
        conf["spark.driver.extraClassPath"] = class_path
    if settings.spark_packages:
        conf["spark.jars.packages"] = settings.spark_packages
    return conf


def java_binary() -> Path | None:
    """The ``java`` spark-submit runs: ``$JAVA_HOME/bin/java``, else the first on ``PATH``."""
    home = os.environ.get("JAVA_HOME")
    found = Path(home) / "bin" / "java" if home else shutil.which("java")
    return Path(found).resolve() if found and Path(found).is_file() else None


def class_archive_path(settings: Settings) -> Path | None:
    """Where the driver JVM's class archive for this Java and this Spark is kept (None without Java).

    A JVM maps the classes it loads at start from this file instead of reading and verifying them
    from the jars (JDK class data sharing): a job's driver starts about 6 s sooner (``make bench-startup``).
    The name changes with the Java binary and the Spark version, so an upgrade makes a new one."""
    java = java_binary()
    if java is None:
        return None
    stat = java.stat()  # the class path is part of it: a JVM uses an archive only on the class path it was made on
    identity = f"{java}\0{stat.st_size}\0{stat.st_mtime_ns}\0{version('pyspark')}\0{driver_class_path(settings)}"
    return Path(settings.class_archive_dir) / f"spark-{hashlib.sha256(identity.encode()).hexdigest()[:16]}.jsa"


def class_archive_options(settings: Settings) -> list[str]:
    """The driver's JVM options that use the class archive, when it is on and made (``make setup``).
    An archive the JVM cannot use is ignored (it starts as without one), silently."""
    path = class_archive_path(settings) if settings.class_archive else None
    if path is None or not path.is_file():
        return []
    return [f"-XX:SharedArchiveFile={path}", *QUIET_CLASS_SHARING]


def make_class_archive(settings: Settings) -> str:
    """Make the driver JVM's class archive, unless it exists: a short Spark job that loads what the
    workflow's jobs load, dumped by the JVM at exit. Returns what happened, in a sentence; a JVM
    that cannot make one leaves none, and the jobs start without it."""
    path = class_archive_path(settings)
    if not settings.class_archive:
        return "class archive off (NUMTAFLOW_CLASS_ARCHIVE=false)"
    if path is None:
        return "no java found: no class archive"
    if path.is_file():
        return f"class archive present: {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    command = submit_command(settings, str(WARM_UP_JOB), [],
                             driver_java_options=[f"-XX:ArchiveClassesAtExit={partial}", *QUIET_CLASS_SHARING])
    started = time.time()
    try:
        result = subprocess.run(command, capture_output=True, text=True)
        failure = None if result.returncode == 0 and partial.is_file() else \
            " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
    except OSError as error:  # no spark-submit on PATH
        failure = str(error)
    if failure is not None:
        partial.unlink(missing_ok=True)
        return f"no class archive made (jobs start without it): {failure}"
    os.replace(partial, path)  # concurrent setups never leave half an archive under the final name
    return f"class archive made in {time.time() - started:.0f} s: {path}"


def s3a_jar_paths(settings: Settings) -> list[str]:
    """Where the s3a jars are expected (none when Maven ``spark_packages`` provide them)."""
    if settings.spark_packages:
        return []
    return [str(Path(settings.spark_jars) / name) for name in S3A_JARS]


def driver_class_path(settings: Settings) -> str:
    """The s3a jars, on the driver's class path whatever the master: the class path a JVM starts with
    decides which class archive it can use, so one archive serves local and cluster mode alike."""
    return os.pathsep.join(s3a_jar_paths(settings))


def shipped_jars(settings: Settings) -> list[str]:
    """The s3a jars spark-submit ships with ``--jars``: to the executors of a cluster, which may not
    have them; none in local mode, where the driver is the only JVM (no executor copies 185 MB into a
    work folder: each job's session starts about 0.9 s sooner)."""
    return [] if settings.spark_master.startswith("local") else s3a_jar_paths(settings)


def check_s3a_jars(settings: Settings) -> None:
    """A clear error naming the s3a jars a job needs that were never installed (rather than a
    ClassNotFound for s3a in the job)."""
    missing = [path for path in s3a_jar_paths(settings) if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(
            f"s3a jars missing: {', '.join(missing)}. Run `make setup` to extract them, "
            "set NUMTAFLOW_SPARK_JARS to their folder, or set NUMTAFLOW_SPARK_PACKAGES="
            "org.apache.hadoop:hadoop-aws:<hadoop version> where Maven is reachable."
        )


def package_archive() -> str:
    """A zip of this package, named by the hash of its files: built once per code version, so
    every spark-submit of that version ships the same file and a changed file gives a new name."""
    files = sorted(path for path in PACKAGE_DIR.rglob("*")
                   if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(PACKAGE_DIR.parent).as_posix().encode() + b"\0" + path.read_bytes())
    archive = PY_FILES_DIR / f"numtaflow-{digest.hexdigest()[:16]}.zip"
    if not archive.is_file():
        PY_FILES_DIR.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=PY_FILES_DIR, suffix=".partial")
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as bundle:
            for path in files:  # fixed timestamps: the same files give the same bytes
                info = zipfile.ZipInfo(path.relative_to(PACKAGE_DIR.parent).as_posix(), (1980, 1, 1, 0, 0, 0))
                bundle.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
        os.replace(partial, archive)  # concurrent DAG parses never see half an archive
    return str(archive)


def py_files(settings: Settings) -> list[str]:
    """What spark-submit ships with ``--py-files``: the package archive, unless ``ship_package`` is off."""
    return [package_archive()] if settings.ship_package else []


def submit_command(settings: Settings, application: str, args: list[str],
                   driver_java_options: Sequence[str] = ()) -> list[str]:
    """The spark-submit command line for one job, as the DAG's SparkSubmitOperator builds it;
    ``driver_java_options`` are added to the driver JVM's own (a class archive to write, a log)."""
    command = ["spark-submit", "--master", settings.spark_master, "--name", f"numtaflow-{Path(application).stem}"]
    check_s3a_jars(settings)
    jars = shipped_jars(settings)
    if jars:
        command += ["--jars", ",".join(jars)]
    shipped = py_files(settings)
    if shipped:
        command += ["--py-files", ",".join(shipped)]
    conf = spark_conf(settings)
    conf[DRIVER_JAVA_OPTIONS] = " ".join([conf[DRIVER_JAVA_OPTIONS], *driver_java_options])
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    return command + [application, *args]


def build_session(app_name: str):
    """The job's SparkSession; its configuration comes from spark-submit (see ``spark_conf``)."""
    from pyspark.sql import SparkSession

    session = SparkSession.builder.appName(app_name).getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def interactive_session(settings: Settings, app_name: str, master: str | None = None):
    """A session outside spark-submit (a notebook, a benchmark) configured as the jobs' are: their
    Spark settings, the s3a jars and the shipped package."""
    from pyspark.sql import SparkSession

    settings = settings.model_copy(update={"spark_master": master}) if master else settings
    check_s3a_jars(settings)
    builder = (SparkSession.builder.master(settings.spark_master).appName(app_name)
               .config("spark.ui.enabled", "false").config("spark.jars", ",".join(shipped_jars(settings)))
               .config("spark.submit.pyFiles", ",".join(py_files(settings))))
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
