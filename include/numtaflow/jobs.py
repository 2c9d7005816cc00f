"""What every Spark job shares: arguments, settings, the run's storage layout, commit markers, reuse.

A step clears its own run-scoped prefix, writes its outputs, and commits them with a marker
last. A retry therefore starts from scratch and a reader never trusts a half-written step.

A reusable step (validate, sample, featurize, train) records a fingerprint of what its output is a
function of: the step, the package's source, the run settings (but ``reuse_steps``) and its inputs
(validate: the identity of the input files; the others: the fingerprints of the steps they read). A
committed step leaves ``cache/steps/<step>/<fingerprint>.json`` naming its run; a later step with
the same fingerprint copies that run's committed output (server-side) and commits it as its own,
with ``reused_from``, without starting Spark. A record whose run no longer holds a committed output
with that fingerprint is ignored, so deleting runs or the cache only means computing again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Callable

from .catalog import COMMIT_MARKER, RUN_OWNER, SCORING_STEPS, Artifact, RunLayout, step_record_key
from .config import ScoringSettings, Settings, form_overrides, scoring_settings, settings_object
from .contracts import Contract, JobExit, StepCommit, parse_commit
from .lineage import versions
from .storage import MissingCommit, Storage, StorageError, StorageRefused, WrittenPart, safe_run_id

log = logging.getLogger("numtaflow")


class StepRefused(RuntimeError):
    """A step's input or settings are unacceptable; the message is the whole explanation, and a retry
    would only refuse them again."""


class StepIncomplete(RuntimeError):
    """A step's output came out short or different from what it computed; a retry computes it again."""


class NothingToDo(Exception):
    """Nothing is left for this run to do (its work was taken by another run); the message says why."""


@dataclass
class StepContext:
    step: str
    run_id: str
    settings: Settings
    storage: Storage
    layout: RunLayout
    logical_date: str | None
    run_type: str
    data_until: str | None = None  # ISO time bounding which landed batches the run sees
    spark: object = None
    scoring: ScoringSettings | None = None  # a scoring run's settings (its steps are SCORING_STEPS)
    listings: dict[str, list] = field(default_factory=dict)  # what the step listed, by URI (``versioned_files``)
    retries_left: int = 0  # tries Airflow still gives the task if this one fails (0 outside Airflow)
    cache_parts: list[WrittenPart] = field(default_factory=list)  # committed once the step has (``commit_with_step``)

    def recorded_settings(self) -> dict:
        """What defines this run's result, as recorded in each commit marker."""
        return self.scoring.model_dump() if self.scoring else self.settings.run_settings()

    def uri(self, artifact: Artifact) -> str:
        return self.layout.uri(artifact)

    def versioned_files(self, uri: str) -> list[tuple[str, int, str]]:
        """``data.versioned_files`` of ``uri``, listed once per step: the identity a step is fingerprinted
        by and the file versions it then inspects come from one listing."""
        if uri not in self.listings:
            from .data import versioned_files

            self.listings[uri] = versioned_files(uri, self.storage)
        return self.listings[uri]

    def s3a(self, artifact: Artifact) -> str:
        return self.layout.s3a(artifact)

    def commit_with_step(self, part: WrittenPart) -> None:
        """Commit a cache part this step wrote right after the step's own commit: a step that fails or is
        refused leaves its parts uncommitted, never read (``numtaflow cache --prune`` deletes them)."""
        self.cache_parts.append(part)

    def require(self, step: str) -> StepCommit:
        """The typed commit record of an earlier step of this run, or a clear error."""
        record = self.storage.require_step(self.layout, step)
        return parse_commit(step, record, f"(s3://{self.layout.bucket}/{self.layout.marker_key(step)})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run one step of the NumtaDB transfer-learning workflow.")
    parser.add_argument("--run-id", required=True, help="Airflow run id (made safe for S3 keys)")
    parser.add_argument("--settings-json", default="{}", help="run setting overrides, as a JSON object")
    parser.add_argument("--form-json", default="{}",
                        help="the trigger form's values: only those changed from the form's defaults apply")
    parser.add_argument("--logical-date", default=None)
    parser.add_argument("--run-type", default="manual", help="manual, scheduled, backfill or asset_triggered")
    parser.add_argument("--data-until", default=None,
                        help="ISO time: train on batches landed up to this day (default: logical date, else today)")
    parser.add_argument("--retries-left", type=int, default=0,
                        help="how many more tries Airflow gives this task if it fails (0: this is the last)")
    return parser.parse_args(argv)


