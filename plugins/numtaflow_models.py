"""Airflow plugin: a "Models" page (champion, runs, gate decisions, evidence, lineage, scoring runs) in the UI.

The FastAPI app is mounted on the API server under ``/numtaflow`` and protected by the API
server's own authorization: a user must be allowed to read runs of the training DAG for the models
page, training runs and versions, and runs of the scoring DAG for scoring runs' pages and files.
Each task of both DAGs gets an extra link to its run's page (a training run's or a scoring run's).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from numtaflow.catalog import DAG_ID, SCORING_DAG_ID
from numtaflow.webapp import MOUNT, page_url


def _app():
    from fastapi import Depends

    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from numtaflow.webapp import create_app

    def reads_runs_of(dag_id: str) -> list:
        return [Depends(requires_access_dag("GET", DagAccessEntity.RUN, param_dag_id=dag_id))]

    return create_app(training=reads_runs_of(DAG_ID), scoring=reads_runs_of(SCORING_DAG_ID))


class RunPageLink(BaseOperatorLink):
    """From any task of the workflows to its run's page (metrics, gate, evidence; or a batch's report)."""

    name = "Run page (models)"

    def get_link(self, operator, *, ti_key) -> str:
        pages = {DAG_ID: "run", SCORING_DAG_ID: "scoring"}
        if ti_key.dag_id not in pages:
            return ""
        from numtaflow.storage import safe_run_id

        return page_url(MOUNT, pages[ti_key.dag_id], run_id=safe_run_id(ti_key.run_id))


class NumtaflowModelsPlugin(AirflowPlugin):
    name = "numtaflow_models"
    fastapi_apps = [{"app": _app(), "url_prefix": MOUNT, "name": "NumtaDB models"}]
    external_views = [
        {"name": "Models", "href": f"{MOUNT}/", "destination": "nav", "url_route": "numtaflow-models"}
    ]
    global_operator_extra_links = [RunPageLink()]
