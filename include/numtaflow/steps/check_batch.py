"""check_batch: pin the model, then decode and prepare every file of the batch exactly as scoring will.

What is scored is the form's input (a folder of images, a .zip, an s3:// prefix), or else the committed
inbox batches no scoring run has claimed yet (``incoming.claim_batches``). One bad scan never blocks a
batch: each file that cannot be scored is listed with its reason in ``rejected.csv`` and the rest go on,
as is a batch holding no file at all (its marker only); the run fails, with the reasons, only when
nothing is scorable. A run started by a batch's arrival that finds every batch claimed (an earlier run
took it with its own) has nothing to do: its tasks are skipped. Outputs ``model.json`` (the pinned
version, written once), ``images.parquet`` (every file: id, source path, bytes of the scorable ones, the
reason of the others) and ``rejected.csv``.
"""

from __future__ import annotations

import io
from functools import reduce

from ..catalog import MODEL_PIN, REJECTED, SCORABLE, SCORED_BATCHES_KEY, SCORING_BATCHES, STAGING_PREFIX
from ..contracts import CheckBatchSummary
from ..data import HIDDEN_REASON, InputError, decode_images, is_zip, list_input, stage_zip
from ..incoming import claim_batches, list_batches
from ..jobs import NothingToDo, StepContext, StepRefused, log
from ..registry import RegistryError
from ..scoring import pin_model

SHOWN_REASONS = 10
INSPECTED_SCHEMA = "image_id string, path string, content binary, content_sha256 string, reason string"


def scoring_inputs(context: StepContext) -> list[tuple[str, str]]:
    """(image id prefix, folder URI) of everything this run scores."""
    scoring, settings = context.scoring, context.settings
    if scoring.scoring_input:
        return [("", scoring.scoring_input)]
    if not settings.inbox_input:
        raise StepRefused("nothing to score: the form names no input and NUMTAFLOW_INBOX_INPUT is empty")
    selection = claim_batches(context.storage, context.layout.key(SCORING_BATCHES), settings.inbox_input,
                              context.run_id)
    for refused in selection.refused:
        log.warning("inbox batch refused, not scored: %s: %s", refused.marker, refused.reason)
    if not selection.batches:
        refusals = "".join(f"; refused: {refused.marker}: {refused.reason}" for refused in selection.refused)
        claims = f"s3://{context.storage.bucket}/{SCORED_BATCHES_KEY}"
        landed = list_batches(context.storage, settings.inbox_input)
        if context.run_type == "asset_triggered" and landed:  # two batches a poll apart: the first run took both
            raise NothingToDo(f"every committed batch under {settings.inbox_input} was claimed by a scoring run "
                              f"that started earlier, the batch whose arrival started this run included "
                              f"(which run scores which batch: {claims})")
        if not landed:  # a run its arrival started sees none: the triggerer watches another prefix?
            raise StepRefused(f"nothing to score: no committed batch under {settings.inbox_input} (the triggerer "
                              f"that started an inbox run must watch the NUMTAFLOW_INBOX_INPUT its tasks see){refusals}")
        raise StepRefused(f"nothing to score: no committed batch that no scoring run has claimed under "
                          f"{settings.inbox_input} (which run scores which batch: {claims}){refusals}")
    return [(f"dt={batch.day}/{batch.name}/", batch.uri) for batch in selection.batches]


class NoFiles(Exception):
    """An input with no file to inspect: a folder that is empty or missing, a batch holding only its marker."""


def inspected(context: StepContext, id_prefix: str, uri: str):
    """Every file under ``uri`` with its bytes if it can be scored, else the reason; each file's ``path``
    as the user named it (a zip's members as ``<archive>.zip/<member>``, as ``predict`` names them)."""
    from pyspark.sql import functions as F

    shown, unreadable = uri.rstrip("/"), ()
    if is_zip(uri):  # a member the archive cannot give is refused like a file that does not decode
        staged = stage_zip(uri, context.storage, STAGING_PREFIX, skip_unreadable=True)
        uri, shown, unreadable = staged.uri, f"{shown}/{staged.top}".rstrip("/"), staged.unreadable
    try:
        listed, hidden = list_input(uri, context.storage)
    except InputError as error:
        if not unreadable:
            raise NoFiles(str(error)) from None
        listed, hidden = [], []  # not one member could be extracted
    if not listed and not hidden and not unreadable:
        raise NoFiles(f"{shown} holds no files")
    folder = shown + "/"
    refused = [(name, HIDDEN_REASON) for name in hidden] + list(unreadable)
    frame = context.spark.createDataFrame(  # what Spark will not read, each with its reason
        [(id_prefix + name, folder + name, None, None, reason) for name, reason in refused], INSPECTED_SCHEMA)
    if not listed:
        return frame
    files = decode_images(context.spark, uri, context.settings.max_image_pixels)
    reason = F.coalesce("decode_error", F.concat(F.lit("holds no digit: "), "excluded"))
    return files.select(F.concat(F.lit(id_prefix), "image_id").alias("image_id"),
                        F.concat(F.lit(folder), "image_id").alias("path"),
                        F.when(reason.isNull(), F.col("content")).alias("content"), "content_sha256",
                        reason.alias("reason")).unionByName(frame)


def run(context: StepContext) -> CheckBatchSummary:
    from pyspark.sql import functions as F

    storage, layout = context.storage, context.layout
    try:
        pin = pin_model(storage, layout.key(MODEL_PIN), context.scoring.model)
    except RegistryError as error:  # no champion yet, an unknown version or run: the form must change
        raise StepRefused(str(error)) from None
    inputs = scoring_inputs(context)
    frames, empty = [], []
    for prefix, uri in inputs:
        try:
            frames.append(inspected(context, prefix, uri))
        except NoFiles as error:
            empty.append((prefix, uri, str(error)))
    if not frames:
        raise StepRefused(f"nothing to score: {'; '.join(reason for _, _, reason in empty)}")
    if empty:  # one empty inbox batch claimed with others must not block them: it is listed as refused
        frames.append(context.spark.createDataFrame([(prefix, uri, None, None, reason) for prefix, uri, reason in empty],
                                                    INSPECTED_SCHEMA))
    reduce(lambda a, b: a.unionByName(b), frames).write.mode("overwrite").parquet(context.s3a(SCORABLE))
    checked = context.spark.read.parquet(context.s3a(SCORABLE))
    rejected = checked.where(F.col("reason").isNotNull()).select("image_id", "path", "reason").orderBy("image_id")
    table = rejected.toPandas()
    text = io.StringIO()
    table.to_csv(text, index=False)
    storage.put_bytes(layout.key(REJECTED), text.getvalue().encode(), REJECTED.media_type)
    files = checked.count()
    if len(table) == files:
        shown = "; ".join(f"{row.path}: {row.reason}" for row in table.head(SHOWN_REASONS).itertuples())
        raise StepRefused(f"nothing in {', '.join(uri for _, uri in inputs)} can be scored: all {files} files were "
                         f"refused ({shown}); every reason is in {context.uri(REJECTED)}")
    return CheckBatchSummary(inputs=[uri for _, uri in inputs], model_version=pin.version, files=files,
                             scorable=files - len(table), rejected=len(table))
