"""New labelled data: batches that land under ``<incoming>/dt=YYYY-MM-DD/<batch>/``.

A batch is any accepted input form (a NumtaDB folder with its CSV inside, or a folder per
class) and counts only once its ``_BATCH.json`` marker exists. Whoever uploads a batch writes
the marker last, so a half-uploaded batch is never trained on. A marker anywhere else (a ``dt=``
that is not a date, another partition name, a nested folder) is refused with its reason: every
run that sees it reports it, and it never starts a run.

A batch counts for runs from when its marker was committed (the server's LastModified), or from
the start of its ``dt=`` day if that is earlier (data copied in later for a past day, which a
backfill of that day then sees). A ``dt=`` ahead of UTC (an uploader writing its local date)
therefore never hides a batch from the run its arrival starts. A run chooses its batches once,
at its first validate, and records the choice; retries and re-runs of the run id read it back,
so a batch written later, even into an old ``dt=``, is trained on by the runs that choose after
it landed and never changes a run that had chosen.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone

from .catalog import ANNOUNCED, BATCH_MARKER, SCORED_BATCHES_KEY
from .contracts import BatchSelection, LandedBatch, RefusedBatch
from .registry import cas_update
from .storage import Storage, StorageError, split_uri
from .vocabulary import DIGIT_LABELS

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")


@dataclass(frozen=True, order=True)
class Batch:
    day: str  # YYYY-MM-DD, its dt= partition
    name: str
    uri: str  # the batch folder
    arrived_at: str | None = field(default=None, compare=False)  # its marker's commit time, ISO UTC

    @property
    def id_prefix(self) -> str:
        """Prefix of the batch's image ids, so names stay unique across batches and the base input."""
        return f"dt={self.day}/{self.name}/"


# --- pure functions ------------------------------------------------------------------------
def _name_problem(name: str) -> str | None:
    if not _BATCH_NAME.match(name):
        return f"batch name {name!r} must be letters, digits, '.', '_' or '-' (not starting with '.', '_')"
    return None


def check_batch_name(name: str) -> str:
    problem = _name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def _is_day(text: str) -> bool:
    try:
        return bool(_DAY.match(text)) and bool(date.fromisoformat(text))
    except ValueError:
        return False


def marker_problem(key: str) -> str | None:
    """Why a marker at ``key`` (relative to the landing prefix) commits no batch; None when it does."""
    parts = key.split("/")
    if len(parts) != 3:
        return f"a batch's marker belongs at dt=YYYY-MM-DD/<batch>/{BATCH_MARKER}"
    if not parts[0].startswith("dt="):
        return f"folder {parts[0]!r} is not a dt=YYYY-MM-DD partition"
    if not _is_day(parts[0][len("dt="):]):
        return f"{parts[0]!r} is not a date (YYYY-MM-DD)"
    return _name_problem(parts[1])


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds") if moment else None


def parse_listing(incoming_uri: str, listing) -> tuple[list[Batch], list[RefusedBatch]]:
    """The committed batches and the refused markers among ``(key relative to the landing prefix,
    last modified)`` pairs; other objects (images, CSVs, the ledger) are neither."""
    base = incoming_uri.rstrip("/")
    batches, refused = [], []
    for key, modified in listing:
        if key.rsplit("/", 1)[-1] != BATCH_MARKER:
            continue
        problem = marker_problem(key)
        if problem:
            refused.append(RefusedBatch(marker=f"{base}/{key}", reason=problem))
        else:
            partition, name, _ = key.split("/")
            batches.append(Batch(partition[len("dt="):], name, f"{base}/{partition}/{name}", _iso(modified)))
    return sorted(batches), sorted(refused, key=lambda r: r.marker)


def available_from(batch: Batch) -> datetime:
    """When a batch starts to count: its commit, or the start of its dt= day if that is earlier."""
    day_start = datetime.fromisoformat(batch.day).replace(tzinfo=timezone.utc)
    return min(day_start, datetime.fromisoformat(batch.arrived_at)) if batch.arrived_at else day_start


def batches_until(batches: list[Batch], until: datetime) -> list[Batch]:
    """The batches a run whose data ends at ``until`` trains on."""
    return [b for b in batches if available_from(b) <= until]


def cutoff_time(value: str | None, now: datetime | None = None) -> datetime:
    """The time a run's data ends at, in UTC: its logical date or run-after time, else now (a time
    without a zone is UTC)."""
    if not value:
        return now or datetime.now(timezone.utc)
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# --- I/O -------------------------------------------------------------------------------------
def _landing(incoming_uri: str) -> tuple[str, str]:
    """The landing prefix's bucket and key prefix (ending in ``/``)."""
    _, bucket, key = split_uri(incoming_uri)
    return bucket, key.rstrip("/") + "/"


