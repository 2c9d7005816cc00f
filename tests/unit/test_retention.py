from datetime import datetime, timedelta, timezone

from numtaflow.catalog import FEATURES, HOLDOUT, METRICS, SAMPLED_IMAGES, SCORABLE, VALIDATED_IMAGES, RunLayout
from numtaflow.retention import AREAS, being_rewritten, intermediates, prunable

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)


def run(run_id, days_ago):
    return {"run_id": run_id, "finished_at": None if days_ago is None else (NOW - timedelta(days=days_ago)).isoformat()}


def test_runs_beyond_the_newest_and_older_than_the_limit_are_pruned():
    runs = [run("a", 30), run("b", 1), run("c", 20), run("d", 10), run("e", 40), run("running", None)]
    assert prunable(runs, "finished_at", keep=2, older_than=timedelta(days=7), now=NOW) == ["d", "c", "a", "e"]
    # the run without a finishing time counts among the newest two, so "b" is the other kept one
    assert prunable(runs, "finished_at", keep=3, older_than=timedelta(days=15), now=NOW) == ["c", "a", "e"]
    assert prunable(runs, "finished_at", keep=0, older_than=timedelta(days=0), now=NOW) == ["b", "d", "c", "a", "e"]
    assert prunable(runs, "finished_at", keep=10, older_than=timedelta(0), now=NOW) == []


def test_only_the_working_data_is_pruned_never_the_evidence_or_the_model():
    training, scoring = ({step: artifacts for step, artifacts in intermediates(area)} for area in AREAS)
    assert training == {"validate": list(VALIDATED_IMAGES.values()), "sample": list(SAMPLED_IMAGES.values()),
                        "featurize": list(FEATURES.values()), "train": [HOLDOUT]}
    assert scoring == {"check_batch": [SCORABLE]}


def test_a_run_written_after_its_last_step_committed_is_being_rerun_and_left_alone():
    def listed(*objects):
        return [{"Key": key, "LastModified": NOW + timedelta(seconds=second)} for key, second in objects]

    run = RunLayout("bucket", "r")
    last = run.marker_key("evaluate")
    finished = listed((run.key(FEATURES["train"]) + "/part-0", -60), (last, 0), (run.key(METRICS), 0))
    assert not being_rewritten(finished, last)
    assert being_rewritten(finished + listed((run.marker_key("validate"), 1)), last)  # a re-run began
    assert being_rewritten([o for o in finished if o["Key"] != last], last)  # evaluate cleared, or never finished


class ListedBucket:
    """A run's objects as listed once; ``after_listing`` is what a re-run changes before the deletes."""

    def __init__(self, objects: dict[str, str], after_listing: dict[str, str]):
        self.objects, self.after_listing, self.deleted = dict(objects), after_listing, []

    def list_objects(self, prefix):
        listed = [{"Key": key, "ETag": etag, "Size": 10, "LastModified": NOW}
                  for key, etag in self.objects.items() if key.startswith(prefix)]
        self.objects.update(self.after_listing)  # the re-run writes while the prune goes on
        return listed

    def etag(self, key):
        return self.objects.get(key)

    def delete(self, key):
        self.deleted.append(key)

    def delete_keys(self, keys, where):
        self.deleted.extend(keys)


def test_a_prune_deletes_only_what_it_listed_and_stops_when_a_rerun_rewrites_the_run():
    from numtaflow.retention import prune_run

    training, run = AREAS[0], RunLayout("bucket", "r")
    last = run.marker_key("evaluate")
    listed = {last: '"e1"', run.marker_key("featurize"): '"f1"', run.key(FEATURES["train"]) + "/part-0": '"p"',
              run.key(METRICS): '"m"'}
    written_since = {run.key(FEATURES["train"]) + "/part-1": '"new"'}
    quiet = ListedBucket(listed, written_since)
    assert prune_run(quiet, run, training).bytes == 10 and not prune_run(ListedBucket(listed, {}), run, training).busy
    assert quiet.deleted == [run.marker_key("featurize"), run.key(FEATURES["train"]) + "/part-0"]  # not part-1
    for recommitted in (last, run.marker_key("featurize")):  # by a re-run, meanwhile
        rerun = ListedBucket(listed, {recommitted: '"again"'})
        pruned = prune_run(rerun, run, training)
        assert pruned.busy and pruned.bytes == 0 and rerun.deleted == [], recommitted
