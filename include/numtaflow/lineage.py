"""A run's lineage record (``runs/<run>/run.json``): inputs, sample, settings, code and library
versions, step times and the run's artifacts, from what the steps committed."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata

from .catalog import ARTIFACTS, GATE, LINEAGE, METRICS, Artifact, RunLayout
from .config import PROJECT_ROOT
from .contracts import StepCommit
from .storage import Storage

PACKAGES = ("pyspark", "tensorflow-cpu", "tensorflow", "keras", "pillow", "numpy", "pandas", "pyarrow",
            "apache-airflow", "great-expectations", "scikit-learn", "numtaflow")


def versions() -> dict:
    """Python's and the stack's versions, as installed where the step ran."""
    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {"python": platform.python_version(), **packages}


def code_version() -> str:
    """The checkout's commit, or the package version where there is no git checkout."""
    try:
        return subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "numtaflow " + metadata.version("numtaflow")


def artifact_uris(storage: Storage, layout: RunLayout, writing: tuple[Artifact, ...] = ()) -> list[str]:
    """The catalog's artifacts that this run has written, or is ``writing`` beside this record (a
    Parquet dataset or model counted once)."""
    present = {obj["Key"] for obj in storage.list_objects(layout.root)} | {layout.key(a) for a in writing}
    found = []
    for artifact in ARTIFACTS:
        key = layout.key(artifact)
        if key in present or (artifact.is_folder and any(k.startswith(key + "/") for k in present)):
            found.append(layout.uri(artifact) + ("/" if artifact.is_folder else ""))
    return sorted(found)


def run_record(storage: Storage, layout: RunLayout, commits: dict[str, StepCommit], logical_date: str | None,
               run_type: str, settings: dict) -> dict:
    """The lineage record of a run whose steps up to evaluate have committed."""
    validate, sample, featurize = commits["validate"].summary, commits["sample"].summary, commits["featurize"].summary
    steps = {step: {"started_at": c.started_at, "finished_at": c.finished_at, "seconds": c.seconds,
                    "reused_from": c.reused_from} for step, c in commits.items()}
    return {
        "run_id": layout.run_id,
        "logical_date": logical_date,
        "run_type": run_type,
        "inputs": {name: record.model_dump() for name, record in validate.inputs.items()},
        "data_until": validate.data_until,
        # the landed batches the run chose (each with its arrival) and the markers it refused, with reasons
        "incoming": validate.incoming.model_dump() if validate.incoming else None,
        "sample": sample.model_dump(),
        "settings": settings,
        "code_version": code_version(),
        "versions": versions(),
        "featurizer": featurize.featurizer().model_dump(),
        # rows whose features came from the feature cache, and images that went through the network
        "features": {name: {"rows": part.rows, "reused": part.reused, "images_through_cnn": part.images_through_cnn}
                     for name, part in (("train", featurize.train), ("eval", featurize.eval))},
        "steps": steps,
        "artifacts": artifact_uris(storage, layout, writing=(METRICS, GATE, LINEAGE)),  # evaluate writes them with it
    }
