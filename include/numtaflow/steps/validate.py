"""validate: read each input, decode every image once in Spark, run the GX suites.

Files an earlier run inspected in their present version (same ETag, or size and modification time)
are taken from the inspection cache (``inspection_cache.py``) instead of being read and decoded again;
the suites always run over the whole input.

Outputs (``runs/<run>/validate/``): ``report.json``, ``report.html``, and per input
(``train``, ``eval``) an images table ``<input>_images.parquet`` holding the validated bytes and
their sha256 (copies under several names are all kept; ``sample`` counts them once), so later
steps use exactly the data that passed validation. Blank and tiny images are left out, and reported.
"""

from __future__ import annotations

import pandas as pd

from .. import inspection_cache
from ..catalog import BATCH_SELECTION, STAGING_PREFIX, VALIDATED_IMAGES, VALIDATION_HTML, VALIDATION_REPORT
from ..config import FEATURIZER_SETTINGS, GATE_SETTINGS, SAMPLING_SETTINGS, TRAINING_SETTINGS
from ..contracts import BatchSelection, InputRecord, ValidateSummary
from ..data import InputError, build_manifest, input_identity, manifest_hash, resolve_input
from ..incoming import Batch, choose_batches
from ..jobs import Reuse, StepContext, StepFailed, log
from ..quality import ValidationReport, render_html, structure_failure, validate_manifest

MANIFEST_SCHEMA = "image_id string, label_raw string, in_csv boolean, has_file boolean, size long"


def read_sources(context: StepContext, sources: list[tuple[str, str]]):
    """Resolve and decode each source; image ids get the source's prefix so they stay unique.

    Returns (manifest, decoded images per source, lineage per source, layouts), or raises ``InputError`` naming the source that cannot be read.
    """
    from pyspark.sql import functions as F

    manifests, decoded, records, layouts = [], [], [], set()
    for id_prefix, uri in sources:
        try:
            dataset = resolve_input(uri, context.storage, staging_prefix=STAGING_PREFIX)
            manifest = build_manifest(dataset)
        except InputError as error:
            raise InputError(f"{uri}: {error}") from None
        manifests.append(manifest.assign(image_id=id_prefix + manifest["image_id"]))
        images, known, decoded_now = inspection_cache.inspect_files(
            context.spark, context.storage, dataset, context.settings.max_image_pixels, context.settings.validation_cache)
        log.info("%s: %d files known to the inspection cache, %d read and decoded", uri, known, decoded_now)
        decoded.append(images.withColumn("image_id", F.concat(F.lit(id_prefix), "image_id")))
        layouts.add(dataset.layout)
        records.append({"uri": uri, "resolved_uri": dataset.root_uri, "csv_uri": dataset.csv_uri,
                        "layout": dataset.layout, "files": len(dataset.files),
                        "manifest_sha256": manifest_hash(manifest), "files_decoded": decoded_now})
    return pd.concat(manifests, ignore_index=True), decoded, records, layouts


def validate_input(context: StepContext, name: str, sources: list[tuple[str, str]], per_class: int
                   ) -> tuple[dict, InputRecord | None]:
    """Validate one input (a base dataset plus any landed batches) as a whole.

    Returns (suite record, lineage record or None when unreadable).
    """
    from functools import reduce

    from pyspark.sql import functions as F

    try:
        manifest, per_source, records, layouts = read_sources(context, sources)
    except InputError as error:
        return structure_failure(name, str(error)), None
    decoded = reduce(lambda a, b: a.unionByName(b), per_source)
    # an explicit schema: an input with no rows reaches "the dataset is not empty" instead of failing inference
    manifest_frame = context.spark.createDataFrame(manifest.drop(columns=["uri"]), MANIFEST_SCHEMA)
    images = manifest_frame.join(decoded, on="image_id", how="left").withColumn(
        "decode_error",
        # Spark's file sources skip zero-length files, so an empty image arrives without content
        F.when(F.col("has_file") & (F.col("size") == 0), F.lit("empty file (0 bytes)"))
        .when(F.col("has_file") & F.col("content").isNull(), F.lit("file listed but not readable"))
        .when(F.col("has_file"), F.col("decode_error")),
    )
    # in name order: the report's examples and which of two copies counts do not depend on Spark's joins
    metadata = images.drop("content", "object", "version", "inspected").toPandas().sort_values(
        "image_id", kind="stable", ignore_index=True)
    source = sources[0][1] + (f" and {len(sources) - 1} landed batch(es)" if len(sources) > 1 else "")
    suite = validate_manifest(name, metadata, per_class, require_csv_rows="numtadb" in layouts, source=source)
    lineage = InputRecord(**{**records[0], "manifest_sha256": manifest_hash(manifest), "batches": records[1:]})
    if suite["success"]:
        (
            images.where(F.col("has_file") & F.col("decode_error").isNull() & F.col("excluded").isNull())
            .withColumn("label", F.col("label_raw").cast("int"))
            .withColumn("source", F.lit(name))
            .select("image_id", "label", "source", "width", "height", "mode", "frames", "size", "content_sha256",
                    "content")
            .write.mode("overwrite")
            .parquet(context.s3a(VALIDATED_IMAGES[name]))
        )
        if context.settings.validation_cache and any(record["files_decoded"] for record in records):
            key = inspection_cache.cache_key(context.settings.max_image_pixels)
            kept = inspection_cache.add(context.storage, key, f"{context.run_id}-{name}", decoded)
            log.info("%s: kept the inspections of %d newly read files", name, kept)
    context.spark.catalog.clearCache()  # the inspected files, held in memory while this input was validated
    return suite, lineage


