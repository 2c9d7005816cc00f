"""Which cache folders and parts pruning deletes: only what this code can never read, nothing recent."""

from datetime import datetime, timedelta, timezone

from numtaflow.caches import GRACE, current_codes, group, prunable

PREFIX = "cache/features/"
NOW = datetime(2026, 12, 4, 12, tzinfo=timezone.utc)
OLD = NOW - GRACE - timedelta(hours=1)


def listing(*objects):
    """(key below PREFIX, size, last modified) -> list_objects rows."""
    return [{"Key": PREFIX + key, "Size": size, "LastModified": modified} for key, size, modified in objects]


def folders(objects, markers):
    return group("features", PREFIX, listing(*objects), {PREFIX + key: value for key, value in markers.items()})


def test_parts_are_grouped_by_folder_with_their_markers_rows_and_bytes():
    found = folders([("k1/run1-train/part-0.parquet", 100, OLD), ("k1/run1-train/_COMMITTED.json", 10, OLD),
                     ("k1/run2-train/part-0.parquet", 50, NOW), ("k2/run1-eval/part-0.parquet", 7, OLD),
                     ("k2/run1-eval/_COMMITTED.json", 3, OLD), ("k2/stray", 1, OLD)],
                    {"k1/run1-train/_COMMITTED.json": {"rows": 4, "code": "a"},
                     "k2/run1-eval/_COMMITTED.json": {"rows": 2, "code": "b"}})
    assert [(f.key, f.prefix, len(f.parts), f.rows, f.bytes) for f in found] == [
        ("k1", PREFIX + "k1/", 2, 4, 160), ("k2", PREFIX + "k2/", 1, 2, 10)]
    assert found[0].parts[1].marker is None and found[0].last_modified == NOW
    assert found[0].written_by("a") and not found[0].written_by("b") and found[1].written_by("b")


def test_a_marker_that_is_not_a_json_object_counts_as_none():
    found = folders([("k1/run1-train/part-0.parquet", 1, OLD), ("k1/run1-train/_COMMITTED.json", 1, OLD),
                     ("k1/run2-train/part-0.parquet", 1, OLD), ("k1/run2-train/_COMMITTED.json", 1, OLD)],
                    {"k1/run1-train/_COMMITTED.json": ["rows", 4], "k1/run2-train/_COMMITTED.json": None})
    assert [part.marker for part in found[0].parts] == [None, None] and not found[0].written_by("a")
    assert prunable(found, {"features": "a"}, NOW) == [PREFIX + "k1/"]


def test_folders_this_code_never_wrote_go_and_its_own_keep_all_but_old_crashed_parts():
    found = folders([("mine/run1-train/part-0.parquet", 1, OLD), ("mine/run1-train/_COMMITTED.json", 1, OLD),
                     ("mine/crashed-train/part-0.parquet", 1, OLD), ("mine/writing-train/part-0.parquet", 1, NOW),
                     ("old/run1-train/part-0.parquet", 1, OLD), ("old/run1-train/_COMMITTED.json", 1, OLD),
                     ("unmarked/run1-train/part-0.parquet", 1, OLD), ("unmarked/run1-train/_COMMITTED.json", 1, OLD)],
                    {"mine/run1-train/_COMMITTED.json": {"rows": 1, "code": "this"},
                     "old/run1-train/_COMMITTED.json": {"rows": 1, "code": "before"},
                     "unmarked/run1-train/_COMMITTED.json": {"rows": 1}})  # written before markers named their code
    assert prunable(found, {"features": "this"}, NOW) == [
        PREFIX + "mine/crashed-train/", PREFIX + "old/", PREFIX + "unmarked/"]


def test_nothing_modified_within_the_grace_period_goes():
    found = folders([("old/run1-train/part-0.parquet", 1, OLD), ("old/run1-train/_COMMITTED.json", 1, OLD),
                     ("old/run2-train/part-0.parquet", 1, NOW - GRACE / 2),  # a run of other code writing now
                     ("new/run1-train/part-0.parquet", 1, NOW)],  # this code's first part, not yet committed
                    {"old/run1-train/_COMMITTED.json": {"rows": 1, "code": "before"}})
    assert prunable(found, {"features": "this"}, NOW) == []
    assert prunable(found, {"features": "this"}, NOW + GRACE * 2) == [PREFIX + "new/", PREFIX + "old/"]


def test_each_cache_has_the_code_version_its_entries_are_made_by():
    codes = current_codes()
    assert set(codes) == {"inspections", "features"} and all(len(code) == 64 for code in codes.values())
    assert codes["inspections"] != codes["features"]
