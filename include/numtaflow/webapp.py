"""The "Models" pages shown inside the Airflow UI (mounted by ``plugins/numtaflow_models.py``).

Everything is read from S3 with the project's own storage code and served through this app:
no bucket URL or presigned link ever reaches a page. The listing reads the small
``models/index.json`` the evaluate step maintains, so it stays fast as history grows.
The pages are rendered from ``templates/`` with every value escaped: run ids, reasons and the
mount prefix come from S3 or the request.
"""

import json
import re

from .catalog import LINEAGE, METRICS, MODEL_CARD_FACTS, MODEL_CARD_TEXT, SERVED, RunLayout
from .config import Settings
from .registry import RegistryError, read_champion, read_index, version_prefix
from .storage import Storage
from .templates import render

RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
VERSION = re.compile(r"^[0-9a-f]{16}$")


def models_page(storage: Storage, base: str) -> str:
    try:
        champion, error = read_champion(storage)[0], None
    except RegistryError as broken:  # say so on the page: promotion is stopped until it is repaired
        champion, error = None, str(broken)
    runs = sorted(read_index(storage), key=lambda r: r.get("finished_at") or "", reverse=True)
    return render("models.html", title="NumtaDB models", base=base, champion=champion, champion_error=error,
                  runs=runs)


def run_page(storage: Storage, run_id: str, base: str) -> str:
    layout = RunLayout(storage.bucket, run_id)
    metrics = storage.get_json(layout.key(METRICS))
    record = storage.get_json(layout.key(LINEAGE))
    return render("run.html", title=f"Run {run_id}", base=base, run_id=run_id, metrics=metrics,
                  lr_params=json.dumps(metrics["lr_params"]), lineage=json.dumps(record, indent=2))


def version_page(storage: Storage, version: str, base: str) -> str:
    """A version's model card, from the facts written beside the model when it was registered."""
    card = storage.get_json(version_prefix(version) + MODEL_CARD_FACTS)
    return render("model_card.html", title=f"Model card: version {version}", base=base, card=card)


def run_file(storage: Storage, run_id: str, name: str) -> tuple[bytes, str]:
    """A served artifact of a run (the catalog says which are served, and under which name)."""
    artifact = SERVED[name]
    return storage.get_bytes(RunLayout(storage.bucket, run_id).key(artifact)), artifact.media_type


def create_app(dependencies: list | None = None, storage_factory=None):
    """The FastAPI app; ``dependencies`` carry the API server's authorization checks."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    app = FastAPI(title="NumtaDB models", dependencies=dependencies or [])
    storage_factory = storage_factory or (lambda: Storage(Settings.from_env()))

    def checked(run_id: str) -> str:
        if not RUN_ID.match(run_id):
            raise HTTPException(status_code=400, detail="invalid run id")
        return run_id

    @app.get("/", response_class=HTMLResponse)
    def models(request: Request) -> str:
        return models_page(storage_factory(), request.scope.get("root_path", ""))

    @app.get("/api/runs")
    def runs_json() -> JSONResponse:
        storage = storage_factory()
        champion, _ = read_champion(storage)
        return JSONResponse({"champion": champion.model_dump(mode="json") if champion else None,
                             "runs": read_index(storage)})

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(run_id: str, request: Request) -> str:
        try:
            return run_page(storage_factory(), checked(run_id), request.scope.get("root_path", ""))
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail=f"run {run_id} has no evaluation yet") from None

    @app.get("/versions/{version}", response_class=HTMLResponse)
    def version(version: str, request: Request) -> str:
        if not VERSION.match(version):
            raise HTTPException(status_code=400, detail="invalid version")
        try:
            return version_page(storage_factory(), version, request.scope.get("root_path", ""))
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail=f"version {version} has no model card") from None

    @app.get("/versions/{version}/" + MODEL_CARD_TEXT)
    def card_text(version: str) -> Response:
        if not VERSION.match(version):
            raise HTTPException(status_code=400, detail="invalid version")
        try:
            text = storage_factory().get_bytes(version_prefix(version) + MODEL_CARD_TEXT)
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail=f"version {version} has no model card") from None
        return Response(content=text, media_type="text/markdown; charset=utf-8")

    @app.get("/runs/{run_id}/{name}")
    def artifact(run_id: str, name: str) -> Response:
        if name not in SERVED:
            raise HTTPException(status_code=404, detail="unknown artifact")
        try:
            content, media_type = run_file(storage_factory(), checked(run_id), name)
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail=f"{name} not found for run {run_id}") from None
        return Response(content=content, media_type=media_type)

    return app
