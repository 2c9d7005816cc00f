"""The "Models" pages shown inside the Airflow UI (mounted by ``plugins/numtaflow_models.py``):
the champion, training runs, model cards, and scoring runs with their reports and review galleries.

Everything is read from S3 with the project's own storage code and served through this app:
no bucket URL or presigned link ever reaches a page. The listing reads the small
``models/index.json`` the evaluate step maintains, so it stays fast as history grows.
The pages are rendered from ``templates/`` with every value escaped: run ids, reasons and the
mount prefix come from S3 or the request.
"""

import json
import re
from functools import partial

from .catalog import (GALLERY, LINEAGE, METRICS, MODEL_CARD_EXAMPLES, MODEL_CARD_FACTS, SCORING_INDEX_KEY, SCORING_REPORT,
                      SCORING_SERVED, SERVED, VERSION_FILES, RunLayout)
from .config import Settings
from .registry import VERSION_ID, RegistryError, read_champion, read_index, version_prefix
from .storage import Storage, s3_failure
from .templates import render

RUN_ID = re.compile(r"^(?!\.)[A-Za-z0-9._-]{1,200}$")  # as safe_run_id writes them: never "." or ".."
# a served artifact is shown as itself, never run as a page of the UI's origin (an HTML report holds file names)
ARTIFACT_HEADERS = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}
GALLERY_IMAGE = re.compile(r"gallery/(\d{1,4})\.png")
MOUNT = "/numtaflow"  # where the API server mounts this app (plugins/numtaflow_models.py)
# each page's path under the mount: the routes, the templates' links, the tasks' links and the CLI's hints
PAGES = {"run": "/runs/{run_id}", "version": "/versions/{version}", "scoring": "/scoring/{run_id}"}


def page_url(base: str, kind: str, **ids: str) -> str:
    """The URL of a ``kind`` page (``PAGES``) under ``base``: the mount, as the request reached it."""
    return base + PAGES[kind].format(**ids)


def render_page(template: str, base: str, **context) -> str:
    """A page, whose links go through ``page(kind, **ids)`` and ``base`` (the models page)."""
    return render(template, base=base, page=partial(page_url, base), **context)


def models_page(storage: Storage, base: str) -> str:
    try:
        champion, error = read_champion(storage)[0], None
    except RegistryError as broken:  # say so on the page: promotion is stopped until it is repaired
        champion, error = None, str(broken)
    runs = sorted(read_index(storage), key=lambda r: r.get("finished_at") or "", reverse=True)
    return render_page("models.html", base, title="NumtaDB models", champion=champion, champion_error=error,
                       runs=runs, scoring_runs=scoring_runs(storage))


def scoring_runs(storage: Storage, version: str | None = None) -> list[dict]:
    """Scoring runs, newest first (of one model version, if given)."""
    runs = [run for run in read_index(storage, SCORING_INDEX_KEY) if version in (None, run.get("version"))]
    return sorted(runs, key=lambda r: r.get("created_at") or "", reverse=True)


def run_page(storage: Storage, run_id: str, base: str) -> str:
    layout = RunLayout(storage.bucket, run_id)
    metrics = storage.get_json(layout.key(METRICS))
    record = storage.get_json(layout.key(LINEAGE))
    return render_page("run.html", base, title=f"Run {run_id}", run_id=run_id, metrics=metrics,
                       lr_params=json.dumps(metrics["lr_params"]), steps=record.get("steps", {}),
                       lineage=json.dumps(record, indent=2))


def version_page(storage: Storage, version: str, base: str) -> str:
    """A version's model card, from the facts written beside the model when it was registered."""
    card = storage.get_json(version_prefix(version) + MODEL_CARD_FACTS)
    return render_page("model_card.html", base, title=f"Model card: version {version}", card=card,
                       examples=MODEL_CARD_EXAMPLES, scoring_runs=scoring_runs(storage, version))


def scoring_page(storage: Storage, run_id: str, base: str) -> str:
    """A scoring run's report: what was scored with which model, drift, confidence, the review gallery."""
    report = storage.get_json(RunLayout.scoring(storage.bucket, run_id).key(SCORING_REPORT))
    return render_page("scoring.html", base, title=f"Scoring run {run_id}", run_id=run_id, report=report)


def scoring_file(storage: Storage, run_id: str, name: str) -> tuple[bytes, str]:
    """A served file of a scoring run: one the catalog serves, or a thumbnail of its review gallery."""
    layout = RunLayout.scoring(storage.bucket, run_id)
    gallery = GALLERY_IMAGE.fullmatch(name)
    if gallery:
        return storage.get_bytes(f"{layout.key(GALLERY)}/{gallery.group(1)}.png"), GALLERY.media_type
    artifact = SCORING_SERVED[name]
    return storage.get_bytes(layout.key(artifact)), artifact.media_type


