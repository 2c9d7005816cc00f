"""Landed batches: which count, which a run sees and when, the run's recorded choice, the watcher."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timezone

import pytest

from numtaflow.catalog import BATCH_SELECTION, RunLayout
from numtaflow.incoming import Batch, batches_until, check_batch_name, choose_batches, cutoff_time, parse_listing

BASE = "s3://numtaflow/incoming"
EVENING = datetime(2026, 12, 1, 20, tzinfo=timezone.utc)  # 02:00 on 2 December in UTC+6


def batch(day: str, name: str = "b", arrived_at: str | None = "2026-12-01T20:00:00+00:00") -> Batch:
    return Batch(day, name, f"{BASE}/dt={day}/{name}", arrived_at)


def test_only_batches_with_a_marker_count_and_misplaced_markers_are_refused_with_the_reason():
    listing = [(key, EVENING) for key in (
        "dt=2026-11-02/b1/_BATCH.json", "dt=2026-11-02/b1/c1.png", "dt=2026-11-03/half/c2.png",
        "dt=2026-11-01/b0/_BATCH.json", "dt=2026-11-04/b2/sub/_BATCH.json", "dt=11-04/b3/_BATCH.json",
        "dt=2026-13-45/b4/_BATCH.json", "date=2026-11-02/b5/_BATCH.json", "dt=2026-11-02/_b6/_BATCH.json",
        "_ANNOUNCED.json")]
    batches, refused = parse_listing(BASE + "/", listing)
    assert batches == [batch("2026-11-01", "b0"), batch("2026-11-02", "b1")]
    assert batches[0].arrived_at == "2026-12-01T20:00:00+00:00"
    reasons = {r.marker.removeprefix(BASE + "/").split("/")[0]: r.reason for r in refused}
    assert sorted(reasons) == ["date=2026-11-02", "dt=11-04", "dt=2026-11-02", "dt=2026-11-04", "dt=2026-13-45"]
    assert "not a dt=YYYY-MM-DD partition" in reasons["date=2026-11-02"]
    assert "not a date" in reasons["dt=2026-13-45"] and "not a date" in reasons["dt=11-04"]
    assert "batch name '_b6'" in reasons["dt=2026-11-02"]
    assert "dt=YYYY-MM-DD/<batch>/_BATCH.json" in reasons["dt=2026-11-04"]


def test_a_batch_counts_from_its_commit_even_when_its_dt_is_ahead_of_utc():
    ahead = batch("2026-12-02")  # an uploader in UTC+6 writes its local date
    assert batches_until([ahead], cutoff_time("2026-12-01T20:00:05+00:00")) == [ahead]
    assert batches_until([ahead], cutoff_time("2026-12-01T19:59:59+00:00")) == []


def test_a_batch_for_a_past_day_counts_from_that_day_for_runs_that_choose_after_it_landed():
    old = batch("2026-11-02")  # copied in on 1 December for 2 November
    assert batches_until([old], cutoff_time("2026-11-02T00:00:00+00:00")) == [old]
    assert batches_until([old], cutoff_time("2026-11-01T23:59:59+00:00")) == []
    unknown = batch("2026-11-03", arrived_at=None)  # no commit time listed: its day only
    assert batches_until([unknown], cutoff_time("2026-12-01T00:00:00+00:00")) == [unknown]
    assert batches_until([unknown], cutoff_time("2026-11-02T23:59:59+00:00")) == []


def test_the_cutoff_is_the_data_until_time_in_utc():
    assert cutoff_time("2026-11-02T00:00:00+00:00") == datetime(2026, 11, 2, tzinfo=timezone.utc)
    assert cutoff_time("2026-11-02T23:30:00-02:00").date() == date(2026, 11, 3)  # 01:30 UTC next day
    assert cutoff_time("2026-11-02T10:00:00Z") == datetime(2026, 11, 2, 10, tzinfo=timezone.utc)
    assert cutoff_time("2026-11-02T10:00:00") == datetime(2026, 11, 2, 10, tzinfo=timezone.utc)
    assert cutoff_time("", now=EVENING) == EVENING
    assert cutoff_time(None, now=EVENING) == EVENING


class Bucket:
    """The few storage calls a run's choice makes, in memory."""

    def __init__(self):
        self.objects: dict[str, tuple[object, datetime]] = {}

    def land(self, key: str, when: datetime) -> None:
        self.objects["incoming/" + key] = ({}, when)

    def list_objects(self, prefix, bucket=None):
        return [{"Key": k, "LastModified": when} for k, (_, when) in sorted(self.objects.items())
                if k.startswith(prefix)]

    def get_json(self, key):
        if key not in self.objects:
            raise FileNotFoundError(key)
        return self.objects[key][0]

    def put_if_absent(self, key, value):
        if key in self.objects:
            return False
        self.objects[key] = (value, EVENING)
        return True