def landed_batches(storage: Storage, incoming_uri: str) -> tuple[list[Batch], list[RefusedBatch]]:
    """Every committed batch under the landing prefix and every refused marker (one listing)."""
    from botocore.exceptions import ClientError

    bucket, prefix = _landing(incoming_uri)
    try:
        listing = [(obj["Key"][len(prefix):], obj.get("LastModified"))
                   for obj in storage.list_objects(prefix, bucket=bucket)]
    except ClientError as error:
        raise StorageError(f"cannot list the landing prefix {incoming_uri} ({error.response['Error'].get('Code')}); "
                           "set NUMTAFLOW_INCOMING_INPUT to a prefix in an existing bucket, or empty") from None
    return parse_listing(incoming_uri, listing)


def list_batches(storage: Storage, incoming_uri: str) -> list[Batch]:
    """Every committed batch under the landing prefix."""
    return landed_batches(storage, incoming_uri)[0]


def choose_batches(storage: Storage, record_key: str, incoming_uri: str, run_id: str, data_until: str | None,
                   now: datetime | None = None) -> BatchSelection:
    """The run's landed batches: the record at ``record_key`` if the run has chosen already (a retry, a
    re-run), else those available by its data cut-off, recorded with put-if-absent (of two racing
    attempts, both use the record that was written)."""
    try:
        return BatchSelection.model_validate(storage.get_json(record_key))
    except FileNotFoundError:
        pass
    batches, refused = landed_batches(storage, incoming_uri) if incoming_uri else ([], [])
    until = cutoff_time(data_until, now)
    chosen = BatchSelection(run_id=run_id, data_until=until.isoformat(), chosen_at=_iso(datetime.now(timezone.utc)),
                            batches=[LandedBatch(**asdict(b)) for b in batches_until(batches, until)], refused=refused)
    if storage.put_if_absent(record_key, chosen.model_dump()):
        return chosen
    return BatchSelection.model_validate(storage.get_json(record_key))


def claim_batches(storage: Storage, record_key: str, inbox_uri: str, run_id: str) -> BatchSelection:
    """A scoring run's inbox batches, chosen once (retries and re-runs read the record at ``record_key``):
    the committed batches no scoring run has claimed yet, claimed for this run by compare-and-set in
    ``predictions/_SCORED.json``, so that however many runs start, each batch is scored by exactly one.
    A run that found none records nothing: its re-run, once a batch has landed, claims that one.
    """
    try:
        recorded = BatchSelection.model_validate(storage.get_json(record_key))
        if recorded.batches:
            return recorded
    except FileNotFoundError:
        pass
    batches, refused = landed_batches(storage, inbox_uri)
    chosen: list[Batch] = []

    def claim(owners):
        owners = dict(owners or {})
        chosen[:] = [batch for batch in batches if owners.get(batch.uri, run_id) == run_id]
        return {**owners, **{batch.uri: run_id for batch in chosen}}

    cas_update(storage, SCORED_BATCHES_KEY, claim, f"claiming inbox batches for scoring run {run_id}")
    now = _iso(datetime.now(timezone.utc))
    selection = BatchSelection(run_id=run_id, data_until=now, chosen_at=now,
                               batches=[LandedBatch(**asdict(batch)) for batch in chosen], refused=refused)
    if not chosen or storage.put_if_absent(record_key, selection.model_dump()):
        return selection
    recorded = BatchSelection.model_validate(storage.get_json(record_key))
    if not recorded.batches:  # an empty choice recorded before empty ones were left unrecorded
        storage.put_json(record_key, selection.model_dump())
        return selection
    return recorded


def new_batch(storage: Storage, landing_uri: str, day: str, name: str) -> Batch:
    """A batch that does not exist yet under the landing prefix (an inbox or the incoming prefix)."""
    check_batch_name(name)
    if not _is_day(day):
        raise ValueError(f"date {day!r} must be YYYY-MM-DD")
    bucket, prefix = _landing(landing_uri)
    batch = Batch(day, name, f"{landing_uri.rstrip('/')}/dt={day}/{name}")
    if storage.exists(f"{prefix}dt={day}/{name}/{BATCH_MARKER}", bucket=bucket):
        raise ValueError(f"batch {batch.uri} already exists; choose another name or date")
    return batch


