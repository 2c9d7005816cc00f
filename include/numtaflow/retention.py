"""Retention: a finished run keeps its evidence and lets go of its working data.

A training run writes working data that only its own later steps read: the validated and sampled
images with their bytes, the features, the hold-out split (the catalog marks them ``intermediate``); a
scoring run, the bytes of its batch. ``prune`` deletes them from the finished runs (those in an index)
that are neither among the newest ``keep`` nor finished within ``older_than``, and whose last step's
commit marker is still their newest object (a run being re-run is left alone): step by step, the
commit marker first (nothing trusts a half-deleted output, and a re-run of a later step refuses to
start, naming the step to re-run), then the step's intermediate objects. What the Models pages,
``report``, ``models promote`` and the scoring reports read stays: metrics, plots, reports,
``run.json``, the model and pipeline, the predictions.

A step record (``cache/steps/``) naming a pruned run is first moved to the newest kept run that holds
the same output (a run that reused it holds its own copy), so later runs go on reusing it; with none,
it is left to be ignored (``jobs.committed_with``), and the next run computes that step again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from .catalog import (ARTIFACTS, INDEX_KEY, SCORING_ARTIFACTS, SCORING_INDEX_KEY, SCORING_STEPS, STEP_CACHE_PREFIX,
                      STEPS, Artifact, RunLayout)
from .incoming import cutoff_time
from .registry import read_index
from .storage import Storage


@dataclass(frozen=True)
class Area:
    """The runs of one DAG: their index, their layout, what their steps write."""

    name: str
    index_key: str
    layout: Callable[[str, str], RunLayout]
    steps: tuple[str, ...]
    artifacts: tuple[Artifact, ...]
    finished_field: str  # the index field saying when a run finished


AREAS = (Area("training", INDEX_KEY, RunLayout, STEPS, ARTIFACTS, "finished_at"),
         Area("scoring", SCORING_INDEX_KEY, RunLayout.scoring, SCORING_STEPS, SCORING_ARTIFACTS, "created_at"))


@dataclass(frozen=True)
class Pruned:
    area: str
    run_id: str
    bytes: int  # freed, or that would be
    busy: bool = False  # written since its last step committed (a re-run): left alone


def newest_first(runs: list[dict], finished_field: str) -> list[dict]:
    """An index's runs, the newest first; a run without a finishing time counts as the newest."""
    return sorted(runs, key=lambda r: r.get(finished_field) or "~", reverse=True)


def prunable(runs: list[dict], finished_field: str, keep: int, older_than: timedelta, now: datetime) -> list[str]:
    """The runs of an index to prune: all but the newest ``keep`` that finished before ``now - older_than``
    (a run without a finishing time is never pruned)."""
    return [run["run_id"] for run in newest_first(runs, finished_field)[keep:]
            if run.get(finished_field) and cutoff_time(run[finished_field]) < now - older_than]


def intermediates(area: Area) -> list[tuple[str, list[Artifact]]]:
    """(step, its intermediate artifacts), in step order, for the steps that write any."""
    by_step = [(step, [a for a in area.artifacts if a.intermediate and a.step == step]) for step in area.steps]
    return [(step, artifacts) for step, artifacts in by_step if artifacts]


def _of(artifact: Artifact, layout: RunLayout, objects: list[dict]) -> list[dict]:
    key = layout.key(artifact)
    return [o for o in objects if o["Key"] == key or (artifact.is_folder and o["Key"].startswith(key + "/"))]


def being_rewritten(objects: list[dict], last_marker: str) -> bool:
    """Whether a run's objects show it is not (or no longer) finished: its last step's marker is missing,
    or something was written after it (a re-run, or a step cleared to run again)."""
    marker = next((o for o in objects if o["Key"] == last_marker), None)
    return marker is None or any(o["LastModified"] > marker["LastModified"] for o in objects)


def prune_run(storage: Storage, layout: RunLayout, area: Area, dry_run: bool = False) -> Pruned:
    """Delete one run's intermediate artifacts, each step's commit marker first: the bytes freed (or, with
    ``dry_run``, that would be). A second prune frees nothing; a run being rewritten is left alone, also
    one whose re-run starts while this prunes: before each step, its marker and the last step's must
    still be those listed, and only the objects listed are deleted (never one a re-run wrote since)."""
    objects = list(storage.list_objects(layout.root))
    last_marker = layout.marker_key(area.steps[-1])
    if being_rewritten(objects, last_marker):
        return Pruned(area.name, layout.run_id, 0, busy=True)
    listed = {o["Key"]: o["ETag"] for o in objects}
    freed = 0
    for step, artifacts in intermediates(area):
        found = [o for artifact in artifacts for o in _of(artifact, layout, objects)]
        if not found:
            continue
        if not dry_run:
            markers = (last_marker, layout.marker_key(step))
            if any(storage.etag(marker) != listed.get(marker) for marker in markers):  # a re-run committed since
                return Pruned(area.name, layout.run_id, freed, busy=True)
            storage.delete(layout.marker_key(step))
            storage.delete_keys([o["Key"] for o in found], f"of step {step} of run {layout.run_id}")
        freed += sum(o["Size"] for o in found)
    return Pruned(area.name, layout.run_id, freed)


def move_step_records(storage: Storage, pruned: set[str], kept: list[str], dry_run: bool = False) -> int:
    """Point each step record naming a pruned training run at the newest kept run (``kept`` newest first)
    whose committed step has the same fingerprint; how many records moved."""
    holders: dict[tuple[str, str], str] = {}
    for run_id in reversed(kept):  # the newest last, so it wins
        layout = RunLayout(storage.bucket, run_id)
        for step in STEPS:
            marker = storage.committed_step(layout, step)
            if marker and marker.get("fingerprint"):
                holders[(step, marker["fingerprint"])] = run_id
    moved = 0
    for obj in list(storage.list_objects(STEP_CACHE_PREFIX)):
        step, _, name = obj["Key"][len(STEP_CACHE_PREFIX):].partition("/")
        if not name.endswith(".json"):  # a folder object some servers list
            continue
        fingerprint = name.removesuffix(".json")
        try:
            record = storage.get_json(obj["Key"])
        except (FileNotFoundError, ValueError):  # deleted meanwhile, or not JSON: reuse ignores it too
            continue
        holder = holders.get((step, fingerprint))
        if isinstance(record, dict) and record.get("run_id") in pruned and holder:
            if not dry_run:
                storage.put_json(obj["Key"], {**record, "run_id": holder})
            moved += 1
    return moved


def prune(storage: Storage, keep: int, older_than: timedelta, dry_run: bool = False,
          now: datetime | None = None) -> tuple[list[Pruned], int]:
    """Prune the finished training and scoring runs beyond the newest ``keep`` and older than
    ``older_than``: what each freed (runs with nothing left to free are left out) or that it was left
    alone, and how many step records moved to a kept run."""
    now = now or datetime.now(timezone.utc)
    done, moved = [], 0
    for area in AREAS:
        runs = read_index(storage, area.index_key)
        doomed = prunable(runs, area.finished_field, keep, older_than, now)
        if area.name == "training" and doomed:  # before the markers go: a record always names a holder
            kept = [r["run_id"] for r in newest_first(runs, area.finished_field) if r["run_id"] not in doomed]
            moved = move_step_records(storage, set(doomed), kept, dry_run)
        for run_id in doomed:
            outcome = prune_run(storage, area.layout(storage.bucket, run_id), area, dry_run)
            if outcome.bytes or outcome.busy:
                done.append(outcome)
    return done, moved
