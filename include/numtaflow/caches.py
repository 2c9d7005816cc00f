"""The caches' folders in the bucket: what each holds, and what this code can never read again.

A cache folder (``cache/inspections/<key>/``, ``cache/features/<key>/``) is named by a hash of
everything that decides its entries, the code among it: once that code changes, runs write a new
folder and never read the old one again, which then only takes space (the default featurizer's
features are about 30 KB per image and view). Each part's marker names the code that wrote it, so
``prunable`` can pick the folders no part of which this code wrote, and the parts whose marker never
came (a write that crashed, a step that failed or was refused; one whose marker is damaged counts as
such here, though scans, which read no marker, still read it until it is deleted). Anything modified
within ``GRACE`` is kept, as a step may still be on its way to commit.
Deleting an entry only ever means computing it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable

from . import feature_cache, inspection_cache
from .catalog import COMMIT_MARKER, FEATURE_CACHE_PREFIX, INSPECTION_CACHE_PREFIX
from .storage import Storage

CACHES = {  # name: (its folders' prefix, the code version its entries are made by)
    "inspections": (INSPECTION_CACHE_PREFIX, inspection_cache.code_version),
    "features": (FEATURE_CACHE_PREFIX, feature_cache.code_version),
}
GRACE = timedelta(days=1)  # longer than any step takes from writing a part to its commit


@dataclass(frozen=True)
class Part:
    prefix: str
    bytes: int
    last_modified: datetime
    marker: dict | None  # None: never committed


@dataclass(frozen=True)
class Folder:
    cache: str
    prefix: str
    parts: tuple[Part, ...]

    @property
    def key(self) -> str:
        return self.prefix.rstrip("/").rsplit("/", 1)[-1]

    @property
    def rows(self) -> int:
        return sum(part.marker.get("rows", 0) for part in self.parts if part.marker is not None)

    @property
    def bytes(self) -> int:
        return sum(part.bytes for part in self.parts)

    @property
    def last_modified(self) -> datetime:
        return max(part.last_modified for part in self.parts)

    def written_by(self, code: str) -> bool:
        return any(part.marker is not None and part.marker.get("code") == code for part in self.parts)


def current_codes() -> dict[str, str]:
    """The code version each cache's entries are made by in this process."""
    return {cache: code_version() for cache, (_, code_version) in CACHES.items()}


def group(cache: str, prefix: str, objects: Iterable[dict], markers: dict[str, Any]) -> list[Folder]:
    """The folders and parts under ``prefix`` from its listing (``Key``, ``Size``, ``LastModified``),
    with each committed part's marker from ``markers`` (by marker key; one that is not a JSON object, None
    where it did not parse, counts as no marker). Objects outside a part's folder (``<prefix><key>/<part>/...``)
    are left out."""
    parts: dict[tuple[str, str], list[dict]] = {}
    for obj in objects:
        names = obj["Key"][len(prefix):].split("/")
        if len(names) >= 3 and names[2]:
            parts.setdefault((names[0], names[1]), []).append(obj)
    folders: dict[str, list[Part]] = {}
    for (key, name), listed in sorted(parts.items()):
        part_prefix = f"{prefix}{key}/{name}/"
        marker = markers.get(part_prefix + COMMIT_MARKER)
        folders.setdefault(key, []).append(Part(
            prefix=part_prefix,
            bytes=sum(obj["Size"] for obj in listed),
            last_modified=max(obj["LastModified"] for obj in listed),
            marker=marker if isinstance(marker, dict) else None,
        ))
    return [Folder(cache, f"{prefix}{key}/", tuple(found)) for key, found in folders.items()]


def read_folders(storage: Storage) -> list[Folder]:
    """Every cache folder in the bucket, with its parts' markers."""
    found = []
    for cache, (prefix, _) in CACHES.items():
        objects = list(storage.list_objects(prefix))
        markers = {obj["Key"]: _parsed(storage, obj["Key"]) for obj in objects
                   if obj["Key"].endswith("/" + COMMIT_MARKER)}
        found += group(cache, prefix, objects, markers)
    return found


def _parsed(storage: Storage, key: str):
    try:
        return storage.get_json(key)
    except ValueError:  # a damaged marker: its part counts as never committed
        return None


def prunable(folders: Iterable[Folder], codes: dict[str, str], now: datetime) -> list[str]:
    """The prefixes to delete: each folder none of whose parts this code (``codes``, per cache) wrote,
    and in the others each part never committed; nothing modified within ``GRACE`` of ``now``."""
    prefixes = []
    for folder in folders:
        if folder.written_by(codes[folder.cache]):
            prefixes += [part.prefix for part in folder.parts
                         if part.marker is None and now - part.last_modified > GRACE]
        elif now - folder.last_modified > GRACE:
            prefixes.append(folder.prefix)
    return prefixes
