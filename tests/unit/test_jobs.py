import json
import re
from pathlib import Path

import pytest

from numtaflow.catalog import RUN_OWNER, SAMPLED_IMAGES, RunLayout
from numtaflow.config import SettingsError
from numtaflow.contracts import ContractError, JobExit
from numtaflow.data import InputError
from numtaflow.features import WeightsNotFound
from numtaflow.jobs import StepIncomplete, StepRefused, claim_prefix, context_from_args, exit_status, parse_args
from numtaflow.storage import MissingCommit, PreconditionFailed, StorageError, StorageRefused


def test_context_normalises_run_id_and_type_and_applies_form_values():
    args = parse_args(["--run-id", "scheduled__2026-01-01T00:00:00+00:00", "--run-type", "DagRunType.SCHEDULED",
                       "--settings-json", '{"per_class": 7, "seed": null}'])
    context = context_from_args("sample", args)
    assert context.run_id == "scheduled__2026-01-01T00_00_00_00_00"
    assert context.run_type == "scheduled"
    assert context.settings.per_class == 7 and context.settings.seed == 42
    assert context.s3a(SAMPLED_IMAGES["train"]).startswith(f"s3a://{context.settings.bucket}/")
    assert context.s3a(SAMPLED_IMAGES["train"]).endswith(f"/{context.run_id}/sample/train.parquet")


def test_form_values_apply_only_where_changed_and_explicit_settings_always(monkeypatch):
    monkeypatch.setenv("NUMTAFLOW_PER_CLASS", "80")
    monkeypatch.setenv("NUMTAFLOW_SEED", "9")
    form = '{"per_class": 50, "seed": 3, "backbone": "MobileNetV2"}'  # per_class untouched, seed changed
    settings = context_from_args("sample", parse_args(["--run-id", "r", "--form-json", form])).settings
    assert (settings.per_class, settings.seed) == (80, 3)
    explicit = context_from_args("sample", parse_args(["--run-id", "r", "--form-json", form,
                                                       "--settings-json", '{"per_class": 50}'])).settings
    assert explicit.per_class == 50


@pytest.mark.parametrize("error, status", [
    (StepRefused("validate: 3 files fail"), JobExit.REFUSED),
    (InputError("CSV is missing column(s) filename"), JobExit.REFUSED),
    (ContractError("summary lacks n_train"), JobExit.REFUSED),
    (WeightsNotFound("no weights file"), JobExit.REFUSED),
    (StorageError("S3 endpoint unreachable"), JobExit.FAILED),
    (StorageRefused("S3 refused the credentials"), JobExit.REFUSED),
    (MissingCommit("step 'featurize' of run r has no commit marker"), JobExit.REFUSED),
    (PreconditionFailed("the champion changed meanwhile"), JobExit.FAILED),
    (StepIncomplete("featurize wrote 99 rows, expected 100"), JobExit.FAILED),
])
def test_only_failures_a_retry_can_fix_exit_as_failed(error, status):
    assert exit_status(error) is status


def test_form_values_must_be_an_object_of_known_settings():
    with pytest.raises(SettingsError, match="must be a JSON object") as refused:
        context_from_args("sample", parse_args(["--run-id", "r", "--settings-json", "[1]"]))
    assert exit_status(refused.value) is JobExit.REFUSED
    with pytest.raises(ValueError, match="unknown run setting"):
        context_from_args("sample", parse_args(["--run-id", "r", "--settings-json", '{"nope": 1}']))


def test_a_cache_part_whose_marker_cannot_be_written_is_left_out_with_a_warning(caplog):
    from types import SimpleNamespace

    from numtaflow.jobs import commit_cache_parts
    from numtaflow.storage import WrittenPart

    committed = []

    def commit_part(part):
        if part.prefix.startswith("cache/features/"):
            raise StorageError("s3://b/cache/features/k/p/_COMMITTED.json: 503 Slow Down")
        committed.append(part.prefix)

    parts = [WrittenPart("cache/features/k/p/", 3, "c"), WrittenPart("cache/inspections/k/p/", 2, "c")]
    context = SimpleNamespace(cache_parts=parts, storage=SimpleNamespace(bucket="b", commit_part=commit_part))
    commit_cache_parts(context)
    assert committed == ["cache/inspections/k/p/"]
    assert "left the cache part s3://b/cache/features/k/p/ uncommitted: s3://b/cache/features/k/p/_COMMITTED.json: " \
           "503 Slow Down" in caplog.text


