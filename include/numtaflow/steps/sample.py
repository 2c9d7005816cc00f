"""sample: exactly ``per_class`` training images per class and an independent evaluation set.

Reads the images validated in this run; writes ``train.parquet`` and ``eval.parquet``
(image_id, label, source, content). An image stored under several names (the same bytes) is
drawn at most once, and the evaluation set never shares an image with the training sample, even
when both come from the same input or a landed batch copies evaluation images; if leaving those out
leaves a digit fewer than ``eval_per_class`` images, the step fails saying so.
"""

from __future__ import annotations

from ..catalog import SAMPLED_IMAGES, VALIDATED_IMAGES
from ..config import FEATURIZER_SETTINGS, GATE_SETTINGS, TRAINING_SETTINGS
from ..contracts import SampledSet, SampleSummary
from ..jobs import Reuse, StepContext, StepRefused
from ..sampling import distinct_content, ids_hash, short_classes, stratified_sample


REUSE = Reuse(after=("validate",), ignores=FEATURIZER_SETTINGS + TRAINING_SETTINGS + GATE_SETTINGS)


def run(context: StepContext) -> SampleSummary:
    settings, spark = context.settings, context.spark
    context.require("validate")
    train_images, eval_images = (distinct_content(spark.read.parquet(context.s3a(VALIDATED_IMAGES[name])))
                                 for name in ("train", "eval"))
    train = stratified_sample(train_images, settings.per_class, settings.seed)
    # no image of the training sample (same bytes, whatever its name or input) is ever evaluated
    eval_pool = eval_images.join(train.select("content_sha256"), on="content_sha256", how="left_anti")
    evaluation = stratified_sample(eval_pool, settings.eval_per_class, settings.seed + 1)
    summary = {}
    for name, frame in (("train", train), ("eval", evaluation)):
        frame = frame.select("image_id", "label", "source", "content").repartition(
            max(2, spark.sparkContext.defaultParallelism), "image_id"
        )
        frame.write.mode("overwrite").parquet(context.s3a(SAMPLED_IMAGES[name]))
        summary[name] = sampled_set(spark.read.parquet(context.s3a(SAMPLED_IMAGES[name])))
    if short := short_classes(summary["eval"].per_class, settings.eval_per_class):
        counts = ", ".join(f"{label}: {count}" for label, count in short.items())
        raise StepRefused(f"the evaluation set has fewer than eval_per_class={settings.eval_per_class} images of some "
                         f"digits once the training sample's images are left out ({counts}): the evaluation input "
                         "shares images (the same bytes) with the training input or a landed batch; evaluate on an "
                         "independent input or lower eval_per_class")
    return SampleSummary(**summary)


def sampled_set(written) -> SampledSet:
    """What the lineage records of a written sample: its rows per class and a hash of its ids."""
    counts = {str(r["label"]): r["count"] for r in written.groupBy("label").count().collect()}
    ids = [r["image_id"] for r in written.select("image_id").collect()]
    return SampledSet(rows=len(ids), per_class=dict(sorted(counts.items())), ids_sha256=ids_hash(ids))
