"""New labelled data: batches that land under ``<incoming>/dt=YYYY-MM-DD/<batch>/``.

A batch is any accepted input form (a NumtaDB folder with its CSV inside, or a folder per
class) and counts only once its ``_BATCH.json`` marker exists. Whoever uploads a batch writes
the marker last, so a half-uploaded batch is never trained on. A run whose data cut-off is day
D trains on the base input plus every batch with ``dt <= D``: backfilled dates see exactly the
data that had arrived by then, and re-running a date sees the same batches again.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone

from .storage import Storage, StorageError, split_uri

BATCH_MARKER = "_BATCH.json"
ANNOUNCED = "_ANNOUNCED.json"  # batches that already started a run (see triggers.NewBatchTrigger)
_MARKER_KEY = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})/([A-Za-z0-9][A-Za-z0-9._-]*)/" + re.escape(BATCH_MARKER) + "$")
_BATCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$")


@dataclass(frozen=True, order=True)
class Batch:
    day: str  # YYYY-MM-DD, the arrival partition
    name: str
    uri: str  # the batch folder

    @property
    def id_prefix(self) -> str:
        """Prefix of the batch's image ids, so names stay unique across batches and the base input."""
        return f"dt={self.day}/{self.name}/"


# --- pure functions ------------------------------------------------------------------------
def batches_from_keys(incoming_uri: str, relative_keys) -> list[Batch]:
    """The committed batches among keys listed relative to the landing prefix."""
    base = incoming_uri.rstrip("/")
    found = {(m.group(1), m.group(2)) for m in map(_MARKER_KEY.match, relative_keys) if m}
    return sorted(Batch(day, name, f"{base}/dt={day}/{name}") for day, name in found)


def batches_until(batches: list[Batch], cutoff: date) -> list[Batch]:
    """Batches that had arrived by the end of ``cutoff`` (a run for day D sees dt <= D)."""
    return [b for b in batches if b.day <= cutoff.isoformat()]


def data_cutoff(value: str | None, now: datetime | None = None) -> date:
    """The day a run's data is bounded by: its logical date (or run-after time), else today (UTC)."""
    if not value:
        return (now or datetime.now(timezone.utc)).date()
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.date()


def check_batch_name(name: str) -> str:
    if not _BATCH_NAME.match(name):
        raise ValueError(f"batch name {name!r} must be letters, digits, '.', '_' or '-' (not starting with '.', '_')")
    return name


# --- I/O -------------------------------------------------------------------------------------
def _landing(incoming_uri: str) -> tuple[str, str]:
    """The landing prefix's bucket and key prefix (ending in ``/``)."""
    _, bucket, key = split_uri(incoming_uri)
    return bucket, key.rstrip("/") + "/"


def list_batches(storage: Storage, incoming_uri: str) -> list[Batch]:
    """Every committed batch under the landing prefix (one listing; markers only count)."""
    from botocore.exceptions import ClientError

    bucket, prefix = _landing(incoming_uri)
    try:
        relative = [obj["Key"][len(prefix):] for obj in storage.list_objects(prefix, bucket=bucket)]
    except ClientError as error:
        raise StorageError(f"cannot list the landing prefix {incoming_uri} ({error.response['Error'].get('Code')}); "
                           "set NUMTAFLOW_INCOMING_INPUT to a prefix in an existing bucket, or empty") from None
    return batches_from_keys(incoming_uri, relative)


def drop_batch(storage: Storage, source: str, incoming_uri: str, day: str, name: str,
               per_class: int) -> tuple[Batch, int]:
    """Copy ``per_class`` labelled images per digit from a dataset (local or S3) into a new batch.

    Images already landed in an earlier batch (same file name) are skipped, so repeated drops
    bring new images. Files go first, then the batch's CSV, then the marker: a reader never sees
    a partial batch as committed. Returns the batch and how many images it holds.
    """
    import pandas as pd

    from .data import build_manifest, read_bytes, resolve_input

    check_batch_name(name)
    date.fromisoformat(day)
    bucket, prefix = _landing(incoming_uri)
    batch = Batch(day, name, f"{incoming_uri.rstrip('/')}/dt={day}/{name}")
    batch_key = f"{prefix}dt={day}/{name}/"
    if storage.exists(batch_key + BATCH_MARKER, bucket=bucket):
        raise ValueError(f"batch {batch.uri} already exists; choose another name or date")
    landed = {obj["Key"].rsplit("/", 1)[-1] for obj in storage.list_objects(prefix, bucket=bucket)}
    manifest = build_manifest(resolve_input(source, storage))
    digits = manifest["label_raw"].isin([str(d) for d in range(10)])
    usable = manifest[manifest["has_file"] & manifest["in_csv"] & digits]
    usable = usable[~usable["image_id"].map(lambda i: i.rsplit("/", 1)[-1]).isin(landed)]
    chosen = usable.groupby("label_raw", group_keys=False).head(per_class)
    if chosen.empty:
        raise ValueError(f"no images left in {source} that have not landed already")
    rows = []
    for image_id, label, uri in chosen[["image_id", "label_raw", "uri"]].itertuples(index=False):
        file_name = image_id.rsplit("/", 1)[-1]
        scheme, source_bucket, source_key = split_uri(uri)
        if scheme == "s3":  # server-side: the image's bytes stay on the server
            storage.copy(source_bucket, source_key, batch_key + file_name, bucket=bucket)
        else:
            storage.put_bytes(batch_key + file_name, read_bytes(uri, storage), bucket=bucket)
        rows.append((file_name, int(label)))
    labels = io.StringIO()
    pd.DataFrame(rows, columns=["filename", "digit"]).to_csv(labels, index=False)
    storage.put_bytes(batch_key + "labels.csv", labels.getvalue().encode(), "text/csv", bucket=bucket)
    storage.put_json(batch_key + BATCH_MARKER, {"source": str(source), "images": len(rows),
                                                "landed_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                     bucket=bucket)
    return batch, len(rows)


def _announced(storage: Storage, incoming_uri: str) -> set[str]:
    """URIs of the batches that already started a run."""
    bucket, prefix = _landing(incoming_uri)
    try:
        return set(json.loads(storage.get_bytes(prefix + ANNOUNCED, bucket=bucket))["batches"])
    except FileNotFoundError:
        return set()


def unannounced_batches(storage: Storage, incoming_uri: str) -> list[Batch]:
    """Committed batches that have not started a run yet."""
    announced = _announced(storage, incoming_uri)
    return [b for b in list_batches(storage, incoming_uri) if b.uri not in announced]


def mark_announced(storage: Storage, incoming_uri: str, batches: list[Batch]) -> None:
    """Remember batches that started a run, so the same data never triggers twice."""
    bucket, prefix = _landing(incoming_uri)
    announced = _announced(storage, incoming_uri) | {b.uri for b in batches}
    storage.put_json(prefix + ANNOUNCED, {"batches": sorted(announced),
                                          "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")},
                     bucket=bucket)