def context_from_args(step: str, args: argparse.Namespace, spark: object = None) -> StepContext:
    """A training step's settings: form > NUMTAFLOW_* > default; a scoring step's: its form > default."""
    scoring = step in SCORING_STEPS
    overrides = {}
    for option, text, pick in (("--form-json", args.form_json, dict if scoring else form_overrides),
                               ("--settings-json", args.settings_json, dict)):
        values = settings_object(option, text)
        overrides.update(pick({k: v for k, v in values.items() if v is not None}))
    settings = Settings.from_env() if scoring else Settings.from_env().with_overrides(overrides)
    run_id = safe_run_id(args.run_id)
    return StepContext(
        step=step,
        run_id=run_id,
        settings=settings,
        scoring=scoring_settings(overrides) if scoring else None,
        storage=Storage(settings),
        layout=(RunLayout.scoring if scoring else RunLayout)(settings.bucket, run_id),
        logical_date=args.logical_date,
        run_type=args.run_type.rsplit(".", 1)[-1].lower(),  # "DagRunType.MANUAL" -> "manual"
        data_until=args.data_until or args.logical_date or None,
        spark=spark,
        retries_left=max(0, args.retries_left),
    )


@dataclass(frozen=True)
class Reuse:
    """What a reusable step reads: the earlier steps of its run (``after``), and ``identify``: a function
    of the context giving the identity of what it reads besides them (the inputs themselves, for
    validate; the weights file, for featurize); the run
    settings its output does not depend on (``ignores``); and ``adapt``, which turns the reused
    summary (and outputs) into this run's where they record facts of the run rather than of the data."""

    after: tuple[str, ...] = ()
    identify: Callable[[StepContext], Any] | None = None
    ignores: tuple[str, ...] = ()
    adapt: Callable[[StepContext, dict], dict] | None = None


NOT_DEFINING = ("reuse_steps",)  # run settings that change how a result is reached, never what it is


def package_sha256() -> str:
    """sha256 of the package's source files as this process imports them (also from the archive a
    Spark driver imports): any change to the code makes every step compute again."""
    digest = hashlib.sha256()

    def walk(folder) -> None:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir() and entry.name != "__pycache__":
                walk(entry)
            elif entry.is_file() and not entry.name.endswith(".pyc"):
                digest.update(entry.name.encode() + b"\0" + entry.read_bytes())

    walk(resources.files(__package__))
    return digest.hexdigest()


def fingerprint_of(step: str, code: str, settings: dict, inputs: Any, ignores: tuple[str, ...] = ()) -> str:
    """What a step's output is a function of, as one hash."""
    defining = {k: v for k, v in settings.items() if k not in NOT_DEFINING + ignores}
    document = {"step": step, "code": code, "settings": defining, "inputs": inputs}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def step_fingerprint(context: StepContext, reuse: Reuse) -> str | None:
    """This run's fingerprint of the step; None when a step it reads recorded none."""
    inputs = {step: context.require(step).fingerprint for step in reuse.after}
    if None in inputs.values():
        return None
    if reuse.identify:
        inputs["identity"] = reuse.identify(context)
    inputs["libraries"] = versions()  # another TensorFlow, Pillow or Spark may compute other values
    return fingerprint_of(context.step, package_sha256(), context.recorded_settings(), inputs, reuse.ignores)


