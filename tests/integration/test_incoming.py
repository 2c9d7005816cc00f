"""Landed batches against the real S3 server: commit markers, refused markers, the watcher and its
ledger, the batches a run chooses (once per run id) and trains on."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from numtaflow.catalog import VALIDATED_IMAGES, VALIDATION_REPORT, RunLayout
from tests.conftest import commit, make_numtadb, read_parquet, run_job, upload_folder

pytestmark = pytest.mark.integration
MALFORMED = ("dt=2026-13-45/bad", "date=2026-11-02/wrong")


@pytest.fixture(scope="module")
def landed(tmp_path_factory, storage):
    """Committed batches (2 and 1 images per digit, and one under tomorrow's UTC date, as an uploader in
    UTC+6 writes it), one without its marker, and two markers outside a dt=YYYY-MM-DD partition."""
    from numtaflow.incoming import drop_batch

    root = tmp_path_factory.mktemp("incoming")
    incoming = f"s3://{storage.bucket}/incoming-jobs"
    source = make_numtadb(root / "training-c", 3, source="training-c", offset=40)
    early, early_count = drop_batch(storage, str(source), incoming, "2026-11-02", "early", 2)
    late, late_count = drop_batch(storage, str(source), incoming, "2026-11-04", "late", 2)
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    ahead, _ = drop_batch(storage, str(make_numtadb(root / "ahead", 1, source="training-c", offset=70)), incoming,
                          tomorrow, "utc-plus-6", 1)
    storage.put_bytes("incoming-jobs/dt=2026-11-01/half-uploaded/c0.png", (source / sorted(
        p.name for p in source.iterdir())[0]).read_bytes())
    for folder in MALFORMED:
        storage.put_json(f"incoming-jobs/{folder}/_BATCH.json", {"images": 0})
    return {"uri": incoming, "early": early, "late": late, "ahead": ahead, "counts": (early_count, late_count),
            "root": root}


def test_a_drop_lands_new_images_and_commits_last(landed, storage):
    from numtaflow.incoming import landed_batches, list_batches

    assert landed["counts"] == (20, 10)  # the second drop skipped the images already landed
    assert list_batches(storage, landed["uri"]) == [landed["early"], landed["late"], landed["ahead"]]
    refused = landed_batches(storage, landed["uri"])[1]
    assert [r.marker for r in refused] == [f"{landed['uri']}/{f}/_BATCH.json" for f in sorted(MALFORMED)]
    names = {o["Key"].rsplit("/", 1)[-1] for o in storage.list_objects("incoming-jobs/dt=2026-11-04/late/")}
    assert {"labels.csv", "_BATCH.json"} <= names and len(names) == 12
    from numtaflow.incoming import drop_batch

    with pytest.raises(ValueError, match="already exists"):
        drop_batch(storage, str(landed["root"] / "training-c"), landed["uri"], "2026-11-04", "late", 1)


def test_the_watcher_fires_once_per_new_data(landed, storage):
    """The triggerer's watcher, driven directly: an event for unseen batches (the one dated ahead of UTC
    too; never a refused marker), then silence, then the next."""
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
    assert first == [{"batches": [landed["early"].uri, landed["late"].uri, landed["ahead"].uri]}]
    assert asyncio.run(events(trigger, 1, 2)) == []  # the same data never fires twice
    more = make_numtadb(landed["root"] / "more", 1, source="training-c", offset=60)
    newer, _ = drop_batch(storage, str(more), landed["uri"], "2026-11-05", "newer", 1)
    assert asyncio.run(events(trigger, 1, 10)) == [{"batches": [newer.uri]}]
    ledger = storage.get_json("incoming-jobs/_ANNOUNCED.json")["batches"]
    assert ledger == sorted(b.uri for b in (landed["early"], landed["late"], landed["ahead"], newer))


def test_concurrent_announcements_lose_no_batch(storage):
    """Eight watchers recording at once: the ledger is written by compare-and-set, so all eight stay."""
    from threading import Barrier

    from numtaflow.incoming import Batch, mark_announced

    incoming, start = f"s3://{storage.bucket}/incoming-ledger", Barrier(8)
    batches = [Batch("2026-11-02", f"b{i}", f"{incoming}/dt=2026-11-02/b{i}") for i in range(8)]

    def announce(batch):
        start.wait()
        mark_announced(storage, incoming, [batch])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(announce, batches))
    assert storage.get_json("incoming-ledger/_ANNOUNCED.json")["batches"] == sorted(b.uri for b in batches)


def test_a_data_arrival_run_trains_on_every_announced_batch_and_reports_the_refused(landed, storage, tmp_path,
                                                                                 featurizer_env):
    """The run a data arrival starts (data until its run-after time) trains on each committed batch, the one
    dated ahead of UTC included, and names the refused markers with their reasons in its summary and report."""
    from numtaflow.catalog import BATCH_SELECTION
    from numtaflow.incoming import list_batches

    train = upload_folder(storage, make_numtadb(tmp_path / "training-a", 3), "datasets/incoming")
    evaluation = make_numtadb(tmp_path / "eval", 2, source="training-c")
    settings = {"train_input": train, "eval_input": str(evaluation), "per_class": 4, "eval_per_class": 2,
                "incoming_input": landed["uri"]}
    batches = list_batches(storage, landed["uri"])
    run_after = datetime.now(timezone.utc).isoformat()
    result = run_job("validate", "asset_triggered__incoming", featurizer_env, settings, data_until=run_after)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    summary = commit(storage, "asset_triggered__incoming", "validate").summary
    assert summary.data_until == run_after[:10]
    assert [b.uri for b in summary.inputs["train"].batches] == [b.uri for b in batches]
    assert landed["ahead"].uri in [b.uri for b in summary.incoming.batches]
    reasons = {r.marker.split("/")[-3]: r.reason for r in summary.incoming.refused}
    assert sorted(reasons) == ["date=2026-11-02", "dt=2026-13-45"] and "not a date" in reasons["dt=2026-13-45"]
    layout = RunLayout(storage.bucket, "asset_triggered__incoming")
    assert storage.get_json(layout.key(VALIDATION_REPORT))["incoming"] == summary.incoming.model_dump()
    assert storage.get_json(layout.key(BATCH_SELECTION)) == summary.incoming.model_dump()
    images = read_parquet(storage, "asset_triggered__incoming", VALIDATED_IMAGES["train"])
    landed_images = sum(storage.get_json(f"{b.uri.split('/', 3)[3]}/_BATCH.json")["images"] for b in batches)
    assert len(images) == 30 + landed_images
    assert images["image_id"].str.startswith(landed["ahead"].id_prefix).sum() == 10


def test_a_run_chooses_its_batches_once_and_a_re_run_trains_on_the_same(landed, storage, tmp_path):
    """A batch written late into an old dt= is seen by runs that choose after it landed, never by a re-run
    (same run id) of a run that had chosen already: validate's sources come from the run's recorded choice."""
    from numtaflow.config import Settings
    from numtaflow.incoming import drop_batch
    from numtaflow.jobs import StepContext
    from numtaflow.steps.validate import training_sources

    def sources(run_id, data_until):
        settings = Settings.from_env().with_overrides({"incoming_input": landed["uri"]})
        context = StepContext("validate", run_id, settings, storage, RunLayout(storage.bucket, run_id), None,
                              "backfill", data_until)
        return [uri for _, uri in training_sources(context)[0][1:]]

    backfill = sources("backfill__2026-11-03", "2026-11-03T00:00:00+00:00")
    assert backfill == [landed["early"].uri]  # landed by 3 November: the early batch's partition
    arrival = sources("asset_triggered__incoming", datetime.now(timezone.utc).isoformat())
    straggler, _ = drop_batch(storage, str(make_numtadb(tmp_path / "straggler", 1, source="training-c", offset=75)),
                              landed["uri"], "2026-11-02", "straggler", 1)
    assert sources("backfill__2026-11-03", "2026-11-03T00:00:00+00:00") == backfill
    assert sources("asset_triggered__incoming", datetime.now(timezone.utc).isoformat()) == arrival
    assert straggler.uri in sources("backfill__2026-11-03_again", "2026-11-03T00:00:00+00:00")
    assert straggler.uri in sources("scheduled__later", datetime.now(timezone.utc).isoformat())


def test_each_inbox_batch_is_claimed_by_one_scoring_run(storage, tmp_path):
    """Unlabelled batches land without labels; 8 scoring runs race for them and each batch goes to exactly
    one; a re-run reads its choice back, and a run that found none looks again when it is re-run."""
    from numtaflow.catalog import SCORING_BATCHES
    from numtaflow.incoming import claim_batches, unlabelled_batch

    inbox = f"s3://{storage.bucket}/inbox-jobs"
    source = make_numtadb(tmp_path / "scans", 1, source="training-c", offset=50)
    first, labels = unlabelled_batch(storage, str(source), inbox, "2026-11-02", "a", 4, set())
    second, landed = unlabelled_batch(storage, str(source), inbox, "2026-11-03", "b", 3, set())
    assert not {name for name, _ in landed} & {name for name, _ in labels}  # new images, though none excluded
    assert len(labels) == 4 and len({label for _, label in labels}) == 4  # as many per digit as fit
    names = {o["Key"].rsplit("/", 1)[-1] for o in storage.list_objects("inbox-jobs/dt=2026-11-02/a/")}
    assert names == {name for name, _ in labels} | {"_BATCH.json"}  # no labels.csv
    with pytest.raises(ValueError, match="already exists"):
        unlabelled_batch(storage, str(source), inbox, "2026-11-02", "a", 1, set())

    def key(run_id):
        return RunLayout.scoring(storage.bucket, run_id).key(SCORING_BATCHES)

    with ThreadPoolExecutor(8) as pool:
        selections = list(pool.map(lambda i: claim_batches(storage, key(f"race-{i}"), inbox, f"race-{i}"),
                                   range(8)))
    claimed = [batch.uri for selection in selections for batch in selection.batches]
    assert sorted(claimed) == [first.uri, second.uri]
    winner = next(i for i, selection in enumerate(selections) if selection.batches)
    assert claim_batches(storage, key(f"race-{winner}"), inbox, f"race-{winner}") == selections[winner]
    assert claim_batches(storage, key("late"), inbox, "late").batches == []
    # a run that found nothing recorded nothing: cleared after a batch landed, it claims that batch
    third, _ = unlabelled_batch(storage, str(source), inbox, "2026-11-04", "c", 1, set())
    assert [batch.uri for batch in claim_batches(storage, key("late"), inbox, "late").batches] == [third.uri]


def test_drops_from_a_folder_per_class_keep_every_image_under_its_path(storage, tmp_path):
    """Names repeat across class folders (0/0001.png, 1/0001.png): each image lands under its path,
    labelled or not, and a second drop skips exactly the paths landed."""
    import shutil

    import pandas as pd

    from numtaflow.data import build_manifest, resolve_input
    from numtaflow.incoming import drop_batch, unlabelled_batch

    numtadb = make_numtadb(tmp_path / "numtadb", 3, source="training-c", offset=80)
    rows = pd.read_csv(tmp_path / "numtadb.csv")
    classes = tmp_path / "classes"
    for digit, group in rows.groupby("digit"):
        (classes / str(digit)).mkdir(parents=True)
        for index, name in enumerate(group["filename"]):
            shutil.copyfile(numtadb / name, classes / str(digit) / f"{index:04d}.png")
    incoming, inbox = f"s3://{storage.bucket}/incoming-classes", f"s3://{storage.bucket}/inbox-classes"
    first, count = drop_batch(storage, str(classes), incoming, "2026-11-02", "first", 2)
    second, more = drop_batch(storage, str(classes), incoming, "2026-11-03", "second", 2)
    assert (count, more) == (20, 10)
    manifest = build_manifest(resolve_input(first.uri, storage))
    assert len(manifest) == 20 and manifest["in_csv"].all() and manifest["has_file"].all()
    assert sorted(manifest["label_raw"].astype(int)) == sorted(list(range(10)) * 2)
    assert set(manifest["image_id"]) == {f"{digit}/{index:04d}.png" for digit in range(10) for index in range(2)}
    batch, labels = unlabelled_batch(storage, str(classes), inbox, "2026-11-02", "scans", 20, set())
    keys = {o["Key"].split("/", 3)[-1] for o in storage.list_objects("inbox-classes/dt=2026-11-02/scans/")}
    assert keys == {path for path, _ in labels} | {"_BATCH.json"} and len(labels) == 20
