"""Input datasets: finding the images and labels, whatever form the user's download takes.

Accepted inputs (local paths or ``s3://`` URIs):

* a NumtaDB folder (``training-a`` … ``training-e``) with its CSV beside it (``training-a.csv``)
  or inside it; labels come from the CSV's ``digit`` column;
* a folder per class (``0/`` … ``9/`` holding images);
* a ``.zip`` holding either of the above (extracted safely into the bucket's ``staging/``).

Listing happens on the driver (names and sizes only), through one ``pyarrow.fs`` interface for local
folders and ``s3://`` alike; image bytes are read by Spark.
"""

from __future__ import annotations

import hashlib
import io
import logging
import lzma
import os
import posixpath
import re
import tempfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Iterable

import pandas as pd
from pyarrow import fs as pafs

from .storage import PreconditionFailed, Storage, spark_path, split_uri

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_ZIP_BYTES = 8 << 30  # the most a zip input may expand to (its members' declared sizes)
CSV_NAME_COLUMN = "filename"
CSV_LABEL_COLUMN = "digit"
MANIFEST_COLUMNS = ["image_id", "label_raw", "in_csv", "has_file", "size", "uri"]


def is_image_name(name: str) -> bool:
    """Whether a file name ends in one of the image suffixes scoring looks for (any case)."""
    return name.lower().endswith(IMAGE_SUFFIXES)


def is_zip(name: str) -> bool:
    """Whether a path or URI names a ``.zip`` archive (any case): an input that is opened, not listed."""
    return name.lower().endswith(".zip")


def is_csv(name: str) -> bool:
    """Whether a file name is a CSV (any case): labels, never an image of the dataset."""
    return name.lower().endswith(".csv")


class InputError(ValueError):
    """The input cannot be read as a dataset; the message says what and where."""


@dataclass(frozen=True)
class ListedFile:
    relative_path: str  # posix path relative to the input root
    size: int


@dataclass(frozen=True)
class DatasetInput:
    """A resolved input: where the files are, how labels are found, and the raw CSV if any."""

    root_uri: str
    layout: str  # "numtadb" or "class_folders"
    files: tuple[ListedFile, ...]
    csv_uri: str | None = None
    csv_frame: pd.DataFrame | None = None


# --- pure functions ------------------------------------------------------------------------
def detect_layout(files: Iterable[ListedFile], has_csv: bool) -> str:
    """``numtadb`` when a CSV labels the files, ``class_folders`` when images sit in ``0/``..``9/``."""
    if has_csv:
        return "numtadb"
    if any("/" in f.relative_path for f in files):
        return "class_folders"
    raise InputError(
        "no labels found: expected a NumtaDB CSV beside the folder (e.g. training-a.csv), "
        "a CSV inside it, or one sub-folder per class (0/ … 9/)"
    )


def csv_named_folder(files: Iterable[ListedFile], names: Iterable[str]) -> str | None:
    """The folder an input's only CSV is named after (``training-a/`` beside ``training-a.csv``: a NumtaDB
    download one level up, or a zip of one) when the CSV's file ``names`` are relative to that folder;
    None for any other input, and for a CSV whose names start with the folder already."""
    paths = [f.relative_path for f in files]
    csvs = [path for path in paths if is_csv(path)]
    if len(csvs) != 1:
        return None
    folder = csvs[0][: -len(".csv")] + "/"
    if not any(path.startswith(folder) for path in paths) or any(str(n).startswith(folder) for n in names):
        return None
    return folder.rstrip("/")


