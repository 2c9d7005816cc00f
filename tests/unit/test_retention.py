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