def run_file(storage: Storage, run_id: str, name: str) -> tuple[bytes, str]:
    """A served artifact of a run (the catalog says which are served, and under which name)."""
    artifact = SERVED[name]
    return storage.get_bytes(RunLayout(storage.bucket, run_id).key(artifact)), artifact.media_type


def create_app(training: list | None = None, scoring: list | None = None, storage_factory=None):
    """The FastAPI app; ``training`` and ``scoring`` carry the API server's authorization checks for the
    pages of each DAG's runs (the models page and versions go with training)."""
    from fastapi import APIRouter, FastAPI, HTTPException, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    app = FastAPI(title="NumtaDB models")
    trained, scored = APIRouter(dependencies=training or []), APIRouter(dependencies=scoring or [])
    storage_factory = storage_factory or (lambda: Storage(Settings.from_env()))

    def checked(run_id: str) -> str:
        if not RUN_ID.match(run_id):
            raise HTTPException(status_code=400, detail="invalid run id")
        return run_id

    def served(read, missing: str):
        """``read(storage)``, or an HTTP error saying why not: 404 with what is ``missing`` when the bucket
        does not hold it, 503 when S3 cannot be read (unreachable, refused), 502 when a stored record
        cannot be shown (not JSON, a field missing), each in one line naming the object or the server."""
        from botocore.exceptions import BotoCoreError, ClientError
        from jinja2 import TemplateError

        storage = storage_factory()
        try:
            return read(storage)
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail=missing) from None
        except (BotoCoreError, ClientError) as error:
            detail = str(s3_failure(error, storage.settings.s3_endpoint, storage.bucket))
            raise HTTPException(status_code=503, detail=detail) from None
        except (ValueError, KeyError, TypeError, TemplateError) as error:
            detail = f"a stored record cannot be shown ({type(error).__name__}: {error})"
            raise HTTPException(status_code=502, detail=detail) from None

    def root(request: Request) -> str:
        return request.scope.get("root_path", "")

    @trained.get("/", response_class=HTMLResponse)
    def models(request: Request) -> str:
        return served(lambda storage: models_page(storage, root(request)), "no models index")

    @trained.get("/api/runs")
    def runs_json() -> JSONResponse:
        def listing(storage: Storage) -> JSONResponse:
            try:
                champion, error = read_champion(storage)[0], None
            except RegistryError as broken:  # shown, as on the models page, not a server error
                champion, error = None, str(broken)
            return JSONResponse({"champion": champion.model_dump(mode="json") if champion else None,
                                 "champion_error": error, "runs": read_index(storage)})

        return served(listing, "no models index")

    @trained.get(PAGES["run"], response_class=HTMLResponse)
    def run(run_id: str, request: Request) -> str:
        return served(lambda storage: run_page(storage, checked(run_id), root(request)),
                     f"run {run_id} has no evaluation yet")

    @trained.get(PAGES["version"], response_class=HTMLResponse)
    def version(version: str, request: Request) -> str:
        if not VERSION_ID.fullmatch(version):
            raise HTTPException(status_code=400, detail="invalid version")
        return served(lambda storage: version_page(storage, version, root(request)),
                     f"version {version} has no model card")

    @trained.get(PAGES["version"] + "/{name}")
    def version_file(version: str, name: str) -> Response:
        """The model card's text and its example images, as registered beside the model."""
        if not VERSION_ID.fullmatch(version) or name not in VERSION_FILES:
            raise HTTPException(status_code=404, detail="unknown version file")
        content = served(lambda storage: storage.get_bytes(version_prefix(version) + name),
                         f"version {version} has no {name}")
        return Response(content=content, media_type=VERSION_FILES[name], headers=ARTIFACT_HEADERS)

    @scored.get(PAGES["scoring"], response_class=HTMLResponse)
    def scoring(run_id: str, request: Request) -> str:
        return served(lambda storage: scoring_page(storage, checked(run_id), root(request)),
                     f"scoring run {run_id} has no report yet")

    @scored.get(PAGES["scoring"] + "/{name:path}")
    def scoring_artifact(run_id: str, name: str) -> Response:
        if name not in SCORING_SERVED and not GALLERY_IMAGE.fullmatch(name):
            raise HTTPException(status_code=404, detail="unknown scoring file")
        content, media_type = served(lambda storage: scoring_file(storage, checked(run_id), name),
                                     f"{name} not found for scoring run {run_id}")
        return Response(content=content, media_type=media_type, headers=ARTIFACT_HEADERS)

    @trained.get(PAGES["run"] + "/{name}")
    def artifact(run_id: str, name: str) -> Response:
        if name not in SERVED:
            raise HTTPException(status_code=404, detail="unknown artifact")
        content, media_type = served(lambda storage: run_file(storage, checked(run_id), name),
                                     f"{name} not found for run {run_id}")
        return Response(content=content, media_type=media_type, headers=ARTIFACT_HEADERS)

    app.include_router(trained)
    app.include_router(scored)
    return app