def training_sources(context: StepContext) -> tuple[list[tuple[str, str]], BatchSelection]:
    """The base training input, then the run's landed batches: chosen by its first validate and recorded,
    so a retry or a re-run of the run id trains on the same batches whatever landed since."""
    settings = context.settings
    chosen = choose_batches(context.storage, context.layout.key(BATCH_SELECTION), settings.incoming_input,
                            context.run_id, context.data_until)
    batches = [Batch(**b.model_dump()) for b in chosen.batches]
    return [("", settings.train_input)] + [(b.id_prefix, b.uri) for b in batches], chosen


def inputs_identity(context: StepContext) -> dict:
    """What validate reads, identified without reading it: each source's files (input_identity)."""
    train, _ = training_sources(context)
    return {name: [(uri, input_identity(uri, context.storage)) for _, uri in sources]
            for name, sources in (("train", train), ("eval", [("", context.settings.eval_input)]))}


def with_this_runs_selection(context: StepContext, summary: dict) -> dict:
    """A reused validate's summary and report, holding this run's batch selection: the same batches (the
    identity holds their URIs), but this run's data cut-off, arrival times and refused markers."""
    _, chosen = training_sources(context)
    report = context.storage.get_json(context.layout.key(VALIDATION_REPORT))
    context.storage.put_json(context.layout.key(VALIDATION_REPORT), {**report, "incoming": chosen.model_dump()})
    return {**summary, "data_until": chosen.data_until[:10], "incoming": chosen.model_dump()}


REUSE = Reuse(identify=inputs_identity, ignores=SAMPLING_SETTINGS + FEATURIZER_SETTINGS + TRAINING_SETTINGS + GATE_SETTINGS,
              adapt=with_this_runs_selection)


def run(context: StepContext) -> ValidateSummary:
    settings = context.settings
    train, chosen = training_sources(context)
    for refused in chosen.refused:
        log.warning("landed batch refused, not trained on: %s: %s", refused.marker, refused.reason)
    inputs = {"train": (train, settings.per_class),
              "eval": ([("", settings.eval_input)], settings.eval_per_class)}
    suites, lineage = [], {}
    for name, (sources, per_class) in inputs.items():
        suite, record = validate_input(context, name, sources, per_class)
        suites.append(suite)
        if record:
            lineage[name] = record
    report = ValidationReport(all(s["success"] for s in suites), suites)
    storage, layout = context.storage, context.layout
    storage.put_json(layout.key(VALIDATION_REPORT), {**report.to_json(), "incoming": chosen.model_dump()})
    storage.put_bytes(layout.key(VALIDATION_HTML), render_html(report, f"Input validation, run {context.run_id}").encode(),
                      VALIDATION_HTML.media_type)
    if not report.success:
        raise StepFailed(f"{report.summary()}\nfull report: {context.uri(VALIDATION_HTML)}")
    if report.warnings():
        log.warning("%s\nfull report: %s", report.summary(), context.uri(VALIDATION_HTML))
    return ValidateSummary(inputs=lineage, data_until=chosen.data_until[:10], incoming=chosen,
                           class_counts={s["name"]: s["class_counts"] for s in suites})
