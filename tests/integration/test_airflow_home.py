"""A home of its own for Airflow (``services.migrated_airflow_home``), as the tests and ``make bench-rerun``
use: the real ``airflow db migrate``; a database it cannot create fails with the home and Airflow's reason."""

from __future__ import annotations

import os

import pytest

from numtaflow.services import migrated_airflow_home

pytestmark = pytest.mark.integration


def test_a_home_whose_database_cannot_be_created_names_the_home_and_the_reason(tmp_path):
    unwritable = tmp_path / "missing-folder" / "airflow.db"  # sqlite creates the file, never its folder
    with pytest.raises(RuntimeError) as failed:
        migrated_airflow_home(tmp_path / "home", {**os.environ,
                                                  "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{unwritable}"})
    message = str(failed.value)
    assert f"airflow db migrate of {tmp_path / 'home'} failed" in message
    assert "unable to open database file" in message
