"""What a plain `models rollback` goes back to, from the champion's history."""

from __future__ import annotations

import pytest

from numtaflow.registry import rollback_target


def change(action: str, version: str) -> dict:
    return {"action": action, "version": version}


@pytest.mark.parametrize("changes, target", [
    ([change("promote", "a")], None),
    ([change("promote", "a"), change("promote", "b")], "a"),
    # each rollback undoes one more promotion instead of swapping the last two versions back and forth
    ([change("promote", "a"), change("promote", "b"), change("promote", "c"), change("rollback", "b")], "a"),
    ([change("promote", "a"), change("promote", "b"), change("rollback", "a")], None),
    # promoting the serving version again adds nothing to go back through
    ([change("promote", "a"), change("promote", "b"), change("promote", "b")], "a"),
    # a version named by hand (a repair) is served on top of what served before it
    ([change("promote", "a"), change("rollback", "z")], "a"),
    # a version promoted again later is gone back to where it served last
    ([change("promote", "a"), change("promote", "b"), change("promote", "a"), change("promote", "c"),
      change("rollback", "a")], "b"),
    # entries written before models were versioned name no version: nothing to serve again
    ([{"action": "promote", "run_id": "old"}, change("promote", "a"), change("promote", "b")], "a"),
])
def test_rollback_goes_back_one_promotion_at_a_time(changes, target):
    assert rollback_target(changes) == target
