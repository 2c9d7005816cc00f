"""What every Spark job shares: arguments, settings, the run's storage layout, commit markers.

A step clears its own run-scoped prefix, writes its outputs, and commits them with a marker
last. A retry therefore starts from scratch and a reader never trusts a half-written step.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from .catalog import SCORING_STEPS, Artifact, RunLayout
from .config import ScoringSettings, Settings, form_overrides, scoring_settings
from .contracts import Contract, ContractError, StepCommit, parse_commit
from .storage import Storage, StorageError, safe_run_id

log = logging.getLogger("numtaflow")


class StepFailed(RuntimeError):
    """A step's input or result is unacceptable; the message is the whole explanation."""


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

    def recorded_settings(self) -> dict:
        """What defines this run's result, as recorded in each commit marker."""
        return self.scoring.model_dump() if self.scoring else self.settings.run_settings()

    def uri(self, artifact: Artifact) -> str:
        return self.layout.uri(artifact)

    def s3a(self, artifact: Artifact) -> str:
        return self.layout.s3a(artifact)

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
    return parser.parse_args(argv)


def context_from_args(step: str, args: argparse.Namespace, spark: object = None) -> StepContext:
    """A training step's settings: form > NUMTAFLOW_* > default; a scoring step's: its form > default."""
    scoring = step in SCORING_STEPS
    overrides = {}
    for option, text, pick in (("--form-json", args.form_json, dict if scoring else form_overrides),
                               ("--settings-json", args.settings_json, dict)):
        values = json.loads(text or "{}")
        if not isinstance(values, dict):
            raise StepFailed(f"{option} must be a JSON object")
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
    )


def run_step(step: str, body: Callable[[StepContext], Contract], argv: list[str] | None = None) -> None:
    """Entry point of ``spark_jobs/<step>.py``: run ``body`` and commit, or exit 1 with the reason."""
    os.environ.setdefault("TQDM_DISABLE", "1")  # GX's progress bars would flood the task log
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)
    args = parse_args(argv)
    started = time.time()
    try:
        context = context_from_args(step, args)
        from .spark import build_session, spark_jars

        spark_jars(context.settings)  # a clear error now rather than a ClassNotFound for s3a later
        context.storage.check_bucket()  # wrong keys or a missing bucket: one sentence, not a traceback
        context.storage.begin_step(context.layout, step)
        context.spark = build_session(f"numtaflow-{step}-{context.run_id}")
        summary = body(context)
        finished = time.time()
        context.storage.commit_step(
            context.layout,
            step,
            {
                "started_at": _iso(started),
                "finished_at": _iso(finished),
                "seconds": round(finished - started, 2),
                "settings": context.recorded_settings(),
                "logical_date": context.logical_date,
                "run_type": context.run_type,
                "summary": summary.model_dump(),
            },
        )
        log.info("step %s of run %s committed in %.1f s: %s", step, context.run_id, finished - started,
                 summary.model_dump_json()[:2000])
    except (StepFailed, StorageError, ContractError, ValueError, FileNotFoundError) as error:
        log.error("step %s FAILED: %s", step, error)
        print(f"\nnumtaflow step '{step}' failed:\n{error}\n", file=sys.stderr, flush=True)
        sys.exit(1)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")