def manifest_from_csv(csv_frame: pd.DataFrame, files: Iterable[ListedFile], root_uri: str) -> pd.DataFrame:
    """Join CSV rows with the files present: one row per name, flags for each side.

    Rows without a file and files without a row are kept (flagged) so that validation can
    report them by name instead of silently dropping them.
    """
    missing = [c for c in (CSV_NAME_COLUMN, CSV_LABEL_COLUMN) if c not in csv_frame.columns]
    if missing:
        raise InputError(
            f"CSV is missing column(s) {', '.join(missing)}; found: {', '.join(map(str, csv_frame.columns))}"
        )
    rows = pd.DataFrame(
        {
            "image_id": csv_frame[CSV_NAME_COLUMN].astype("string").str.strip(),
            "label_raw": csv_frame[CSV_LABEL_COLUMN].astype("string").str.strip(),
            "in_csv": True,
        }
    )
    listed = pd.DataFrame(
        [(f.relative_path, f.size) for f in files if not is_csv(f.relative_path)],
        columns=["image_id", "size"],
    )
    listed["has_file"] = True
    manifest = rows.merge(listed, on="image_id", how="outer")
    manifest["in_csv"] = manifest["in_csv"].eq(True)
    manifest["has_file"] = manifest["has_file"].eq(True)
    return _finish_manifest(manifest, root_uri)


def manifest_from_class_folders(files: Iterable[ListedFile], root_uri: str) -> pd.DataFrame:
    """One row per file under ``<label>/``; the folder name is the (raw) label."""
    records = []
    for f in files:
        parts = PurePosixPath(f.relative_path).parts
        label = parts[0] if len(parts) > 1 else None
        records.append((f.relative_path, label, True, True, f.size))
    manifest = pd.DataFrame(records, columns=["image_id", "label_raw", "in_csv", "has_file", "size"])
    return _finish_manifest(manifest, root_uri)


def _finish_manifest(manifest: pd.DataFrame, root_uri: str) -> pd.DataFrame:
    manifest["size"] = manifest["size"].fillna(-1).astype("int64")
    manifest["label_raw"] = manifest["label_raw"].astype("string")
    base = root_uri.rstrip("/")
    manifest["uri"] = [f"{base}/{name}" if isinstance(name, str) else None for name in manifest["image_id"]]
    return manifest[MANIFEST_COLUMNS].sort_values("image_id", kind="stable").reset_index(drop=True)


def manifest_hash(manifest: pd.DataFrame) -> str:
    """A fingerprint of an input: sorted names, sizes and labels (not the bytes)."""
    digest = hashlib.sha256()
    for name, size, label in sorted(
        zip(manifest["image_id"].astype(str), manifest["size"], manifest["label_raw"].astype(str))
    ):
        digest.update(f"{name}\t{size}\t{label}\n".encode())
    return digest.hexdigest()


def safe_zip_members(archive: zipfile.ZipFile, max_total_bytes: int) -> list[zipfile.ZipInfo]:
    """The archive's files, refusing any that would land outside the extraction folder.

    Rejects absolute paths, ``..`` components, symlinks, and archives whose declared
    uncompressed size exceeds ``max_total_bytes`` (zip bombs).
    """
    members, total = [], 0
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        if info.is_dir():
            continue
        normalized = member_name(info)
        if name.startswith("/") or normalized.startswith("../") or normalized == ".." or ":" in name.split("/")[0]:
            raise InputError(f"zip member {info.filename!r} escapes the archive's folder; refusing to extract")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise InputError(f"zip member {info.filename!r} is a symbolic link; refusing to extract")
        total += info.file_size
        if total > max_total_bytes:
            raise InputError(f"zip expands to more than {max_total_bytes} bytes; refusing to extract")
        if "__MACOSX" in normalized.split("/") or PurePosixPath(normalized).name.startswith("."):
            continue
        members.append(info)
    return members


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes; ``OSError`` naming why when the archive cannot give them (a damaged or encrypted
    member, a compression method Python lacks), which ``zipfile`` reports as several other errors."""
    if info.flag_bits & 0x1:
        raise OSError("encrypted in its archive: it needs a password")
    try:
        return archive.read(info)
    except NotImplementedError as error:
        raise OSError(f"unreadable in its archive: {error}") from None
    except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, OSError, EOFError, ValueError) as error:  # bz2: OSError
        raise OSError(f"damaged in its archive: {str(error) or type(error).__name__}") from None


def member_name(info: zipfile.ZipInfo) -> str:
    """A zip member's path with ``/`` separators, as it lands below the archive's folder."""
    return posixpath.normpath(info.filename.replace("\\", "/"))


def strip_common_folder(paths: list[str]) -> str:
    """The single top folder every path shares (``"training-a/"``), or ``""``."""
    tops = {p.split("/", 1)[0] for p in paths}
    if len(tops) == 1 and all("/" in p for p in paths):
        return tops.pop() + "/"
    return ""


# --- Spark: every file of an input, decoded once ---------------------------------------------
def relative_path_pattern(root_uri: str) -> str:
    """A regex capturing a file's path relative to ``root_uri`` from the path Spark reports."""
    root = spark_path(root_uri).rstrip("/")
    if root.startswith("file:"):
        return r"^file:/*" + re.escape(root[len("file:") :].lstrip("/")) + r"/(.*)$"
    return "^" + re.escape(root) + r"/(.*)$"


