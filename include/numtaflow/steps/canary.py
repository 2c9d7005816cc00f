"""canary: the saved pipeline, loaded in this process from the bucket, scores a canary of the evaluation images.

Nothing of the training steps' in-memory state reaches here: the pipeline is read as any user of the
model would read it. A pipeline that cannot be loaded or run is recorded, not raised, so that the gate
(in evaluate) refuses it with the reason; only on the task's last try, though: an earlier one fails, to
be retried. evaluate compares every canary image's digit and probabilities with its own. Outputs
``canary.json``.
"""

from __future__ import annotations

import time

from ..catalog import CANARY, PIPELINE, SAMPLED_IMAGES
from ..contracts import CanarySummary
from ..jobs import StepContext, StepIncomplete
from ..ml import scoring_partitions
from ..sampling import stratified_sample
from ..storage import error_line
from ..vocabulary import DIGITS


def run(context: StepContext) -> CanarySummary:
    from pyspark.ml import PipelineModel
    from pyspark.ml.functions import vector_to_array

    spark, settings = context.spark, context.settings
    context.require("train")
    images = spark.read.parquet(context.s3a(SAMPLED_IMAGES["eval"]))
    per_class = min(settings.canary_per_class, settings.eval_per_class)
    canary = stratified_sample(images, per_class, settings.seed).select("image_id", "content")
    started, scores, error = time.time(), {}, None
    try:
        pipeline = PipelineModel.load(context.s3a(PIPELINE))
        # spread over the cores as a batch to score is (the sample comes out of one partition)
        partitions = scoring_partitions(pipeline, per_class * len(DIGITS), spark.sparkContext.defaultParallelism,
                                        settings.featurize_task_images)
        scored = pipeline.transform(canary.repartition(partitions))
        rows = scored.select("image_id", "digit", vector_to_array("probability").alias("p")).collect()
        scores = {row["image_id"]: {"digit": int(row["digit"]), "probability": list(row["p"])} for row in rows}
    except Exception as failure:  # whatever stops the artifact from serving is the gate's evidence...
        if context.retries_left:  # ...on the task's last try: a passing outage (S3, an executor) must not decide
            raise StepIncomplete(f"the saved pipeline could not be loaded or run ({error_line(failure)}); the "
                                 "task's next try scores the canary again, its last records the error for the gate") \
                from failure
        error = error_line(failure)
    seconds = round(time.time() - started, 2)
    context.storage.put_json(context.layout.key(CANARY), {"pipeline": context.uri(PIPELINE), "error": error,
                                                          "seconds": seconds, "scores": scores})
    return CanarySummary(images=len(scores), error=error, seconds=seconds)
