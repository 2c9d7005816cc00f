"""The model registry in the bucket: immutable model versions, the champion pointer, its history.

* ``models/versions/<version>/``: a promoted model, copied out of its run (whose prefix any re-run
  rewrites) into a folder named by the model's content hash, with ``version.json`` beside it. A
  version is written once and never deleted or rewritten.
* ``models/champion.json``: which version serves. It changes only by compare-and-set (``If-Match``
  on its ETag, ``If-None-Match: *`` for the first), so two promotions cannot both win; a lost race
  is re-judged against the winner.
* ``models/history/<sequence>__<version>.json``: one object per change of the pointer, numbered.
* ``models/index.json``: one summary per evaluated run, for fast listing.

The promotion rule is a function passed in (``judge``), so this module needs no Spark.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any, Callable

from pydantic import AliasChoices, Field, ValidationError

from .catalog import (CHAMPION_KEY, HISTORY_PREFIX, INDEX_KEY, LINEAGE, METRICS, MISCLASSIFIED, MODEL,
                      MODEL_CARD_EXAMPLES, MODEL_CARD_FACTS, MODEL_CARD_TEXT, PIPELINE, TRAINED_ON, VERSION_FILES,
                      VERSION_RECORD, VERSIONS_PREFIX, RunLayout)
from .contracts import Contract, Featurizer
from .model_card import card_facts
from .storage import PreconditionFailed, Storage, StorageError, safe_run_id, split_uri
from .templates import render

CAS_ATTEMPTS = 8
HEADLINE_METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc")


class RegistryError(StorageError):
    """The registry holds something it cannot act on; the message names the object and the fix."""


class Metrics(Contract):
    accuracy: float
    f1: float
    precision: float | None = None
    recall: float | None = None
    roc_auc: float | None = None


class ModelVersion(Contract):
    """An evaluated model: where it is, what it scored, what it needs (``version.json``)."""

    run_id: str
    model_uri: str  # the MLlib classifier, which evaluate re-scores on features
    pipeline_uri: str | None = None  # image bytes in, digit out (ml.digit_pipeline); None before pipelines
    metrics: Metrics
    settings: dict[str, Any]
    featurizer: Featurizer = Field(validation_alias=AliasChoices("featurizer", "backbone"))
    eval_ids_sha256: str
    model_sha256: str | None = None  # None: a champion recorded before models were versioned
    version: str | None = None
    registered_at: str | None = None


class Champion(ModelVersion):
    """The pointer: the serving version, how it got there, and what served before it."""

    action: str
    changed_at: str
    reasons: list[str]
    previous_run_id: str | None = None
    previous_version: str | None = None
    sequence: int = 0  # 1 for the first champion, +1 per change: orders the history


VERSION_ID = re.compile(r"[0-9a-f]{16}")  # the first 16 hex digits of the model's sha256


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def version_prefix(version: str) -> str:
    return f"{VERSIONS_PREFIX}{version}/"


def version_key(version: str) -> str:
    return version_prefix(version) + VERSION_RECORD


# --- reading ---------------------------------------------------------------------------------
def read_champion(storage: Storage) -> tuple[Champion | None, str | None]:
    """The champion and the pointer's ETag; ``(None, None)`` only when no model was ever promoted.

    A pointer that does not parse, lacks what the gate needs, or is gone while the history records
    promotions, is an error naming the object: taking it for "no champion yet" would let any candidate
    through without the regression check.
    """
    try:
        value, etag = storage.read_with_etag(CHAMPION_KEY)
    except ValueError as error:  # not JSON
        raise RegistryError(f"{error}; nothing is promoted until it is repaired: "
                            "`python -m numtaflow models promote RUN`") from None
    if value is None:
        if last := last_change(storage):  # the pointer is written before its history entry: never a transient
            served = last.get("version") or "VERSION"
            raise RegistryError(f"s3://{storage.bucket}/{CHAMPION_KEY} is missing, yet {HISTORY_PREFIX} records "
                                f"{last.get('sequence', 'some')} change(s), the last serving version {served}; nothing "
                                f"is promoted until it is repaired: `python -m numtaflow models rollback {served}` "
                                f"(or delete {HISTORY_PREFIX} too, to start with no champion)")
        return None, None
    try:
        return Champion.model_validate(value), etag
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
        raise RegistryError(f"s3://{storage.bucket}/{CHAMPION_KEY} is not a usable champion record ({problems}); "
                            "nothing is promoted until it is repaired: `python -m numtaflow models promote RUN` "
                            "or `models rollback VERSION`") from None


def read_version(storage: Storage, version: str) -> ModelVersion:
    try:
        return ModelVersion.model_validate(storage.get_json(version_key(version)))
    except FileNotFoundError:
        raise RegistryError(f"model version {version} does not exist ({VERSIONS_PREFIX})") from None


def training_images(storage: Storage, version: str | None) -> frozenset[str] | None:
    """The sha256 of every image the version's training sample held; None for a version registered
    before they were recorded."""
    if version is None:
        return None
    key = version_prefix(version) + TRAINED_ON.name
    try:
        record = storage.get_json(key)
    except FileNotFoundError:
        return None
    hashes = record.get("content_sha256") if isinstance(record, dict) else None
    if not isinstance(hashes, list):
        raise RegistryError(f"{key} does not hold the version's training images as {{\"content_sha256\": [...]}}")
    return frozenset(hashes)


def find_model(storage: Storage, requested: str) -> ModelVersion:
    """The registered version a user names: ``champion``, a version, or a training run whose model was
    registered. Only a registered (immutable) version can be used: a run's own prefix may be rewritten."""
    if requested == "champion":
        champion = read_champion(storage)[0]
        if champion is None:
            raise RegistryError("no model has been promoted yet: run the training workflow, or name a version")
        return champion
    if VERSION_ID.fullmatch(requested):
        return read_version(storage, requested)
    try:
        run_id = safe_run_id(requested)  # the index holds run ids as their keys: Airflow's form names them too
    except ValueError:
        run_id = None
    entry = next((e for e in read_index(storage) if run_id and e.get("run_id") == run_id), None)
    if entry is None:
        raise RegistryError(f"{requested!r} is neither 'champion', a model version (16 hex digits) nor an evaluated "
                            "training run")
    if not storage.exists(version_key(entry["version"])):
        raise RegistryError(f"the model of run {requested} (version {entry['version']}) was never registered: the "
                            "gate did not promote it; `python -m numtaflow models promote RUN` registers it")
    return read_version(storage, entry["version"])


