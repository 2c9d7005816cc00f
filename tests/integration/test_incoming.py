"""Landed batches against the real S3 server: commit markers, the run's data cut-off, the watcher."""

from __future__ import annotations

import asyncio

import pytest

from numtaflow.catalog import VALIDATED_IMAGES
from tests.conftest import commit, make_numtadb, read_parquet, run_job, upload_folder

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def landed(tmp_path_factory, storage):
    """Two committed batches (2 and 1 images per digit) and one without its marker."""
    from numtaflow.incoming import drop_batch

    root = tmp_path_factory.mktemp("incoming")
    incoming = f"s3://{storage.bucket}/incoming-jobs"
    source = make_numtadb(root / "training-c", 3, source="training-c", offset=40)
    early, early_count = drop_batch(storage, str(source), incoming, "2026-11-02", "early", 2)
    late, late_count = drop_batch(storage, str(source), incoming, "2026-11-04", "late", 2)
    storage.put_bytes("incoming-jobs/dt=2026-11-01/half-uploaded/c0.png", (source / sorted(
        p.name for p in source.iterdir())[0]).read_bytes())
    return {"uri": incoming, "early": early, "late": late, "counts": (early_count, late_count), "root": root}


def test_a_drop_lands_new_images_and_commits_last(landed, storage):
    from numtaflow.incoming import list_batches

    assert landed["counts"] == (20, 10)  # the second drop skipped the images already landed
    assert list_batches(storage, landed["uri"]) == [landed["early"], landed["late"]]
    names = {o["Key"].rsplit("/", 1)[-1] for o in storage.list_objects("incoming-jobs/dt=2026-11-04/late/")}
    assert {"labels.csv", "_BATCH.json"} <= names and len(names) == 12
    from numtaflow.incoming import drop_batch

    with pytest.raises(ValueError, match="already exists"):
        drop_batch(storage, str(landed["root"] / "training-c"), landed["uri"], "2026-11-04", "late", 1)


def test_validate_uses_the_batches_landed_by_its_day(landed, storage, tmp_path, featurizer_env):
    train = upload_folder(storage, make_numtadb(tmp_path / "training-a", 3), "datasets/incoming")
    evaluation = make_numtadb(tmp_path / "eval", 2, source="training-c")
    settings = {"train_input": train, "eval_input": str(evaluation), "per_class": 4, "eval_per_class": 2,
                "incoming_input": landed["uri"]}
    result = run_job("validate", "backfill__2026-11-03", featurizer_env, settings, data_until="2026-11-03T00:00:00+00:00")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    summary = commit(storage, "backfill__2026-11-03", "validate").summary
    assert summary.data_until == "2026-11-03"
    assert [b.uri for b in summary.inputs["train"].batches] == [landed["early"].uri]
    images = read_parquet(storage, "backfill__2026-11-03", VALIDATED_IMAGES["train"])
    assert len(images) == 30 + 20  # 3 per class from the base input, 2 per class from the early batch
    assert images["image_id"].str.startswith("dt=2026-11-02/early/").sum() == 20


def test_the_watcher_fires_once_per_new_data(landed, storage):
    """The triggerer's watcher, driven directly: an event for unseen batches, then silence, then the next."""
    from numtaflow.incoming import drop_batch
    from numtaflow.triggers import NewBatchTrigger

    async def events(trigger, wanted, seconds):
        run, found = trigger.run(), []
        try:
            while len(found) < wanted:
                found.append((await asyncio.wait_for(run.__anext__(), seconds)).payload)
            await asyncio.wait_for(run.__anext__(), 1.5)  # resumes: records the announcement, then waits
        except TimeoutError:
            pass
        finally:
            await run.aclose()
        return found

    trigger = NewBatchTrigger(landed["uri"], poll_seconds=0.2)
    first = asyncio.run(events(trigger, 1, 10))
    assert first == [{"batches": [landed["early"].uri, landed["late"].uri]}]
    assert asyncio.run(events(trigger, 1, 2)) == []  # the same data never fires twice
    more = make_numtadb(landed["root"] / "more", 1, source="training-c", offset=60)
    newer, _ = drop_batch(storage, str(more), landed["uri"], "2026-11-05", "newer", 1)
    assert asyncio.run(events(trigger, 1, 10)) == [{"batches": [newer.uri]}]