def test_a_fingerprint_changes_with_what_defines_the_output_and_only_with_that():
    from numtaflow.config import Settings
    from numtaflow.jobs import fingerprint_of

    settings = Settings().run_settings()
    base = fingerprint_of("train", "code", settings, {"featurize": "f1"})
    assert base == fingerprint_of("train", "code", dict(reversed(settings.items())), {"featurize": "f1"})
    assert base == fingerprint_of("train", "code", {**settings, "reuse_steps": False}, {"featurize": "f1"})
    assert (fingerprint_of("train", "code", settings, {"featurize": "f1"}, ("min_f1",))
            == fingerprint_of("train", "code", {**settings, "min_f1": 0.5}, {"featurize": "f1"}, ("min_f1",)))
    changed = [fingerprint_of("sample", "code", settings, {"featurize": "f1"}),
               fingerprint_of("train", "code2", settings, {"featurize": "f1"}),
               fingerprint_of("train", "code", {**settings, "seed": 43}, {"featurize": "f1"}),
               fingerprint_of("train", "code", settings, {"featurize": "f2"})]
    assert len({base, *changed}) == 5


def test_a_step_computes_again_under_other_library_versions(monkeypatch):
    from types import SimpleNamespace

    from numtaflow import jobs
    from numtaflow.config import Settings

    settings = Settings().run_settings()
    context = SimpleNamespace(step="featurize", recorded_settings=lambda: settings,
                              require=lambda step: SimpleNamespace(fingerprint="sampled"))
    reuse = jobs.Reuse(after=("sample",), identify=lambda context: "weights")
    installed = jobs.versions()
    assert set(installed) >= {"pyspark", "pillow", "numtaflow"}
    before = jobs.step_fingerprint(context, reuse)
    assert before == jobs.step_fingerprint(context, reuse)
    monkeypatch.setattr(jobs, "versions", lambda: {**installed, "pillow": "0.0.1"})
    assert jobs.step_fingerprint(context, reuse) != before