def history(storage: Storage) -> list[dict]:
    """Every change of the champion, oldest first: by sequence, then time (entries written before
    sequences were kept have none, and keys named by time, which sort after ``00000001__``)."""
    changes = [storage.get_json(obj["Key"]) for obj in storage.list_objects(HISTORY_PREFIX)]
    return sorted(changes, key=lambda change: (change.get("sequence", 0), change.get("changed_at") or ""))


def last_change(storage: Storage) -> dict | None:
    """The champion history's newest entry (the pointer as that change wrote it), or None."""
    changes = history(storage)
    return changes[-1] if changes else None


def read_index(storage: Storage, key: str = INDEX_KEY) -> list[dict]:
    value, _ = storage.read_with_etag(key)
    if value is not None and not (isinstance(value, dict) and isinstance(value.get("runs", []), list)):
        raise ValueError(f"s3://{storage.bucket}/{key} is not a runs index ({{\"runs\": [...]}})")
    return (value or {}).get("runs", [])


# --- versions --------------------------------------------------------------------------------
def _prefix(uri: str) -> str:
    return split_uri(uri)[2].rstrip("/") + "/"


def model_digest(storage: Storage, *uris: str | None) -> str:
    """sha256 over the saved folders' files (names and bytes): the model's identity."""
    digest = hashlib.sha256()
    for prefix in (_prefix(uri) for uri in uris if uri):
        for key in sorted(obj["Key"] for obj in storage.list_objects(prefix) if not obj["Key"].endswith("/")):
            digest.update(key[len(prefix):].encode() + b"\0" + hashlib.sha256(storage.get_bytes(key)).digest())
    return digest.hexdigest()


def candidate_version(storage: Storage, layout: RunLayout, metrics: dict, settings: dict,
                      featurizer: Featurizer, eval_ids_sha256: str) -> ModelVersion:
    """A run's trained model (and its pipeline, where train saved one) as a version-to-be, still
    under the run's prefix."""
    model_uri = layout.uri(MODEL)
    pipeline_uri = layout.uri(PIPELINE) if any(storage.list_objects(_prefix(layout.uri(PIPELINE)))) else None
    digest = model_digest(storage, model_uri, pipeline_uri)
    return ModelVersion(run_id=layout.run_id, model_uri=model_uri, pipeline_uri=pipeline_uri,
                        metrics=Metrics(**{k: metrics.get(k) for k in HEADLINE_METRICS}), settings=settings,
                        featurizer=featurizer, eval_ids_sha256=eval_ids_sha256, model_sha256=digest,
                        version=digest[:16])


