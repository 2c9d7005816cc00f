"""Features computed once per (image bytes, featurizer, view), reused by every later run that needs them.

An entry's key is the image's sha256, the view's seed key and number, inside a folder named by a hash
of everything that defines the features: the featurizer stage's Params (backbone, size, layers, crop,
test views, the weights' sha256), the source of the code that prepares and featurizes an image, and
the versions of TensorFlow, Keras, Pillow and NumPy (which draws the distorted views).
Changing any of them misses the cache by construction; random weights are never cached (they are
drawn anew per process). Each run adds the entries it computed as one part,
``cache/features/<featurizer>/<run>-<pass>-<attempt>/``, committed by a marker written after its step has
committed: a part without its marker (a crashed write, a failed step) is never read, and a missing or
unreadable part only means computing.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata, resources

from .catalog import FEATURE_CACHE_PREFIX
from .ml import RANDOM, ImageFeaturizer
from .storage import Storage, WrittenPart

KEY_COLUMNS = ["content_sha256", "view_key", "view"]
DEFINING_PARAMS = ("backbone", "imageSize", "layers", "cropToInk", "testViews", "weightsFile", "weightsSha256")
CODE = ("images.py", "features.py", "ml.py", "vocabulary.py")  # what turns bytes into features (views' seeds too)
# their numerics, resampling and the views' random draws are in the features as well (each as any of its
# distributions' names)
LIBRARIES = (("tensorflow", "tensorflow-cpu"), ("keras",), ("pillow",), ("numpy",))


def code_version() -> str:
    """sha256 of the preparation and featurizer source, as this process runs it (also from the
    package archive a Spark driver imports), and of the libraries' versions."""
    digest = hashlib.sha256(" ".join(f"{names[0]} {installed_version(names)}" for names in LIBRARIES).encode())
    for name in CODE:
        digest.update(resources.files(__package__).joinpath(name).read_bytes())
    return digest.hexdigest()


def installed_version(distributions: tuple[str, ...]) -> str:
    """The version of the first of ``distributions`` installed ("absent": none is)."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "absent"


def featurizer_key(params: dict, code: str) -> str | None:
    """The cache folder of a featurizer's features; None for random weights (not reproducible)."""
    if params["weightsFile"] == RANDOM:
        return None
    defining = {name: params[name] for name in DEFINING_PARAMS}
    return hashlib.sha256(json.dumps({"params": defining, "code": code}, sort_keys=True).encode()).hexdigest()[:24]


def stage_key(stage: ImageFeaturizer) -> str | None:
    return featurizer_key({p.name: stage.getOrDefault(p) for p in stage.params if p.name in DEFINING_PARAMS},
                          code_version())


def folder(key: str) -> str:
    return f"{FEATURE_CACHE_PREFIX}{key}/"


def entries_for(spark, storage: Storage, key: str | None, wanted):
    """The committed entries (key columns and features, one per key) of the keys ``wanted``, read in one
    scan of the cache, kept in memory for the step's later joins; None when the featurizer has none.
    An unreadable part is left out (``Storage.readable_parts``): its entries are computed again.

    The scan goes through a broadcast join with ``wanted``'s keys, so only the wanted entries' feature
    arrays ever leave it (a sort-merge join would shuffle the whole cache's)."""
    from pyspark.sql import functions as F

    keys = F.broadcast(wanted.distinct())

    def scan(parts: list[str]):
        entries = (spark.read.parquet(*parts).select(*KEY_COLUMNS, "features").join(keys, KEY_COLUMNS, "left_semi")
                   .dropDuplicates(KEY_COLUMNS).persist())
        entries.count()
        return entries

    return storage.readable_parts(folder(key), scan) if key else None


def part_prefix(key: str, part: str) -> str:
    return f"{folder(key)}{part}/"


def part_entries(spark, storage: Storage, key: str, part: str):
    """The entries of one part (what ``add`` wrote), read by its path: also before it is committed."""
    return spark.read.parquet(storage.s3a(part_prefix(key, part))).select(*KEY_COLUMNS, "features")


def add(storage: Storage, key: str, part: str, entries) -> WrittenPart:
    """Write ``entries`` (rows a run featurized: the key columns, the features, and whatever else they
    carry) as a part, to be committed with its step."""
    return storage.write_part(part_prefix(key, part), entries, code_version())