def literal_path(path: str) -> str:
    """``path`` with Hadoop's glob characters escaped, so Spark reads the file of that very name."""
    return re.sub(r"([\\{}\[\]*?])", r"\\\1", path)


def decode_images(spark, root_uri: str, max_pixels: int, only: list[str] | None = None):
    """All files under the root (or ``only`` these, relative to it) with their bytes, content hash,
    decoded size/mode/frames, and the reason one fails to decode or to prepare as featurize does, or
    is excluded (``images.inspect_image``)."""
    from pyspark.sql import functions as F
    from pyspark.sql.functions import pandas_udf

    from .images import inspect_image

    @pandas_udf("width int, height int, mode string, frames int, decode_error string, excluded string, "
                "content_sha256 string")
    def inspect(contents: pd.Series) -> pd.DataFrame:
        infos = [inspect_image(content, max_pixels) for content in contents]
        return pd.DataFrame(
            {
                "width": pd.array([i.width for i in infos], dtype="Int32"),
                "height": pd.array([i.height for i in infos], dtype="Int32"),
                "mode": [i.mode for i in infos],
                "frames": pd.array([i.frames for i in infos], dtype="Int32"),
                "decode_error": [i.error for i in infos],
                "excluded": [i.excluded for i in infos],
                "content_sha256": [i.sha256 for i in infos],
            }
        )

    root = literal_path(spark_path(root_uri).rstrip("/"))
    paths = [root] if only is None else [f"{root}/{literal_path(name)}" for name in only]
    files = (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .load(paths)
        .withColumn("image_id", F.regexp_extract("path", relative_path_pattern(root_uri), 1))
    )
    return files.select("image_id", "content", inspect("content").alias("info")).select(
        "image_id", "content", "info.*"
    )


# --- I/O: listing inputs ---------------------------------------------------------------------
def list_input(uri: str, storage: Storage | None) -> tuple[list[ListedFile], list[str]]:
    """Every file below ``uri`` that Spark reads (recursively, with sizes), and the images it skips as
    hidden (``hidden_from_spark``), to be reported rather than lost; one listing."""
    fs, root = _filesystem(uri, storage)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        raise InputError(f"input folder {uri} does not exist or is not a folder")
    prefix = root.rstrip("/") + "/"
    listed, hidden = [], []
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True)):
        relative = info.path[len(prefix) :]
        if info.type != pafs.FileType.File:
            continue
        if not _hidden(relative):
            listed.append(ListedFile(relative, info.size))
        elif hidden_from_spark(relative):
            hidden.append(relative)
    return sorted(listed, key=lambda f: f.relative_path), sorted(hidden)


HIDDEN_RULE = "hidden from Spark: a name in its path starts with '_'"
HIDDEN_REASON = f"{HIDDEN_RULE}; rename it to score it"


def hidden_from_spark(relative: str) -> bool:
    """An image that Spark skips as hidden though a person would not call it so: a folder or file
    name in its path starts with ``_``. Names starting with ``.`` (system files such as macOS's ``._``
    copies) and ``__MACOSX/`` stay unreported, as in zips."""
    parts = relative.split("/")
    return (is_image_name(relative) and any(part.startswith("_") for part in parts) and "__MACOSX" not in parts
            and not any(part.startswith(".") for part in parts))