def land(storage: Storage, batch: Batch, files: list[tuple[str, str]], marker: dict,
         labels: list[tuple[str, int]] | None = None) -> None:
    """Copy ``files`` (path in the batch, source URI) into the batch, then its labels (if any) as labels.csv, then
    the marker: a reader never sees a partial batch as committed (its ``landed_at`` is for people: runs
    go by the marker's commit time on the server)."""
    import pandas as pd

    from .data import read_bytes

    _, bucket, batch_key = split_uri(batch.uri)
    batch_key += "/"
    for file_name, uri in files:
        scheme, source_bucket, source_key = split_uri(uri)
        if scheme == "s3":  # server-side: the image's bytes stay on the server
            storage.copy(source_bucket, source_key, batch_key + file_name, bucket=bucket)
        else:
            storage.put_bytes(batch_key + file_name, read_bytes(uri, storage), bucket=bucket)
    if labels is not None:
        text = io.StringIO()
        pd.DataFrame(labels, columns=["filename", "digit"]).to_csv(text, index=False)
        storage.put_bytes(batch_key + "labels.csv", text.getvalue().encode(), "text/csv", bucket=bucket)
    storage.put_json(batch_key + BATCH_MARKER, {**marker, "images": len(files),
                                                "landed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                     bucket=bucket)


def drop_batch(storage: Storage, source: str, incoming_uri: str, day: str, name: str,
               per_class: int) -> tuple[Batch, int]:
    """Copy ``per_class`` labelled images per digit from a dataset (local or S3) into a new batch.

    Each image keeps its path in the source (``a00001.png``, or ``3/0001.png`` from a folder per
    class, where names repeat across classes), and images landed in an earlier batch under the same
    path are skipped, so repeated drops bring new images. Returns the batch and how many images it holds.
    """
    from .data import build_manifest, resolve_input

    batch = new_batch(storage, incoming_uri, day, name)
    landed = landed_paths(storage, incoming_uri)
    manifest = build_manifest(resolve_input(source, storage))
    digits = manifest["label_raw"].isin(DIGIT_LABELS)
    usable = manifest[manifest["has_file"] & manifest["in_csv"] & digits & ~manifest["image_id"].isin(landed)]
    chosen = usable.groupby("label_raw", group_keys=False).head(per_class)
    if chosen.empty:
        raise ValueError(f"no images left in {source} that have not landed already")
    files = list(chosen[["image_id", "uri"]].itertuples(index=False, name=None))
    land(storage, batch, files, {"source": str(source)},
         labels=[(path, int(label)) for (path, _), label in zip(files, chosen["label_raw"])])
    return batch, len(files)


def landed_paths(storage: Storage, landing_uri: str) -> set[str]:
    """The source paths of the images landed under a landing prefix (``dt=<day>/<batch>/<path>``)."""
    bucket, prefix = _landing(landing_uri)
    return {obj["Key"][len(prefix):].split("/", 2)[-1] for obj in storage.list_objects(prefix, bucket=bucket)}


def unlabelled_batch(storage: Storage, source: str, inbox_uri: str, day: str, name: str, count: int,
                     exclude: set[str]) -> tuple[Batch, list[tuple[str, int]]]:
    """Land ``count`` images of a labelled dataset in the inbox without their labels (an equal number
    per digit, skipping the paths in ``exclude``, e.g. a model's evaluation images, and those landed in
    the inbox already, so each batch brings new images), each under its path in the source, and return
    the withheld labels by that path, so that scoring's accuracy can be checked by someone who has them."""
    from .data import build_manifest, resolve_input

    batch = new_batch(storage, inbox_uri, day, name)
    manifest = build_manifest(resolve_input(source, storage))
    usable = manifest[manifest["has_file"] & manifest["in_csv"] & manifest["label_raw"].isin(DIGIT_LABELS)
                      & ~manifest["image_id"].isin(exclude | landed_paths(storage, inbox_uri))]
    per_digit = -(-count // len(DIGIT_LABELS))
    chosen = usable.sort_values("image_id").groupby("label_raw", group_keys=False).head(per_digit).head(count)
    if len(chosen) < count:
        raise ValueError(f"{source} has only {len(chosen)} labelled images outside those excluded and those in "
                         f"the inbox already, not {count}")
    files = list(chosen[["image_id", "uri"]].itertuples(index=False, name=None))
    land(storage, batch, files, {"source": str(source)})
    return batch, [(path, int(label)) for (path, _), label in zip(files, chosen["label_raw"])]


def _ledger(storage: Storage, incoming_uri: str) -> tuple[Storage, str]:
    """A storage on the landing prefix's bucket, and the ledger's key there (conditional writes go to
    a storage's own bucket)."""
    bucket, prefix = _landing(incoming_uri)
    if bucket != storage.bucket:
        storage = Storage(storage.settings.model_copy(update={"bucket": bucket}), storage.client)
    return storage, prefix + ANNOUNCED


def _announced(value) -> set[str]:
    return set((value or {}).get("batches", []))


def unannounced_batches(storage: Storage, incoming_uri: str,
                        now: datetime | None = None) -> tuple[list[Batch], list[RefusedBatch]]:
    """Committed batches that have not started a run yet and that a run starting now trains on (so an
    announcement never starts a run without its batch), and the refused markers."""
    batches, refused = landed_batches(storage, incoming_uri)
    ledger, key = _ledger(storage, incoming_uri)
    announced = _announced(ledger.read_with_etag(key)[0])
    due = batches_until(batches, now or datetime.now(timezone.utc))
    return [b for b in due if b.uri not in announced], refused


def mark_announced(storage: Storage, incoming_uri: str, batches: list[Batch]) -> None:
    """Record batches that started a run, by compare-and-set, so the same data never triggers twice and
    no concurrent record is lost."""
    ledger, key = _ledger(storage, incoming_uri)
    uris = {b.uri for b in batches}

    def change(value):
        known = _announced(value)
        if uris <= known:
            return None
        return {"batches": sorted(known | uris), "updated_at": _iso(datetime.now(timezone.utc))}

    cas_update(ledger, key, change, f"recording announced batches under {incoming_uri}")