def test_the_package_fingerprint_is_its_source(tmp_path, monkeypatch):
    """Any byte of the package's source changes it; compiled files do not."""
    import shutil

    from numtaflow import jobs

    installed = jobs.package_sha256()
    assert len(installed) == 64
    copy = tmp_path / "numtaflow"
    shutil.copytree(Path(jobs.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(jobs.resources, "files", lambda package: copy)
    assert jobs.package_sha256() == installed
    (copy / "__pycache__").mkdir()
    (copy / "__pycache__" / "jobs.cpython-312.pyc").write_bytes(b"compiled")
    assert jobs.package_sha256() == installed
    with open(copy / "steps" / "train.py", "a") as source:
        source.write("\n")
    assert jobs.package_sha256() != installed


def test_an_input_identity_changes_with_any_file_and_the_csv_beside_the_folder(tmp_path):
    import os

    from numtaflow.data import listing_identity, versioned_files

    def input_identity(uri):
        return listing_identity(versioned_files(uri, None))

    folder = tmp_path / "training-a"
    folder.mkdir()
    (folder / "a00000.png").write_bytes(b"one")
    (folder / "a00001.png").write_bytes(b"two")
    first = input_identity(str(folder))
    assert input_identity(str(folder) + "/") == first
    (tmp_path / "training-a.csv").write_text("filename,digit\n")
    with_csv = input_identity(str(folder))
    (folder / "a00001.png").write_bytes(b"TWO")  # same size, new content: a new modification time
    os.utime(folder / "a00001.png", ns=(1, 1))
    rewritten = input_identity(str(folder))
    (folder / "a00002.png").write_bytes(b"three")
    added = input_identity(str(folder))
    assert len({first, with_csv, rewritten, added}) == 4


def test_no_step_reads_a_setting_its_reuse_ignores():
    """validate is reused whatever the sampling, featurizer, training and gate settings are, sample
    whatever all but the sampling ones are, and so on: so no module such a step runs may read them."""
    import importlib
    import re
    from pathlib import Path

    import numtaflow

    package = Path(numtaflow.__file__).parent
    own_modules = {"validate": {"steps/validate.py", "data.py", "quality.py", "incoming.py", "inspection_cache.py"},
                   "sample": {"steps/sample.py", "sampling.py"},
                   "featurize": {"steps/featurize.py", "feature_cache.py", "features.py", "ml.py"},
                   "train": {"steps/train.py", "model.py"}}
    for step, modules in own_modules.items():
        ignores = importlib.import_module(f"numtaflow.steps.{step}").REUSE.ignores
        assert ignores, step
        for name in ignores:
            readers = {str(path.relative_to(package)) for path in package.rglob("*.py")
                       if re.search(rf"\.{name}\b", path.read_text())}
            assert readers and not readers & modules, (step, name, readers)


class OwnerStore:
    """The two calls ``claim_prefix`` makes, on one object: its JSON value (or unreadable bytes), and an
    optional rival whose claim lands between this step's read and its put-if-absent."""

    bucket = "b"

    def __init__(self, value=None, unreadable=False, rival=None):
        self.value, self.unreadable, self.rival = value, unreadable, rival

    def get_json(self, key):
        if self.unreadable:
            raise json.JSONDecodeError("Expecting value", "", 0)
        if self.value is None:
            raise FileNotFoundError(key)
        return self.value

    def put_if_absent(self, key, value):
        assert key == RUN.key(RUN_OWNER)
        if self.rival is not None:
            self.value = self.rival.get("run_id") and self.rival
            return False
        self.value = value
        return True


RUN = RunLayout("b", "exp_1")


def test_the_first_run_id_claims_its_prefix_and_its_retries_pass():
    store = OwnerStore()
    claim_prefix(store, RUN, "exp:1")
    assert store.value == {"run_id": "exp:1"}
    claim_prefix(store, RUN, "exp:1")  # a retry or re-run of the same run
    claim_prefix(OwnerStore(rival={"run_id": "exp:1"}), RUN, "exp:1")  # its own other attempt got there first


@pytest.mark.parametrize("store, run_id, refusal", [
    (OwnerStore({"run_id": "exp:1"}), "exp+1", f"run id 'exp+1' maps to s3://b/{RUN.root}, which holds the artifacts "
                                              f"of run 'exp:1' (s3://b/{RUN.key(RUN_OWNER)}): trigger the run under "
                                              "another run id"),
    (OwnerStore({"run_id": "exp:1"}), "exp_1", "pass the run's Airflow id 'exp:1', not its key-safe form"),
    (OwnerStore(rival={"run_id": "exp:1"}), "exp_1", "which holds the artifacts of run 'exp:1'"),
    (OwnerStore(unreadable=True), "exp:1", f"s3://b/{RUN.key(RUN_OWNER)} is not a run owner record"),
    (OwnerStore(["exp:1"]), "exp:1", f"s3://b/{RUN.key(RUN_OWNER)} is not a run owner record"),
])
def test_a_run_id_meeting_another_runs_prefix_is_refused_with_the_owner_named(store, run_id, refusal):
    with pytest.raises(StepRefused, match=re.escape(refusal)) as refused:
        claim_prefix(store, RUN, run_id)
    assert exit_status(refused.value) is JobExit.REFUSED


def test_a_claim_lost_to_a_write_that_left_no_owner_is_retried():
    with pytest.raises(StorageError, match="could not be claimed") as failure:
        claim_prefix(OwnerStore(rival={}), RUN, "exp:1")
    assert exit_status(failure.value) is JobExit.FAILED
