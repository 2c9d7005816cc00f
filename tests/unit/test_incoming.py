"""Landed batches: which count, which a run for a given day sees, and how that day is found."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from numtaflow.incoming import Batch, batches_from_keys, batches_until, check_batch_name, data_cutoff

BASE = "s3://numtaflow/incoming"


def test_only_batches_with_a_marker_count():
    keys = ["dt=2026-11-02/b1/_BATCH.json", "dt=2026-11-02/b1/c1.png", "dt=2026-11-03/half/c2.png",
            "dt=2026-11-01/b0/_BATCH.json", "dt=2026-11-04/b2/sub/_BATCH.json", "dt=11-04/b3/_BATCH.json",
            "_ANNOUNCED.json"]
    assert batches_from_keys(BASE + "/", keys) == [
        Batch("2026-11-01", "b0", f"{BASE}/dt=2026-11-01/b0"),
        Batch("2026-11-02", "b1", f"{BASE}/dt=2026-11-02/b1"),
    ]


def test_a_run_sees_batches_up_to_and_including_its_day():
    batches = [Batch(day, "b", f"{BASE}/dt={day}/b") for day in ("2026-11-01", "2026-11-02", "2026-11-03")]
    assert [b.day for b in batches_until(batches, date(2026, 11, 2))] == ["2026-11-01", "2026-11-02"]
    assert batches_until(batches, date(2026, 10, 31)) == []


def test_data_cutoff_is_the_utc_day_of_the_logical_date():
    assert data_cutoff("2026-11-02T00:00:00+00:00") == date(2026, 11, 2)
    assert data_cutoff("2026-11-02T23:30:00-02:00") == date(2026, 11, 3)  # 01:30 UTC next day
    assert data_cutoff("2026-11-02T10:00:00Z") == date(2026, 11, 2)
    assert data_cutoff("", now=datetime(2026, 11, 5, 1, tzinfo=timezone.utc)) == date(2026, 11, 5)
    assert data_cutoff(None, now=datetime(2026, 11, 5, 1, tzinfo=timezone.utc)) == date(2026, 11, 5)


def test_batch_ids_are_prefixed_by_partition_and_name():
    assert Batch("2026-11-02", "b1", "x").id_prefix == "dt=2026-11-02/b1/"


@pytest.mark.parametrize("name", ["../x", "_hidden", ".dot", "a/b", "", "x" * 200])
def test_unsafe_batch_names_are_refused(name):
    with pytest.raises(ValueError, match="batch name"):
        check_batch_name(name)


def test_ordinary_batch_names_pass():
    assert check_batch_name("batch-2026.11_02") == "batch-2026.11_02"