def step_outputs(storage: Storage, layout: RunLayout, step: str) -> dict[str, str]:
    """The step's objects in ``layout`` (relative key -> ETag), its commit marker left out."""
    prefix = layout.prefix(step)
    return {obj["Key"][len(prefix):]: obj["ETag"] for obj in storage.list_objects(prefix)
            if obj["Key"][len(prefix):] != COMMIT_MARKER}


def committed_with(context: StepContext, fingerprint: str) -> tuple[str, dict] | None:
    """The run whose committed output of this step has ``fingerprint`` and is still exactly the
    objects it committed, with its marker; or None."""
    storage = context.storage
    try:
        run_id = storage.get_json(step_record_key(context.step, fingerprint))["run_id"]
        source = RunLayout(context.layout.bucket, run_id)
        marker = storage.get_json(source.marker_key(context.step))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    if marker.get("fingerprint") != fingerprint or marker.get("outputs") != step_outputs(storage, source, context.step):
        return None
    return run_id, marker


def reuse_output(context: StepContext, reuse: Reuse, source_run: str, marker: dict, started: float,
                 fingerprint: str) -> None:
    """Commit ``source_run``'s output of the step (committed with ``marker``) as this run's: copied,
    unless it is this run's own."""
    storage, layout, step = context.storage, context.layout, context.step
    source = RunLayout(layout.bucket, source_run)
    if source_run != context.run_id:
        storage.begin_step(layout, step)
        storage.copy_prefix(source.prefix(step), layout.prefix(step), leave_out=(COMMIT_MARKER,))
        if set(step_outputs(storage, layout, step)) != set(marker["outputs"]):
            raise StepIncomplete(f"copying step '{step}' of run {source_run} did not give the same objects")
    summary = reuse.adapt(context, marker["summary"]) if reuse.adapt else marker["summary"]
    finished = time.time()
    commit(context, started, finished, summary, fingerprint, reused_from=source_run)
    log.info("step %s of run %s reused the committed output of run %s (same inputs, settings and code: "
             "fingerprint %s) in %.1f s", step, context.run_id, source_run, fingerprint[:16], finished - started)


def commit(context: StepContext, started: float, finished: float, summary: dict, fingerprint: str | None,
           reused_from: str | None = None) -> None:
    context.storage.commit_step(context.layout, context.step, {
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "seconds": round(finished - started, 2),
        "settings": context.recorded_settings(),
        "logical_date": context.logical_date,
        "run_type": context.run_type,
        "summary": summary,
        "fingerprint": fingerprint,
        "reused_from": reused_from,
        "outputs": step_outputs(context.storage, context.layout, context.step) if fingerprint else None,
    })


def claim_prefix(storage: Storage, layout: RunLayout, airflow_run_id: str) -> None:
    """Make the run's prefix this run's (put-if-absent), or refuse the step when it holds another run id's
    artifacts: a retry or re-run of the same run passes, ``exp:1`` after ``exp_1`` does not. (A prefix
    written before owners were recorded is claimed by the first run id that runs a step in it.)"""
    key = layout.key(RUN_OWNER)
    where = f"s3://{storage.bucket}/{key}"

    def owner() -> str | None:
        try:
            record = storage.get_json(key)
        except FileNotFoundError:
            return None
        except ValueError:
            record = None
        if not (isinstance(record, dict) and isinstance(record.get("run_id"), str)):
            raise StepRefused(f"{where} is not a run owner record ({{\"run_id\": ...}}): delete it if "
                              f"s3://{storage.bucket}/{layout.root} holds the artifacts of run {airflow_run_id!r}")
        return record["run_id"]

    holder = owner()
    if holder is None:
        if storage.put_if_absent(key, {"run_id": airflow_run_id}):
            return
        holder = owner()  # another step claimed it first: whose run?
        if holder is None:
            raise StorageError(f"{where} could not be claimed and holds no owner: a concurrent write failed")
    if holder == airflow_run_id:
        return
    advice = (f"pass the run's Airflow id {holder!r}, not its key-safe form" if safe_run_id(holder) == airflow_run_id
              else "trigger the run under another run id")
    raise StepRefused(f"run id {airflow_run_id!r} maps to s3://{storage.bucket}/{layout.root}, which holds the "
                      f"artifacts of run {holder!r} ({where}): {advice}")