def versioned_files(uri: str, storage: Storage | None) -> list[tuple[str, int, str]]:
    """(location, size, version) of every file at ``uri`` or whose name starts with it, listed without
    reading them: in S3 the object's URI and ETag, locally the file's path and its modification and
    change times (ns): a rewritten file gets another version even when a tool restores its modification
    time (``touch -d``, ``tar``, ``rsync -t``); none can set the change time."""
    scheme, bucket, key = split_uri(uri)
    stem = key.rstrip("/")
    if scheme == "s3":
        return [(f"s3://{bucket}/{o['Key']}", o["Size"], o["ETag"].strip('"'))
                for o in _require(storage).list_objects(stem, bucket=bucket)]
    root = Path(os.path.abspath(stem))
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [(str(p), s.st_size, f"{s.st_mtime_ns}-{s.st_ctime_ns}") for p in (*paths, Path(f"{root}.csv"))
            if p.is_file() and (s := p.stat())]


def listing_identity(listed: list[tuple[str, int, str]]) -> str:
    """sha256 of what identifies an input's files without reading them: its listing
    (``versioned_files``: the folder or zip and anything named like it beside it, its NumtaDB CSV), in
    any order. A changed, added or removed file changes it."""
    return hashlib.sha256(repr(sorted(listed)).encode()).hexdigest()


def file_versions(dataset: DatasetInput, listed: list[tuple[str, int, str]]) -> pd.DataFrame:
    """The dataset's listed files with their location and version: ``image_id`` (the path relative to
    its root), ``object``, ``version`` (size and ETag, or size, modification and change times), from ``listed``,
    the ``versioned_files`` of its root; a file missing there has no row."""
    wanted = {f.relative_path for f in dataset.files}
    scheme, bucket, key = split_uri(dataset.root_uri)
    base = (f"s3://{bucket}/{key.rstrip('/')}" if scheme == "s3" else os.path.abspath(key)) + "/"
    rows = [(location[len(base):], location, f"{size}:{version}")
            for location, size, version in listed
            if location.startswith(base) and location[len(base):] in wanted]
    return pd.DataFrame(rows, columns=["image_id", "object", "version"])


def read_bytes(uri: str, storage: Storage | None) -> bytes:
    fs, path = _existing_file(uri, storage)
    with fs.open_input_stream(path, compression=None) as stream:
        return stream.read()


def download(uri: str, storage: Storage | None, target: BinaryIO) -> str:
    """Copy the file at ``uri`` into ``target`` 1 MiB at a time (a large zip never sits in memory whole);
    the hex sha256 of its bytes."""
    fs, path = _existing_file(uri, storage)
    digest = hashlib.sha256()
    with fs.open_input_stream(path, compression=None) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            target.write(chunk)
    return digest.hexdigest()


def open_zip(uri: str, storage: Storage | None) -> zipfile.ZipFile:
    """A zip archive to read member by member, its bytes on disk rather than in memory: a local archive
    where it is, one in S3 through a temporary copy (deleted once the archive is no longer referenced)."""
    scheme, _, key = split_uri(uri)
    if scheme == "file":
        return zip_archive(_existing_file(uri, storage)[1])
    copy = tempfile.TemporaryFile()
    download(uri, storage, copy)
    return zip_archive(copy)


def zip_archive(file: str | BinaryIO) -> zipfile.ZipFile:
    """``file`` opened as a zip archive; ``InputError`` when it is not one (a damaged central directory
    raises more than ``BadZipFile``)."""
    try:
        return zipfile.ZipFile(file)
    except zipfile.BadZipFile:
        raise InputError("not a readable zip archive") from None
    except (NotImplementedError, ValueError, EOFError) as error:
        raise InputError(f"not a readable zip archive ({str(error) or type(error).__name__})") from None


def _existing_file(uri: str, storage: Storage | None) -> tuple[pafs.FileSystem, str]:
    fs, path = _filesystem(uri, storage)
    if fs.get_file_info(path).type != pafs.FileType.File:
        raise FileNotFoundError(f"{uri} does not exist")
    return fs, path


def exists(uri: str, storage: Storage | None) -> bool:
    fs, path = _filesystem(uri, storage)
    return fs.get_file_info(path).type == pafs.FileType.File


