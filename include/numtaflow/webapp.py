"""The "Models" pages shown inside the Airflow UI (mounted by ``plugins/numtaflow_models.py``).

Everything is read from S3 with the project's own storage code and served through this app:
no bucket URL or presigned link ever reaches a page. The listing reads the small
``models/index.json`` the evaluate step maintains, so it stays fast as history grows.
"""


import html
import json
import re

from .config import Settings
from .registry import read_champion, read_index
from .storage import RunLayout, Storage

RUN_ID = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
FILES = {
    "confusion_eval.png": ("evaluate", "image/png"),
    "confusion_split.png": ("evaluate", "image/png"),
    "validation.html": ("validate/report.html", "text/html; charset=utf-8"),
    "metrics.json": ("evaluate", "application/json"),
    "run.json": ("", "application/json"),
}
STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;"
    "margin:0.5em 0 1.5em}td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}th{background:#f4f4f4}"
    ".ok{color:#176f2c;font-weight:600}.no{color:#b00020;font-weight:600}pre{background:#f7f7f7;padding:1em;"
    "overflow:auto;max-height:30em}img{max-width:640px;border:1px solid #ddd}</style>"
)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}"
            f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def _metric(value) -> str:
    return "–" if value is None else f"{value:.4f}"


def models_page(storage: Storage, base: str) -> str:
    champion, _ = read_champion(storage)
    runs = sorted(read_index(storage), key=lambda r: r.get("finished_at") or "", reverse=True)
    if champion:
        m = champion.get("metrics", {})
        head = (f"<h2>Champion</h2><p><a href='{base}/runs/{html.escape(champion['run_id'])}'>"
                f"{html.escape(champion['run_id'])}</a>, {html.escape(champion.get('settings', {}).get('backbone', ''))}, "
                f"accuracy {_metric(m.get('accuracy'))}, F1 {_metric(m.get('f1'))}, promoted "
                f"{html.escape(str(champion.get('changed_at')))} ({html.escape(champion.get('action', ''))})</p>"
                "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in champion.get("reasons", [])) + "</ul>")
    else:
        head = "<h2>Champion</h2><p>No model has been promoted yet.</p>"
    rows = "".join(
        f"<tr><td><a href='{base}/runs/{html.escape(r['run_id'])}'>{html.escape(r['run_id'])}</a></td>"
        f"<td>{html.escape(str(r.get('run_type')))}</td><td>{html.escape(str(r.get('finished_at')))}</td>"
        f"<td>{html.escape(str(r.get('backbone')))}</td><td>{_metric(r['metrics'].get('accuracy'))}</td>"
        f"<td>{_metric(r['metrics'].get('f1'))}</td><td>{_metric(r['metrics'].get('roc_auc'))}</td>"
        f"<td class='{'ok' if r.get('promoted') else 'no'}'>{'promoted' if r.get('promoted') else 'rejected'}</td>"
        f"<td>{html.escape('; '.join(r.get('reasons', [])))}</td></tr>"
        for r in runs
    )
    table = ("<h2>Runs</h2><table><tr><th>run</th><th>type</th><th>finished</th><th>backbone</th><th>accuracy</th>"
             f"<th>F1</th><th>ROC AUC</th><th>gate</th><th>reasons</th></tr>{rows}</table>")
    return _page("NumtaDB models", head + table)


def run_page(storage: Storage, run_id: str, base: str) -> str:
    layout = RunLayout(storage.bucket, run_id)
    metrics = storage.get_json(layout.key("evaluate", "metrics.json"))
    record = storage.get_json(layout.run_record_key)
    gate = metrics["gate"]
    summary = "".join(
        f"<tr><th>{name}</th><td>{_metric(metrics.get(key))}</td><td>{_metric(metrics['split'].get(key))}</td></tr>"
        for name, key in (("accuracy", "accuracy"), ("F1 (weighted)", "f1"), ("precision", "precision"),
                          ("recall", "recall"), ("ROC AUC (OvR)", "roc_auc"))
    )
    per_class = "".join(
        f"<tr><td>{label}</td><td>{_metric(v['precision'])}</td><td>{_metric(v['recall'])}</td>"
        f"<td>{_metric(v['f1'])}</td><td>{v['support']}</td></tr>"
        for label, v in metrics["per_class"].items()
    )
    run = html.escape(run_id)
    body = (
        f"<p><a href='{base}/'>all models</a> · backbone {html.escape(metrics['backbone'])}, "
        f"{metrics['per_class_sample']} images per class, seed {metrics['seed']}, LR "
        f"{html.escape(json.dumps(metrics['lr_params']))}</p>"
        f"<h2>Gate: <span class='{'ok' if gate['promoted'] else 'no'}'>"
        f"{'promoted' if gate['promoted'] else 'not promoted'}</span></h2><ul>"
        + "".join(f"<li>{html.escape(r)}</li>" for r in gate["reasons"])
        + f"</ul><p>champion before: {html.escape(str(gate['champion_before']))}, after: "
        f"{html.escape(str(gate['champion_after']))}; {html.escape(str(gate.get('compared_with')))}</p>"
        f"<h2>Metrics</h2><table><tr><th></th><th>independent set (n={metrics['n_eval']})</th>"
        f"<th>20% split (n={metrics['n_split_test']})</th></tr>{summary}</table>"
        f"<h2>Confusion matrix (independent set)</h2><img alt='confusion matrix' src='{base}/runs/{run}/confusion_eval.png'>"
        f"<h2>Per class (independent set)</h2><table><tr><th>digit</th><th>precision</th><th>recall</th><th>F1</th>"
        f"<th>support</th></tr>{per_class}</table>"
        f"<h2>Evidence</h2><ul><li><a href='{base}/runs/{run}/validation.html'>Great Expectations validation report</a></li>"
        f"<li><a href='{base}/runs/{run}/confusion_split.png'>confusion matrix, 20% split</a></li>"
        f"<li><a href='{base}/runs/{run}/metrics.json'>metrics.json</a></li>"
        f"<li><a href='{base}/runs/{run}/run.json'>run.json (lineage)</a></li></ul>"
        f"<h2>Lineage</h2><pre>{html.escape(json.dumps(record, indent=2))}</pre>"
    )
    return _page(f"Run {run_id}", body)


def run_file(storage: Storage, run_id: str, name: str) -> tuple[bytes, str]:
    where, media_type = FILES[name]
    layout = RunLayout(storage.bucket, run_id)
    if name == "run.json":
        return storage.get_bytes(layout.run_record_key), media_type
    key = f"runs/{run_id}/{where}" if "/" in where else layout.key(where, name)
    return storage.get_bytes(key), media_type


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
        return JSONResponse({"champion": champion, "runs": read_index(storage)})

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run(run_id: str, request: Request) -> str:
        try:
            return run_page(storage_factory(), checked(run_id), request.scope.get("root_path", ""))
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail=f"run {run_id} has no evaluation yet") from None

    @app.get("/runs/{run_id}/{name}")
    def artifact(run_id: str, name: str) -> Response:
        if name not in FILES:
            raise HTTPException(status_code=404, detail="unknown artifact")
        try:
            content, media_type = run_file(storage_factory(), checked(run_id), name)
        except FileNotFoundError:
            raise HTTPException(status_code=404, detail=f"{name} not found for run {run_id}") from None
        return Response(content=content, media_type=media_type)

    return app