def exit_status(error: Exception) -> JobExit:
    """Whether a retry can help: not for refused input or settings (``StepRefused``, and the ``ValueError``
    and ``FileNotFoundError`` of a bad input, weights file, contract or setting) nor for an earlier step
    without its commit marker (Airflow started this one after that step succeeded, so its output was
    deleted since) or S3 refusing the credentials or lacking the bucket; yes when S3 failed
    (``StorageError``: unreachable, an error answer) or an output came out incomplete."""
    if isinstance(error, (MissingCommit, StorageRefused)):
        return JobExit.REFUSED
    if isinstance(error, (StorageError, StepIncomplete)):
        return JobExit.FAILED
    return JobExit.REFUSED


def run_step(step: str, body: Callable[[StepContext], Contract], argv: list[str] | None = None,
             reuse: Reuse | None = None) -> None:
    """Entry point of ``spark_jobs/<step>.py``: reuse an equal committed output (``reuse``), or run
    ``body`` and commit; exit with the reason and a ``JobExit`` status when it cannot."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    args = parse_args(argv)
    started = time.time()
    try:
        context = context_from_args(step, args)
        from .spark import build_session, check_s3a_jars

        check_s3a_jars(context.settings)
        context.storage.check_bucket()  # wrong keys or a missing bucket: one sentence, not a traceback
        claim_prefix(context.storage, context.layout, args.run_id)
        fingerprint = step_fingerprint(context, reuse) if reuse else None
        earlier = committed_with(context, fingerprint) if fingerprint and context.settings.reuse_steps else None
        if earlier:
            reuse_output(context, reuse, *earlier, started, fingerprint)
            return
        context.storage.begin_step(context.layout, step)
        context.spark = build_session(f"numtaflow-{step}-{context.run_id}")
        summary = body(context)
        finished = time.time()
        commit(context, started, finished, summary.model_dump(), fingerprint)
        if fingerprint:
            context.storage.put_json(step_record_key(step, fingerprint), {"run_id": context.run_id,
                                                                           "committed_at": _iso(finished)})
        commit_cache_parts(context)
        log.info("step %s of run %s committed in %.1f s: %s", step, context.run_id, finished - started,
                 summary.model_dump_json()[:2000])
    except NothingToDo as reason:
        log.info("step %s of run %s has nothing to do: %s", step, args.run_id, reason)
        print(f"\nnumtaflow step '{step}' has nothing to do:\n{reason}\n", file=sys.stderr, flush=True)
        sys.exit(JobExit.NOTHING_TO_DO)
    except (StepRefused, StepIncomplete, StorageError, ValueError, FileNotFoundError) as error:
        log.error("step %s FAILED: %s", step, error)
        print(f"\nnumtaflow step '{step}' failed:\n{error}\n", file=sys.stderr, flush=True)
        sys.exit(exit_status(error))


def commit_cache_parts(context: StepContext) -> None:
    """Commit the cache parts the step wrote (``StepContext.commit_with_step``). The step has committed: a
    part whose marker cannot be written is left out of the cache with a warning (its entries are computed
    again when needed), never a reason to fail the step and compute everything again."""
    for part in context.cache_parts:
        try:
            context.storage.commit_part(part)
        except StorageError as error:
            log.warning("left the cache part s3://%s/%s uncommitted: %s", context.storage.bucket, part.prefix, error)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")