def resolve_input(uri: str, storage: Storage | None, staging_prefix: str = "staging/") -> DatasetInput:
    """Find the files and labels of ``uri``; zips are extracted into the bucket first. An image that Spark's
    reader would skip (``hidden_from_spark``) refuses the input by name."""
    if is_zip(uri):
        uri = stage_zip(uri, _require(storage), staging_prefix).uri
    files, hidden = list_input(uri, storage)
    csv_uri = _find_csv(uri, files, storage)
    if csv_uri is None:
        _refuse_hidden(hidden)
        files = [f for f in files if not is_csv(f.relative_path)]
        if not files:
            raise InputError(f"input {uri} holds no files")
        return DatasetInput(uri, detect_layout(files, has_csv=False), tuple(files))
    try:
        frame = pd.read_csv(io.BytesIO(read_bytes(csv_uri, storage)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise InputError(f"CSV {csv_uri} cannot be parsed: {error}") from None
    folder = csv_named_folder(files, frame.get(CSV_NAME_COLUMN, pd.Series(dtype=str)))
    if folder:  # the CSV, beside the folder it labels, stays where it is
        uri = f"{uri.rstrip('/')}/{folder}"
        files = [ListedFile(f.relative_path[len(folder) + 1:], f.size) for f in files
                 if f.relative_path.startswith(folder + "/")]
        hidden = [name for name in hidden if name.startswith(folder + "/")]
    _refuse_hidden(hidden)
    return DatasetInput(uri, "numtadb", tuple(files), csv_uri, frame)


def _refuse_hidden(hidden: list[str]) -> None:
    """An input's image that Spark's reader would skip: refused by name, never left out without a word."""
    if hidden:
        more = f" (and {len(hidden) - 1} more)" if len(hidden) > 1 else ""
        raise InputError(f"{hidden[0]}{more}: {HIDDEN_RULE}, so Spark would leave it out without a word; "
                         "rename it or move it out of the input")


def build_manifest(dataset: DatasetInput) -> pd.DataFrame:
    if dataset.layout == "numtadb":
        return manifest_from_csv(dataset.csv_frame, dataset.files, dataset.root_uri)
    return manifest_from_class_folders(dataset.files, dataset.root_uri)


@dataclass(frozen=True)
class StagedZip:
    """A zip extracted into the bucket: the folder its files are read from (below the one top folder all
    members share, ``top``, "" when none), and the members that could not be extracted, named below
    that folder, each with why."""

    uri: str
    top: str
    unreadable: tuple[tuple[str, str], ...] = ()

    def refusal(self, source: str) -> str | None:
        """Why a step that needs every member cannot use this extraction, or None."""
        if not self.unreadable:
            return None
        name, reason = self.unreadable[0]
        more = f" (and {len(self.unreadable) - 1} more)" if len(self.unreadable) > 1 else ""
        return f"zip {source}: {self.top}{name} cannot be extracted: {reason}{more}"


def stage_zip(uri: str, storage: Storage, staging_prefix: str, max_total_bytes: int = MAX_ZIP_BYTES,
              skip_unreadable: bool = False) -> StagedZip:
    """Extract a zip (local or S3) under ``s3://<bucket>/<staging>/<sha256>/``.

    The archive's content hash names the place, so re-runs reuse an extraction: the one its pointer
    (``_EXTRACTED``) names, only while that folder still lists exactly the members the pointer records.
    Each extraction writes a folder of its own and publishes it by compare-and-set, so two runs
    unpacking the same zip at once never delete or mix each other's files, and a staged copy that lost
    files (a lifecycle rule, an interrupted delete) is extracted again, never trusted. A member the
    archive cannot give (damaged, encrypted) refuses the zip, naming it; with ``skip_unreadable`` (scoring,
    where one bad scan must not block a batch) it is left out and listed in ``StagedZip.unreadable``.
    """
    with tempfile.TemporaryFile() as copy:
        digest = download(uri, storage, copy)[:32]
        pointer = f"{staging_prefix}{digest}/_EXTRACTED"
        staged, etag = _intact_extraction(storage, pointer)
        if staged:
            return _usable(staged, uri, skip_unreadable)
        try:
            archive = zip_archive(copy)
        except InputError as error:
            raise InputError(f"{uri}: {error}") from None
        folder = f"{staging_prefix}{digest}/{uuid.uuid4().hex[:12]}/"
        with archive:
            members = safe_zip_members(archive, max_total_bytes)
            if not members:
                raise InputError(f"zip {uri} holds no files")
            listed, unreadable = {}, {}
            for info in members:
                try:
                    body = read_member(archive, info)
                except OSError as error:
                    if not skip_unreadable:
                        storage.delete_prefix(folder)
                        raise InputError(f"zip {uri}: {member_name(info)} cannot be extracted: {error}") from None
                    unreadable[member_name(info)] = str(error)
                    continue
                storage.put_bytes(folder + member_name(info), body)
                listed[member_name(info)] = len(body)
        record = {"source": uri, "folder": folder, "top": strip_common_folder([*listed, *unreadable]),
                  "members": len(listed), "listing_sha256": _listing_sha256(listed), "unreadable": unreadable}
        try:
            storage.compare_and_set(pointer, record, etag)
        except PreconditionFailed:  # another run published its extraction first: use that one
            storage.delete_prefix(folder)
            staged, _ = _intact_extraction(storage, pointer)
            if staged:
                return _usable(staged, uri, skip_unreadable)
            raise
    return _usable(_staged(storage, record), uri, skip_unreadable)


def _usable(staged: StagedZip, uri: str, skip_unreadable: bool) -> StagedZip:
    if not skip_unreadable and (refusal := staged.refusal(uri)):
        raise InputError(refusal)
    return staged


def _intact_extraction(storage: Storage, pointer: str) -> tuple[StagedZip | None, str | None]:
    """The extraction ``pointer`` names while its folder lists exactly the recorded members (else None),
    and the pointer's ETag (None: there is none)."""
    record, etag = storage.read_with_etag(pointer)
    if not (isinstance(record, dict) and isinstance(record.get("folder"), str)):
        return None, etag
    listed = {o["Key"][len(record["folder"]):]: o["Size"] for o in storage.list_objects(record["folder"])}
    if _listing_sha256(listed) != record.get("listing_sha256"):
        log.warning("the staged extraction %s lost or changed files since it was made: extracting again",
                    record["folder"])
        return None, etag
    return _staged(storage, record), etag


def _staged(storage: Storage, record: dict) -> StagedZip:
    top = record["top"]
    return StagedZip(f"s3://{storage.bucket}/{record['folder']}{top}".rstrip("/"), top,
                     tuple((name[len(top):], why) for name, why in sorted(record.get("unreadable", {}).items())))


def _listing_sha256(sizes: dict[str, int]) -> str:
    return hashlib.sha256("".join(f"{name}\0{size}\n" for name, size in sorted(sizes.items())).encode()).hexdigest()


def _find_csv(uri: str, files: list[ListedFile], storage: Storage | None) -> str | None:
    """The NumtaDB CSV for a folder: ``<folder>.csv`` beside it, else the only CSV inside it."""
    sibling = uri.rstrip("/") + ".csv"
    if exists(sibling, storage):
        return sibling
    inside = [f.relative_path for f in files if is_csv(f.relative_path)]
    if len(inside) == 1:
        return uri.rstrip("/") + "/" + inside[0]
    if len(inside) > 1:
        raise InputError(f"input {uri} holds several CSV files ({', '.join(inside[:5])}); expected one")
    return None


def _filesystem(uri: str, storage: Storage | None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system holding ``uri`` and the path in it: one code path for local and S3."""
    scheme, bucket, key = split_uri(uri)
    if scheme == "s3":
        return _require(storage).filesystem(), f"{bucket}/{key}".rstrip("/")
    return pafs.LocalFileSystem(), os.path.abspath(key)


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") or part.startswith("_") for part in relative.split("/"))


def _require(storage: Storage | None) -> Storage:
    if storage is None:
        raise InputError("an s3:// input needs S3 settings and credentials")
    return storage
