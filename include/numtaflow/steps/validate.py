"""validate: read each input, decode every image once in Spark, run the GX suites.

Files an earlier run inspected in their present version (same ETag, or size, modification and change times)
are taken from the inspection cache (``inspection_cache.py``) instead of being read and decoded again;
the suites always run over the whole input. Each source is listed once per step (the listing gives both
the step's fingerprint and the versions looked up) and the cache is scanned once for every source.

Outputs (``runs/<run>/validate/``): ``report.json``, ``report.html``, and per input
(``train``, ``eval``) an images table ``<input>_images.parquet`` holding the validated bytes and
their sha256 (copies under several names are all kept; ``sample`` counts them once), so later
steps use exactly the data that passed validation. Blank and tiny images are left out, and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import inspection_cache
from ..catalog import BATCH_SELECTION, STAGING_PREFIX, VALIDATED_IMAGES, VALIDATION_HTML, VALIDATION_REPORT, cache_part
from ..config import FEATURIZER_SETTINGS, GATE_SETTINGS, SAMPLING_SETTINGS, TRAINING_SETTINGS
from ..contracts import BatchSelection, InputRecord, ValidateSummary
from ..data import DatasetInput, InputError, build_manifest, file_versions, listing_identity, manifest_hash, resolve_input
from ..incoming import Batch, choose_batches
from ..jobs import Reuse, StepContext, StepRefused, log
from ..quality import ValidationReport, render_html, structure_failure, validate_manifest

MANIFEST_SCHEMA = "image_id string, label_raw string, in_csv boolean, has_file boolean, size long"
VERSIONS_SCHEMA = "image_id string, object string, version string"


@dataclass(frozen=True)
class Source:
    """One source of an input (its base dataset or a landed batch), resolved and listed."""

    id_prefix: str  # prefixed to its image ids, so that they stay unique within the input
    uri: str
    dataset: DatasetInput
    manifest: pd.DataFrame
    versions: pd.DataFrame  # data.file_versions


def resolve_sources(context: StepContext, sources: list[tuple[str, str]]) -> list[Source]:
    """Resolve and list each source, or raise ``InputError`` naming the one that cannot be read."""
    resolved = []
    for id_prefix, uri in sources:
        try:
            dataset = resolve_input(uri, context.storage, staging_prefix=STAGING_PREFIX)
            manifest = build_manifest(dataset)
        except InputError as error:
            raise InputError(f"{uri}: {error}") from None
        resolved.append(Source(id_prefix, uri, dataset, manifest,
                               file_versions(dataset, context.versioned_files(dataset.root_uri))))
    return resolved


def known_inspections(context: StepContext, inputs: dict[str, list[Source]]):
    """The inspection cache's entries of every source's files (tagged ``source``: ``<input>/<index>``),
    read in one scan for the whole step; None without a usable cache."""
    if not context.settings.validation_cache or not inputs:
        return None
    versions = pd.concat([source.versions.assign(source=f"{name}/{index}")
                          for name, sources in inputs.items() for index, source in enumerate(sources)],
                         ignore_index=True)
    key = inspection_cache.cache_key(context.settings.max_image_pixels)
    return inspection_cache.known_inspections(context.spark, context.storage, key,
                                              context.spark.createDataFrame(versions, VERSIONS_SCHEMA + ", source string"))


def read_sources(context: StepContext, name: str, sources: list[Source], known):
    """Each source's files, inspected (from ``known``, the step's cached inspections, or read and
    decoded now) and held in memory. Returns (those frames, lineage), per source."""
    from pyspark.sql import functions as F

    inspected, records = [], []
    for index, source in enumerate(sources):
        mine = None if known is None else known.where(F.col("source") == f"{name}/{index}")
        versions = context.spark.createDataFrame(source.versions, VERSIONS_SCHEMA)
        images, cached, decoded_now = inspection_cache.inspect_files(
            context.spark, source.dataset, versions, mine, context.settings.max_image_pixels)
        log.info("%s: %d files known to the inspection cache, %d read and decoded", source.uri, cached, decoded_now)
        inspected.append(images)
        dataset = source.dataset
        records.append({"uri": source.uri, "resolved_uri": dataset.root_uri, "csv_uri": dataset.csv_uri,
                        "layout": dataset.layout, "files": len(dataset.files),
                        "manifest_sha256": manifest_hash(source.manifest), "files_decoded": decoded_now})
    return inspected, records


def validate_input(context: StepContext, name: str, sources: list[Source], per_class: int, known
                   ) -> tuple[dict, InputRecord]:
    """Validate one input (a base dataset plus any landed batches) as a whole.

    Returns (suite record, lineage record).
    """
    from functools import reduce

    from pyspark.sql import functions as F

    inspected, records = read_sources(context, name, sources, known)
    manifest = pd.concat([s.manifest.assign(image_id=s.id_prefix + s.manifest["image_id"]) for s in sources],
                         ignore_index=True)
    decoded = reduce(lambda a, b: a.unionByName(b),  # image ids prefixed by their source's: unique in the input
                     [frame.withColumn("image_id", F.concat(F.lit(s.id_prefix), "image_id"))
                      for frame, s in zip(inspected, sources)])
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
    layouts = {s.dataset.layout for s in sources}
    source = sources[0].uri + (f" and {len(sources) - 1} landed batch(es)" if len(sources) > 1 else "")
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
            kept = inspection_cache.add(context.storage, key, cache_part(context.run_id, name), decoded)
            context.commit_with_step(kept)
            log.info("%s: kept the inspections of %d newly read files", name, kept.rows)
    for frame in inspected:  # the inspected files, held in memory while this input was validated
        frame.unpersist()
    return suite, lineage


def write_html(context: StepContext, report: ValidationReport) -> None:
    page = render_html(report, f"Input validation, run {context.run_id}")
    context.storage.put_bytes(context.layout.key(VALIDATION_HTML), page.encode(), VALIDATION_HTML.media_type)


def training_sources(context: StepContext) -> tuple[list[tuple[str, str]], BatchSelection]:
    """The base training input, then the run's landed batches: chosen by its first validate and recorded,
    so a retry or a re-run of the run id trains on the same batches whatever landed since."""
    settings = context.settings
    chosen = choose_batches(context.storage, context.layout.key(BATCH_SELECTION), settings.incoming_input,
                            context.run_id, context.data_until)
    batches = [Batch(**b.model_dump()) for b in chosen.batches]
    return [("", settings.train_input)] + [(b.id_prefix, b.uri) for b in batches], chosen


def inputs_identity(context: StepContext) -> dict:
    """What validate reads, identified without reading it: each source's listing (``listing_identity``)."""
    train, _ = training_sources(context)
    return {name: [(uri, listing_identity(context.versioned_files(uri))) for _, uri in sources]
            for name, sources in (("train", train), ("eval", [("", context.settings.eval_input)]))}