def require_pipeline(version: ModelVersion) -> None:
    """The scoring half serves a version's pipeline: one without it can never serve."""
    if not version.pipeline_uri:
        raise RegistryError(f"model version {version.version} (run {version.run_id}) was saved without its "
                            "pipeline and cannot serve; promote a run trained since pipelines are saved")


def register(storage: Storage, candidate: ModelVersion, evidence: tuple[dict, dict] | None = None) -> ModelVersion:
    """Copy the candidate's model and pipeline into its immutable version folder (once), with its model
    card made from ``evidence`` (the run's metrics and lineage records); returns the version as served
    from there. Registering the same model again changes nothing; one without a pipeline is refused."""
    if storage.exists(version_key(candidate.version)):
        return read_version(storage, candidate.version)
    require_pipeline(candidate)
    target = f"s3://{storage.bucket}/{version_prefix(candidate.version)}"
    moved = {field: target + folder for field, folder in (("model_uri", "model"), ("pipeline_uri", "pipeline"))
             if getattr(candidate, field)}
    for field, uri in moved.items():
        storage.copy_prefix(_prefix(getattr(candidate, field)), _prefix(uri))
    registered = candidate.model_copy(update={**moved, "registered_at": now_iso()})
    if model_digest(storage, registered.model_uri, registered.pipeline_uri) != candidate.model_sha256:
        raise RegistryError(f"the model under {candidate.model_uri} changed while it was being registered")
    run = RunLayout(storage.bucket, candidate.run_id)
    if storage.exists(run.key(TRAINED_ON)):
        storage.copy(storage.bucket, run.key(TRAINED_ON), version_prefix(candidate.version) + TRAINED_ON.name)
    if evidence:
        card = card_facts(registered.model_dump(mode="json"), *evidence)
        storage.put_json(version_prefix(candidate.version) + MODEL_CARD_FACTS, card)
        examples = run.key(MISCLASSIFIED)
        if storage.exists(examples):
            storage.copy(storage.bucket, examples, version_prefix(candidate.version) + MODEL_CARD_EXAMPLES)
        storage.put_bytes(version_prefix(candidate.version) + MODEL_CARD_TEXT,
                          render("model_card.md", card=card, examples=MODEL_CARD_EXAMPLES).encode(),
                          VERSION_FILES[MODEL_CARD_TEXT])
    storage.put_if_absent(version_key(candidate.version), registered.model_dump(mode="json"))
    return registered


def run_evidence(storage: Storage, run_id: str) -> tuple[dict, dict]:
    """An evaluated run's metrics and lineage records."""
    layout = RunLayout(storage.bucket, run_id)
    try:
        return storage.get_json(layout.key(METRICS)), storage.get_json(layout.key(LINEAGE))
    except FileNotFoundError:
        raise RegistryError(f"run {run_id} has no completed evaluation; only evaluated runs can serve") from None


def version_of_run(storage: Storage, run_id: str) -> ModelVersion:
    """An evaluated run's model as a version-to-be, from the run's own evidence; refused unless it is the
    very model that evidence judged (a run trained again since, or being trained, holds another)."""
    metrics, record = run_evidence(storage, run_id)
    candidate = candidate_version(storage, RunLayout(storage.bucket, run_id), metrics, record["settings"],
                                  Featurizer(**record["featurizer"]), record["sample"]["eval"]["ids_sha256"])
    judged = metrics.get("gate", {}).get("candidate_version")
    if candidate.version != judged:
        raise RegistryError(f"run {run_id} holds model version {candidate.version}, not the version {judged} its "
                            "evaluation judged: it was trained again since (or is being); let the run finish "
                            "evaluate, then promote it")
    return candidate


# --- changing the pointer --------------------------------------------------------------------
def cas_update(storage: Storage, key: str, change: Callable[[Any], Any], what: str,
               read: Callable[[], tuple[Any, str | None]] | None = None) -> Any:
    """Read ``key``, compute its new value with ``change(value)`` and write it by compare-and-set; on
    a lost race read again and recompute. ``change`` returning None writes nothing. Returns the value
    written (or None). ``read`` replaces the plain JSON read (the champion is read validated)."""
    read = read or (lambda: storage.read_with_etag(key))
    for _ in range(CAS_ATTEMPTS):
        value, etag = read()
        updated = change(value)
        if updated is None:
            return None
        try:
            storage.compare_and_set(key, updated, etag)
            return updated
        except PreconditionFailed:
            continue
    raise RegistryError(f"{what}: s3://{storage.bucket}/{key} kept changing; gave up after {CAS_ATTEMPTS} "
                        "attempts and changed nothing; try again")


