"""The model registry in the bucket: a champion pointer, its history, and an index of runs.

* ``models/champion.json``: the one small object that says which model is served; changed only
  by compare-and-set (``If-Match`` on its ETag, ``If-None-Match: *`` for the first), so two
  runs finishing together cannot both win, and a lost race is re-judged against the winner.
* ``models/history/<time>__<run>.json``: one object per promotion or rollback, never rewritten.
* ``models/index.json``: one summary per run (metrics, gate decision), for fast listing.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from .storage import PreconditionFailed, Storage

CHAMPION_KEY = "models/champion.json"
HISTORY_PREFIX = "models/history/"
INDEX_KEY = "models/index.json"
CAS_ATTEMPTS = 8


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_champion(storage: Storage) -> tuple[dict | None, str | None]:
    return storage.read_with_etag(CHAMPION_KEY)


def set_champion(storage: Storage, record: dict, expected_etag: str | None, action: str) -> dict:
    """Point the champion at ``record`` if it is still ``expected_etag``; log it in the history."""
    pointer = {**record, "action": action, "changed_at": now_iso()}
    storage.compare_and_set(CHAMPION_KEY, pointer, expected_etag)
    stamp = pointer["changed_at"].replace(":", "").replace("-", "")
    storage.put_json(f"{HISTORY_PREFIX}{stamp}__{record['run_id']}.json", pointer)
    return pointer


def champion_record(storage: Storage, run_id: str) -> dict:
    """What the champion pointer says about a run, rebuilt from the run's own artifacts."""
    from .storage import RunLayout, StorageError

    layout = RunLayout(storage.bucket, run_id)
    try:
        metrics = storage.get_json(layout.key("evaluate", "metrics.json"))
        record = storage.get_json(layout.run_record_key)
    except FileNotFoundError:
        raise StorageError(f"run {run_id} has no completed evaluation; only evaluated runs can serve") from None
    return {
        "run_id": run_id,
        "model_uri": layout.uri("train", "model"),
        "metrics": {k: metrics[k] for k in ("accuracy", "f1", "precision", "recall", "roc_auc")},
        "settings": record["settings"],
        "backbone": record["backbone"],
        "eval_ids_sha256": record["sample"]["eval"]["ids_sha256"],
    }


def change_champion(storage: Storage, run_id: str, action: str, reason: str) -> dict:
    """Manually point the champion at an evaluated run (promote or roll back), compare-and-set."""
    current, etag = read_champion(storage)
    record = {**champion_record(storage, run_id), "previous_run_id": current.get("run_id") if current else None,
              "reasons": [reason]}
    return set_champion(storage, record, etag, action=action)


def previous_champion(storage: Storage) -> str | None:
    """The run that served before the current champion (for a rollback)."""
    current, _ = read_champion(storage)
    return current.get("previous_run_id") if current else None


def history(storage: Storage) -> list[dict]:
    keys = sorted(obj["Key"] for obj in storage.list_objects(HISTORY_PREFIX))
    return [storage.get_json(key) for key in keys]


def update_index(storage: Storage, run_id: str, summary: dict) -> None:
    """Insert or replace this run's summary in the index (retries on concurrent updates)."""
    _update(storage, INDEX_KEY, lambda runs: [r for r in runs if r.get("run_id") != run_id] + [summary])


def read_index(storage: Storage) -> list[dict]:
    value, _ = storage.read_with_etag(INDEX_KEY)
    return (value or {}).get("runs", [])


def _update(storage: Storage, key: str, change: Callable[[list], list]) -> None:
    for _ in range(CAS_ATTEMPTS):
        value, etag = storage.read_with_etag(key)
        runs = change((value or {}).get("runs", []))
        try:
            storage.compare_and_set(key, {"runs": runs, "updated_at": now_iso()}, etag)
            return
        except PreconditionFailed:
            continue
    raise PreconditionFailed(f"could not update {key} after {CAS_ATTEMPTS} attempts")