def test_a_run_chooses_its_batches_once_and_a_re_run_reads_the_choice_back():
    bucket, record = Bucket(), RunLayout("b", "backfill__2026-11-03").key(BATCH_SELECTION)
    bucket.land("dt=2026-11-02/early/_BATCH.json", EVENING)
    bucket.land("dt=2026-13-45/bad/_BATCH.json", EVENING)
    first = choose_batches(bucket, record, BASE, "backfill__2026-11-03", "2026-11-03T00:00:00+00:00")
    assert [b.name for b in first.batches] == ["early"] and first.data_until == "2026-11-03T00:00:00+00:00"
    assert [r.marker for r in first.refused] == [f"{BASE}/dt=2026-13-45/bad/_BATCH.json"]
    bucket.land("dt=2026-11-02/straggler/_BATCH.json", EVENING)  # written late into an old date
    assert choose_batches(bucket, record, BASE, "backfill__2026-11-03", "2026-11-03T00:00:00+00:00") == first
    other = choose_batches(bucket, RunLayout("b", "other").key(BATCH_SELECTION), BASE, "other", "2026-11-03T00:00:00+00:00")
    assert [b.name for b in other.batches] == ["early", "straggler"]


def test_run_json_lists_the_batches_the_run_chose_and_those_it_refused():
    from types import SimpleNamespace

    from numtaflow.catalog import GATE, LINEAGE, METRICS
    from numtaflow.contracts import ValidateSummary
    from numtaflow.lineage import run_record

    bucket = Bucket()
    bucket.land("dt=2026-11-02/early/_BATCH.json", EVENING)
    bucket.land("date=2026-11-02/wrong/_BATCH.json", EVENING)
    run = RunLayout("b", "r")
    chosen = choose_batches(bucket, run.key(BATCH_SELECTION), BASE, "r", "2026-12-01T20:00:00+00:00")
    validate = ValidateSummary(inputs={}, data_until="2026-12-01", class_counts={}, incoming=chosen)
    step = {"started_at": "", "finished_at": "", "seconds": 1.0, "reused_from": None}
    featurized = SimpleNamespace(rows=10, reused=10, images_through_cnn=0)
    commits = {"validate": SimpleNamespace(summary=validate, **step),
               "sample": SimpleNamespace(summary=SimpleNamespace(model_dump=dict), **step),
               "featurize": SimpleNamespace(summary=SimpleNamespace(featurizer=lambda: SimpleNamespace(model_dump=dict),
                                                                    train=featurized, eval=featurized), **step)}
    record = run_record(bucket, run, commits, None, "asset_triggered", {})
    assert [b["uri"] for b in record["incoming"]["batches"]] == [f"{BASE}/dt=2026-11-02/early"]
    assert record["incoming"]["batches"][0]["arrived_at"] == "2026-12-01T20:00:00+00:00"
    assert [r["marker"] for r in record["incoming"]["refused"]] == [f"{BASE}/date=2026-11-02/wrong/_BATCH.json"]
    # the batch record, and what evaluate writes beside run.json
    assert record["artifacts"] == sorted(run.uri(a) for a in (BATCH_SELECTION, METRICS, GATE, LINEAGE))


def test_batch_ids_are_prefixed_by_partition_and_name():
    assert Batch("2026-11-02", "b1", "x").id_prefix == "dt=2026-11-02/b1/"


@pytest.mark.parametrize("name", ["../x", "_hidden", ".dot", "a/b", "", "x" * 200])
def test_unsafe_batch_names_are_refused(name):
    with pytest.raises(ValueError, match="batch name"):
        check_batch_name(name)


def test_ordinary_batch_names_pass():
    assert check_batch_name("batch-2026.11_02") == "batch-2026.11_02"


def test_the_watcher_keeps_watching_when_recording_fails_and_never_announces_twice(monkeypatch):
    """S3 refuses the ledger write once: the event is not repeated, the record is retried, polling goes on."""
    import numtaflow.incoming as incoming
    from numtaflow.storage import StorageError
    from numtaflow.triggers import NewBatchTrigger

    landed, recorded, attempts = batch("2026-12-02"), [], []

    def mark(storage, uri, batches):
        attempts.append([b.uri for b in batches])
        if len(attempts) == 1:
            raise StorageError("S3 is down")
        recorded.extend(batches)

    monkeypatch.setattr(incoming, "unannounced_batches",
                        lambda storage, uri: ([] if recorded else [landed], []))
    monkeypatch.setattr(incoming, "mark_announced", mark)

    async def events():
        run, found = NewBatchTrigger(BASE, poll_seconds=0.01).run(), []
        try:
            while True:
                found.append((await asyncio.wait_for(run.__anext__(), 0.5)).payload)
        except TimeoutError:
            return found
        finally:
            await run.aclose()

    assert asyncio.run(events()) == [{"batches": [landed.uri]}]
    assert recorded == [landed] and attempts == [[landed.uri], [landed.uri]]
