"""What each step promises the next: its commit record and summary, one typed model per step; and
what a step's job tells its Airflow task by its exit status.

A step returns its summary model; ``jobs.run_step`` writes it into ``_COMMITTED.json``; a later
step reads it back with ``read_commit``, which validates it, so a changed contract fails loudly at
the reader (naming the object and the field) instead of as a ``KeyError`` three steps later.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError


class Contract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JobExit(IntEnum):
    """A step job's exit status, which its task (``tasks.SparkStep``) turns into the task's state."""

    COMMITTED = 0  # or reused an earlier run's output
    FAILED = 1  # S3 or Spark failed, or the job crashed: a retry may pass
    REFUSED = 3  # the input or the settings are unacceptable: a retry would refuse them again
    NOTHING_TO_DO = 4  # nothing is left for this run: its task and those after it are skipped


# --- validate ------------------------------------------------------------------------------
class SourceRecord(Contract):
    """One source of an input (the base dataset or a landed batch) as validated."""

    uri: str
    resolved_uri: str
    csv_uri: str | None
    layout: str
    files: int
    manifest_sha256: str
    files_decoded: int | None = None  # read and decoded by the run that validated it; the others were
    # known to the inspection cache in their present version


class InputRecord(SourceRecord):
    """An input as a whole: its base source, the manifest hash over all sources, its batches."""

    batches: list[SourceRecord] = []


class LandedBatch(Contract):
    """A committed batch under the landing prefix, as a run chose it."""

    day: str  # its dt= partition
    name: str
    uri: str
    arrived_at: str | None = None  # when its marker was committed (the S3 server's clock), ISO UTC


class RefusedBatch(Contract):
    """A batch marker that commits nothing usable, and why: reported by the runs that see it, never skipped."""

    marker: str  # the marker's URI
    reason: str


class BatchSelection(Contract):
    """The landed batches a run trains on (``catalog.BATCH_SELECTION``): chosen once, by the run's first
    validate, so a retry or a re-run of the run id trains on the same batches whatever landed since."""

    run_id: str
    data_until: str  # ISO time, UTC: the batches available by then (see ``incoming.available_from``)
    chosen_at: str
    batches: list[LandedBatch] = []
    refused: list[RefusedBatch] = []


class ValidateSummary(Contract):
    inputs: dict[str, InputRecord]
    data_until: str
    class_counts: dict[str, dict[str, int]]
    incoming: BatchSelection | None = None  # the run's landed batches and refused markers


# --- sample --------------------------------------------------------------------------------
class SampledSet(Contract):
    rows: int
    per_class: dict[str, int]
    ids_sha256: str


class SampleSummary(Contract):
    train: SampledSet
    eval: SampledSet


# --- featurize -----------------------------------------------------------------------------
class FeaturizedSet(Contract):
    rows: int
    partitions: int
    dimension: int
    seconds: float
    images_through_cnn: int
    images_per_second: float | None
    reused: int = 0  # rows whose features came from the feature cache


class Featurizer(Contract):
    """What defines the features: a model is comparable only on features of the same featurizer."""

    backbone: str
    image_size: int
    layers: list[str]
    weights: str
    weights_sha256: str | None
    code: str | None = None  # feature_cache.code_version(): the preparation code and libraries (None: before it)


class FeaturizeSummary(Featurizer):
    train_views: int
    test_views: int
    train: FeaturizedSet
    eval: FeaturizedSet

    def featurizer(self) -> Featurizer:
        return Featurizer(**self.model_dump(include=set(Featurizer.model_fields)))


# --- train ---------------------------------------------------------------------------------
class TrainSummary(Contract):
    params: dict[str, Any]
    cv: list[dict[str, Any]]
    n_train: int
    n_train_rows: int
    n_holdout: int
    training_accuracy: float | None


# --- canary --------------------------------------------------------------------------------
class CanarySummary(Contract):
    images: int  # canary images the saved pipeline scored
    error: str | None  # why it could not load or score them
    seconds: float


# --- evaluate ------------------------------------------------------------------------------
class EvaluateSummary(Contract):
    accuracy: float
    f1: float
    promoted: bool


# --- scoring ---------------------------------------------------------------------------------
class PinnedModel(Contract):
    """``model.json`` of a scoring run: the registered version it uses, fixed when it starts."""

    requested: str  # what the form asked for: champion, a version, a training run
    version: str
    run_id: str  # the training run that made it
    pipeline_uri: str
    pinned_at: str


class CheckBatchSummary(Contract):
    inputs: list[str]
    model_version: str
    files: int
    scorable: int
    rejected: int


class ScoreBatchSummary(Contract):
    model_version: str
    images: int
    partitions: int
    seconds: float
    images_per_second: float | None


class ReportBatchSummary(Contract):
    images: int
    rejected: int
    psi: float
    drift: bool
    low_confidence_share: float


SUMMARIES: dict[str, type[Contract]] = {
    "validate": ValidateSummary,
    "sample": SampleSummary,
    "featurize": FeaturizeSummary,
    "train": TrainSummary,
    "canary": CanarySummary,
    "evaluate": EvaluateSummary,
    "check_batch": CheckBatchSummary,
    "score_batch": ScoreBatchSummary,
    "report_batch": ReportBatchSummary,
}
Summary = TypeVar("Summary", bound=Contract)


class StepCommit(Contract, Generic[Summary]):
    """The content of a step's ``_COMMITTED.json``."""

    run_id: str
    step: str
    started_at: str
    finished_at: str
    seconds: float
    settings: dict[str, Any]
    logical_date: str | None
    run_type: str
    summary: Summary
    # what the step's output is a function of (jobs.step_fingerprint); None for steps never reused
    fingerprint: str | None = None
    reused_from: str | None = None  # the run whose committed output this step took instead of computing
    # a reusable step's objects (relative key -> ETag) as committed: a later change or loss is seen
    outputs: dict[str, str] | None = None


class ContractError(ValueError):
    """A commit record that does not hold what its step promises."""


def parse_commit(step: str, record: dict, where: str = "") -> StepCommit:
    """The commit record of ``step`` as its typed model; ``where`` names the object in errors."""
    try:
        return StepCommit[SUMMARIES[step]].model_validate(record)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5])
        raise ContractError(f"commit record of step '{step}' {where} does not match its contract: {problems}"
                            ) from None