def with_this_runs_selection(context: StepContext, summary: dict) -> dict:
    """A reused validate's summary and report, holding this run's batch selection: the same batches (the
    identity holds their URIs), but this run's data cut-off, arrival times and refused markers; its page
    names this run."""
    _, chosen = training_sources(context)
    report = context.storage.get_json(context.layout.key(VALIDATION_REPORT))
    context.storage.put_json(context.layout.key(VALIDATION_REPORT), {**report, "incoming": chosen.model_dump()})
    write_html(context, ValidationReport(report["success"], report["suites"]))
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
    resolved, failures = {}, {}
    for name, (sources, _) in inputs.items():
        try:
            resolved[name] = resolve_sources(context, sources)
        except InputError as error:
            failures[name] = structure_failure(name, str(error))
    known = known_inspections(context, resolved)
    suites, lineage = [], {}
    for name, (_, per_class) in inputs.items():
        if name in failures:
            suites.append(failures[name])
            continue
        suite, lineage[name] = validate_input(context, name, resolved[name], per_class, known)
        suites.append(suite)
    if known is not None:
        known.unpersist()
    report = ValidationReport(all(s["success"] for s in suites), suites)
    storage, layout = context.storage, context.layout
    storage.put_json(layout.key(VALIDATION_REPORT), {**report.to_json(), "incoming": chosen.model_dump()})
    write_html(context, report)
    if not report.success:
        raise StepRefused(f"{report.summary()}\nfull report: {context.uri(VALIDATION_HTML)}")
    if report.warnings():
        log.warning("%s\nfull report: %s", report.summary(), context.uri(VALIDATION_HTML))
    return ValidateSummary(inputs=lineage, data_until=chosen.data_until[:10], incoming=chosen,
                           class_counts={s["name"]: s["class_counts"] for s in suites})
