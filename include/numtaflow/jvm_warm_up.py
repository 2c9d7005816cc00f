"""A short Spark job that loads the classes the workflow's jobs load, for the driver's class archive.

    spark-submit <the jobs' options> -XX:ArchiveClassesAtExit=<file> jvm_warm_up.py

Run by ``spark.make_class_archive`` (``make setup``); the JVM writes every class it loaded to the
archive when it exits. It touches what every job does: the session, Parquet written and read, joins
and aggregations, Arrow with a pandas and an Arrow UDF, MLlib's logistic regression and a saved
pipeline, and the s3a file system (created, never called: no S3 server needs to run).
"""

import tempfile

import pandas as pd  # at module level: the UDFs' type hints are resolved here
import pyarrow as pa


def main() -> None:
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.functions import array_to_vector, vector_to_array
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F
    from pyspark.sql.functions import arrow_udf, pandas_udf

    spark = SparkSession.builder.appName("numtaflow-jvm-warm-up").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    jvm, hadoop = spark.sparkContext._jvm, spark.sparkContext._jsc.hadoopConfiguration()
    jvm.org.apache.hadoop.fs.Path("s3a://numtaflow-warm-up/").getFileSystem(hadoop)

    @pandas_udf("array<float>")
    def doubled(values: pd.Series) -> pd.Series:
        return values.map(lambda v: [float(v), 2.0 * v])

    @arrow_udf("array<float>")
    def halved(values: pa.Array) -> pa.Array:
        return pa.array([[v / 2] for v in values.to_pylist()], pa.list_(pa.float32()))

    rows = (spark.range(200).withColumn("label", (F.col("id") % 2).cast("int"))
            .withColumn("content", F.sha2(F.col("id").cast("string"), 256).cast("binary"))
            .withColumn("features", doubled(F.col("id"))).withColumn("halves", halved(F.col("id"))))
    with tempfile.TemporaryDirectory() as folder:
        rows.write.parquet(f"{folder}/rows.parquet")
        table = spark.read.parquet(f"{folder}/rows.parquet")
        rank = F.row_number().over(Window.partitionBy("label").orderBy(F.xxhash64("id")))
        table.join(F.broadcast(table.select("id", rank.alias("rank"))), "id", "left_semi").count()
        table.groupBy("label").agg(F.count("*"), F.avg("id")).toPandas()
        table.repartition("id").sortWithinPartitions("id").select("id").collect()
        vectors = table.withColumn("features", array_to_vector("features"))
        model = Pipeline(stages=[LogisticRegression(maxIter=5, family="multinomial")]).fit(vectors)
        model.write().overwrite().save(f"{folder}/pipeline")
        loaded = PipelineModel.load(f"{folder}/pipeline").transform(vectors)
        loaded.select(vector_to_array("probability")).collect()
    spark.stop()


if __name__ == "__main__":
    main()