Choice = tuple[ModelVersion, str, list[str]]  # the version to serve, the action, the reasons


def switch_champion(storage: Storage, choose: Callable[[Champion | None], Choice | None], what: str,
                    repair: bool = False) -> Champion | None:
    """Point the champion at the registered version ``choose(current)`` names, by compare-and-set,
    choosing again on the pointer as it is after a lost race; ``choose`` returning None keeps the
    champion. With ``repair``, a broken pointer counts as none (to replace it); otherwise it is an
    error. Each change is logged in the history."""
    def read():
        try:
            return read_champion(storage)
        except RegistryError:
            if not repair:
                raise
            return None, storage.etag(CHAMPION_KEY)

    def change(current: Champion | None):
        chosen = choose(current)
        if chosen is None:
            return None
        version, action, reasons = chosen
        if current and current.version == version.version:  # already serving: a change would only add history
            return None
        require_pipeline(version)  # a version registered before pipelines were saved
        # no pointer, or a broken one being repaired: the history's last entry is what it served, and
        # the sequence goes on from there instead of overwriting the first entries
        before = current.model_dump(mode="json") if current else last_change(storage) or {}
        return Champion(**version.model_dump(by_alias=False), action=action, changed_at=now_iso(), reasons=reasons,
                        previous_run_id=before.get("run_id"), previous_version=before.get("version"),
                        sequence=before.get("sequence", 0) + 1).model_dump(mode="json")

    pointer = cas_update(storage, CHAMPION_KEY, change, what, read)
    if pointer is None:
        return None
    storage.put_json(f"{HISTORY_PREFIX}{pointer['sequence']:08d}__{pointer['version'] or pointer['run_id']}.json",
                     pointer)
    return Champion.model_validate(pointer)


def promote_run(storage: Storage, run_id: str, reason: str) -> Champion | None:
    """Manual promotion of an evaluated run's model (registered as a version first); also repairs a
    broken pointer. None when that version serves already."""
    version = register(storage, version_of_run(storage, run_id), run_evidence(storage, run_id))
    return switch_champion(storage, lambda current: (version, "promote", [reason]), "models promote", repair=True)


def rollback_target(changes: list[dict]) -> str | None:
    """The version a plain rollback serves, from the champion's history (oldest change first): the one
    that served before the current version, where each rollback took back the promotions it undid, so
    that rolling back twice goes back two promotions instead of swapping the last two versions."""
    served: list[str] = []
    for change in changes:
        version = change.get("version")
        if version is None:  # written before models were versioned: nothing that can serve again
            continue
        if change.get("action") == "rollback" and version in served:
            del served[len(served) - served[::-1].index(version):]
        elif not served or served[-1] != version:
            served.append(version)
    return served[-2] if len(served) > 1 else None


def rollback(storage: Storage, reason: str, version: str | None = None) -> Champion | None:
    """Point the champion at ``version``, or back at the version that served before the current one
    (``rollback_target``), decided on the pointer as it is when the compare-and-set succeeds (a promotion
    landing meanwhile is what gets rolled back, never overwritten unseen). Naming a version also repairs a
    broken pointer. None when ``version`` serves already."""
    def earlier(current: Champion) -> str | None:
        changes = history(storage)
        if changes and changes[-1].get("version") == current.version:
            return rollback_target(changes)
        return current.previous_version  # the history lags the pointer (a change that stopped before logging it)

    def previous(current: Champion | None) -> Choice:
        target = version or (earlier(current) if current else None)
        if not target:
            raise RegistryError("nothing to roll back to: the champion has no earlier version "
                                "(name one: `models rollback VERSION`, or a run: `models promote RUN`)")
        return read_version(storage, target), "rollback", [reason]

    return switch_champion(storage, previous, "models rollback", repair=version is not None)


def update_index(storage: Storage, run_id: str, summary: dict, key: str = INDEX_KEY) -> None:
    """Insert or replace this run's summary in the index (of training runs, or at ``key`` another's)."""
    cas_update(storage, key,
               lambda value: {"runs": [r for r in (value or {}).get("runs", []) if r.get("run_id") != run_id]
                              + [summary], "updated_at": now_iso()},
               "index update")
