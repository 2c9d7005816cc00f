"""What validate learned about each input file, kept so that a run reads and decodes only files it has
not seen in their present state.

An entry is keyed by the file (its ``s3://`` URI or local path) and its version (size and ETag, or
size, modification and change times; ``data.file_versions``): a rewritten file has another version and is
inspected again. It holds the inspection (size, mode, frames, decode error or exclusion, sha256) and
the bytes, so the images table a run writes still holds the very bytes that passed. The entries live in
a folder named by a hash of everything that decides an inspection: the decoding and preparation code,
Pillow's version and ``max_image_pixels``. Each run adds the files it inspected as one part,
``cache/inspections/<key>/<run>-<input>-<attempt>/``, committed by a marker written after its step has
committed (so only once both inputs passed validation). A part without its marker is never read, an
entry whose bytes no longer hash to its sha256 is inspected again, and a part that cannot be read is
left out (its files are inspected again).
"""

from __future__ import annotations

import hashlib
import logging
from importlib import resources

from .catalog import INSPECTION_CACHE_PREFIX
from .data import DatasetInput, decode_images, is_csv
from .storage import Storage, WrittenPart

log = logging.getLogger(__name__)

KEY_COLUMNS = ["object", "version"]
INSPECTION = ["content", "width", "height", "mode", "frames", "decode_error", "excluded", "content_sha256"]
CODE = ("images.py", "vocabulary.py", "data.py")  # what decides an inspection


def code_version() -> str:
    """sha256 of what decodes and inspects a file here: this code and this Pillow."""
    import PIL

    digest = hashlib.sha256(f"Pillow {PIL.__version__}\n".encode())
    for name in CODE:
        digest.update(resources.files(__package__).joinpath(name).read_bytes())
    return digest.hexdigest()


def cache_key(max_pixels: int) -> str:
    """The cache folder of inspections made by this code, this Pillow and this pixel limit."""
    return hashlib.sha256(f"{code_version()}, max_pixels {max_pixels}".encode()).hexdigest()[:24]


def folder(key: str) -> str:
    return f"{INSPECTION_CACHE_PREFIX}{key}/"


def known_inspections(spark, storage: Storage, key: str, versions):
    """The cached inspections of the files in ``versions`` (``object``, ``version`` and any other
    columns, kept), those whose bytes still hash to their recorded sha256 only, in one scan of the cache
    however many inputs the files come from; cached in memory. None when nothing is cached; an
    unreadable part is left out (``Storage.readable_parts``): its files are inspected again."""
    from pyspark.sql import functions as F

    def scan(parts: list[str]):
        entries = spark.read.parquet(*parts).select(*KEY_COLUMNS, *INSPECTION).dropDuplicates(KEY_COLUMNS)
        known = (versions.join(entries, on=KEY_COLUMNS)
                 .where(F.sha2("content", 256) == F.col("content_sha256"))
                 .cache())
        known.count()
        return known

    return storage.readable_parts(folder(key), scan)


def inspect_files(spark, dataset: DatasetInput, versions, known, max_pixels: int):
    """Every file of the dataset with its bytes and inspection (``data.decode_images``' columns, plus
    ``object``, ``version`` and ``inspected``: true for files read and decoded now), reading and
    decoding only files not in ``known``: the dataset's ``known_inspections`` (None: inspect every
    file). ``versions``: the dataset's ``data.file_versions``. Cached in memory. Returns (that frame,
    how many files the cache knew, how many were read and decoded)."""
    from pyspark.sql import functions as F

    seen = set() if known is None else {row.image_id for row in known.select("image_id").collect()}
    unseen = [f.relative_path for f in dataset.files
              if f.relative_path not in seen and not is_csv(f.relative_path)]
    columns = ["image_id", *INSPECTION, *KEY_COLUMNS, "inspected"]
    frames = [] if known is None else [known.withColumn("inspected", F.lit(False)).select(*columns)]
    if unseen or known is None:
        decoded = decode_images(spark, dataset.root_uri, max_pixels, only=unseen if seen else None)
        frames.append(decoded.join(versions.select("image_id", *KEY_COLUMNS), on="image_id", how="left")
                      .withColumn("inspected", F.lit(True)).select(*columns))
    images = frames[0] if len(frames) == 1 else frames[0].unionByName(frames[1])
    return images.cache(), len(seen), len(unseen)


def add(storage: Storage, key: str, part: str, images) -> WrittenPart:
    """Keep the inspections of the files a run read and decoded (``inspect_files``' ``inspected`` rows
    with a version) as a part, to be committed with its step."""
    from pyspark.sql import functions as F

    entries = images.where(F.col("inspected") & F.col("version").isNotNull()).select(*KEY_COLUMNS, *INSPECTION)
    return storage.write_part(f"{folder(key)}{part}/", entries, code_version())
