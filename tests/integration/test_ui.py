"""The Models pages inside a real Airflow API server: login required, content checked in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from numtaflow.catalog import (CONFUSION, LINEAGE, METRICS, SCORED_BATCHES_KEY, SCORING_REPORT, STEPS,
                               VALIDATION_HTML, RunLayout)
from numtaflow.storage import safe_run_id
from tests.conftest import ROOT, layout

pytestmark = pytest.mark.integration
UI_PORT = 8790
DAG_ID = "numtadb_transfer_learning"
SCORING_DAG_ID = "numtadb_batch_predict"
BATCH_DAYS = ("2026-11-02", "2026-11-03")
SCREENSHOTS = Path(os.environ.get("NUMTAFLOW_SCREENSHOT_DIR", ROOT / ".local" / "screenshots"))


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory, s3_env, storage, featurizer_env):
    """Airflow (API server, scheduler, DAG processor, triggerer) on a test port, over the test bucket.

    Its DAG defaults point at small inputs, it is scheduled daily (for backfills) and on new
    batches: two batches land before it starts, so its watcher's first look starts one run. An
    unlabelled batch lands in the inbox too, for the scoring DAG's watcher.
    """
    from numtaflow.incoming import drop_batch, unlabelled_batch
    from numtaflow.services import (ensure_airflow_password, ensure_credentials, migrated_airflow_home, start_airflow,
                                    stop_airflow)
    from tests.conftest import make_numtadb, upload_folder

    home = tmp_path_factory.mktemp("airflow-ui")
    data = tmp_path_factory.mktemp("ui-data")
    train = upload_folder(storage, make_numtadb(data / "training-a", 5), "datasets/ui")
    evaluation = upload_folder(storage, make_numtadb(data / "training-c", 2, source="training-c"), "datasets/ui")
    incoming = f"s3://{storage.bucket}/incoming-ui"
    landing = make_numtadb(data / "landing", 2, source="training-c", offset=80)
    batches = [drop_batch(storage, str(landing), incoming, day, "digits", 1)[0] for day in BATCH_DAYS]
    inbox = f"s3://{storage.bucket}/inbox-ui"
    scans = make_numtadb(data / "scans", 1, source="training-c", offset=90)
    inbox_batch, _ = unlabelled_batch(storage, str(scans), inbox, BATCH_DAYS[0], "scans", 10, set())
    secrets_env = ensure_credentials(home / "secrets.env")
    password = ensure_airflow_password(home / "passwords.json")
    env = {**os.environ, **s3_env, **featurizer_env, "AIRFLOW__API__PORT": str(UI_PORT),
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets_env["AIRFLOW__API_AUTH__JWT_SECRET"],
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{UI_PORT}/execution/",
           "NUMTAFLOW_SCHEDULE": "@daily", "NUMTAFLOW_TRAIN_INPUT": train, "NUMTAFLOW_EVAL_INPUT": evaluation,
           "NUMTAFLOW_PER_CLASS": "4", "NUMTAFLOW_EVAL_PER_CLASS": "2", "NUMTAFLOW_MIN_ACCURACY": "0",
           "NUMTAFLOW_MIN_F1": "0", "NUMTAFLOW_INCOMING_INPUT": incoming, "NUMTAFLOW_INCOMING_POLL_SECONDS": "5",
           "NUMTAFLOW_INBOX_INPUT": inbox}
    env = migrated_airflow_home(home, env)
    start_airflow(home, UI_PORT, env=env)
    ui = {"url": f"http://127.0.0.1:{UI_PORT}", "password": password, "home": home, "env": env, "batches": batches,
          "inbox_batch": inbox_batch, "scans": data / "form-scans"}
    make_numtadb(ui["scans"], 1, source="training-c", offset=95)
    unpause(ui)
    unpause(ui, SCORING_DAG_ID)
    yield ui
    stop_airflow(home)


@pytest.fixture(scope="module")
def finished_run(storage):
    """A run with an evaluation in the test bucket (the DAG and job tests made some)."""
    from numtaflow.registry import read_index

    runs = [r for r in read_index(storage) if "metrics" in r]
    if not runs:
        pytest.fail("no finished run in the test bucket: run the integration suite as a whole")
    return max(runs, key=lambda r: r.get("finished_at") or "")["run_id"]


def get(url, token=None):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def token(ui):
    import urllib.request

    request = urllib.request.Request(f"{ui['url']}/auth/token", method="POST",
                                     data=json.dumps({"username": "admin", "password": ui["password"]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())["access_token"]


def listening_addresses(root_pids):
    """Every address a process tree listens on."""
    import psutil

    pids = set()
    for pid in root_pids:
        process = psutil.Process(pid)
        pids |= {pid} | {child.pid for child in process.children(recursive=True)}
    return {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in pids}


def test_embedded_services_listen_on_loopback_only(airflow_ui, s3_env):
    from numtaflow.services import AIRFLOW_COMPONENTS, running_pid

    airflow_pids = [running_pid(name, airflow_ui["home"]) for name in AIRFLOW_COMPONENTS]
    assert all(airflow_pids)
    weed = [p for p in __import__("psutil").process_iter(["name", "cmdline"])
            if p.info["name"] == "weed" and any(s3_env["NUMTAFLOW_S3_ENDPOINT"].rsplit(":", 1)[1] in a
                                                for a in p.info["cmdline"] or [])]
    assert weed, "the test S3 server is not running"
    addresses = listening_addresses(airflow_pids + [weed[0].pid])
    assert ("127.0.0.1", UI_PORT) in addresses
    assert addresses and all(ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1") for ip, _ in addresses), addresses


def test_anonymous_requests_are_refused(airflow_ui, finished_run):
    for path in ("/numtaflow/", f"/numtaflow/runs/{finished_run}",
                 f"/numtaflow/runs/{finished_run}/{CONFUSION['eval'].served_as}", "/numtaflow/api/runs"):
        status, _ = get(airflow_ui["url"] + path)
        assert status == 401, path
    status, _ = get(airflow_ui["url"] + "/numtaflow/", token="not-a-token")
    assert status in (401, 403)


def test_logged_in_user_sees_runs_and_evidence(airflow_ui, finished_run, storage):
    bearer = token(airflow_ui)
    status, page = get(airflow_ui["url"] + "/numtaflow/", bearer)
    assert status == 200 and finished_run.encode() in page
    status, page = get(f"{airflow_ui['url']}/numtaflow/runs/{finished_run}", bearer)
    accuracy = storage.get_json(layout(finished_run).key(METRICS))["accuracy"]
    assert status == 200 and f"{accuracy:.4f}".encode() in page
    status, image = get(f"{airflow_ui['url']}/numtaflow/runs/{finished_run}/{CONFUSION['eval'].served_as}", bearer)
    assert status == 200 and image.startswith(b"\x89PNG")
    status, report = get(f"{airflow_ui['url']}/numtaflow/runs/{finished_run}/{VALIDATION_HTML.served_as}", bearer)
    assert status == 200 and b"Input validation" in report
    links = re.findall(rb"(?:href|src)='([^']*)'", page)
    assert links and all(link.startswith(b"/numtaflow/") for link in links), links  # served by the app only
    assert b"X-Amz-" not in page
    status, _ = get(f"{airflow_ui['url']}/numtaflow/runs/..%2Fetc/{LINEAGE.served_as}", bearer)
    assert status in (400, 404)


@pytest.fixture(scope="module")
def browser(airflow_ui):
    """Headless Chromium logged in through Airflow's own login form."""
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.fail("Chromium and chromedriver are needed (make test installs Debian's chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1400"):
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(driver_path), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        chrome.get(airflow_ui["url"] + "/")
        wait = WebDriverWait(chrome, 60)
        wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
        chrome.find_element(By.NAME, "password").send_keys(airflow_ui["password"])
        chrome.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda b: "/auth/login" not in b.current_url and b.get_cookie("_token"))
        yield chrome
    finally:
        chrome.quit()


def test_run_page_in_chromium(airflow_ui, browser, finished_run, storage):
    """Open a finished run's page: the metrics and the confusion-matrix image are there."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{airflow_ui['url']}/numtaflow/runs/{finished_run}")
    wait.until(ec.presence_of_element_located((By.TAG_NAME, "img")))
    image = browser.find_element(By.TAG_NAME, "img")
    wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
    assert browser.execute_script("return arguments[0].naturalWidth", image) > 300
    accuracy = storage.get_json(layout(finished_run).key(METRICS))["accuracy"]
    assert f"{accuracy:.4f}" in browser.page_source
    assert "Gate:" in browser.page_source
    browser.save_screenshot(str(SCREENSHOTS / "run-page.png"))
    browser.get(airflow_ui["url"] + "/numtaflow/")
    assert finished_run in browser.page_source
    browser.save_screenshot(str(SCREENSHOTS / "models-page.png"))


def api(ui, method, path, body=None):
    import urllib.request

    request = urllib.request.Request(f"{ui['url']}/api/v2{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token(ui)}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def unpause(ui, dag_id=DAG_ID):
    deadline = time.time() + 120
    while True:  # the DAG processor needs a moment to parse the DAG
        try:
            api(ui, "PATCH", f"/dags/{dag_id}", {"is_paused": False})
            return
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(3)


def dag_runs(ui, dag_id=DAG_ID):
    return api(ui, "GET", f"/dags/{dag_id}/dagRuns?limit=100")["dag_runs"]


def wait_for_runs(ui, select, count, minutes=15, dag_id=DAG_ID):
    """Wait until ``count`` runs matching ``select`` have finished; returns them."""
    deadline = time.time() + minutes * 60
    while True:
        runs = [r for r in dag_runs(ui, dag_id) if select(r)]
        if len(runs) >= count and all(r["state"] in ("success", "failed") for r in runs):
            return runs
        assert time.time() < deadline, f"runs not finished after {minutes} minutes: {runs}"
        time.sleep(5)


def run_record(storage, run):
    return storage.get_json(layout(run["dag_run_id"]).key(LINEAGE))


def trigger_from_the_form(ui, browser, dag_id: str, form: dict, screenshot: str) -> dict:
    """Open a DAG's trigger form, type ``{section: ((field, value), ...)}``, trigger; the finished new run."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{ui['url']}/dags/{dag_id}")
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "button[aria-label='Trigger Dag']"))).click()

    def click(element):  # the dialog scrolls; a plain click can land on whatever covers the element
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        element.click()

    for section, fields in form.items():  # one section of the dialog is open at a time
        click(wait.until(ec.presence_of_element_located((By.XPATH, f"//button[normalize-space()='{section}']"))))
        for field, value in fields:
            element = wait.until(ec.visibility_of_element_located((By.NAME, f"element_{field}")))
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
            element.send_keys(Keys.CONTROL, "a")
            element.send_keys(value)
    browser.save_screenshot(str(SCREENSHOTS / screenshot))
    before = {r["dag_run_id"] for r in dag_runs(ui, dag_id)}
    click(browser.find_elements(By.XPATH, "//button[normalize-space()='Trigger']")[-1])
    (run,) = wait_for_runs(ui, lambda r: r["dag_run_id"] not in before and r["run_type"] == "manual", 1,
                           dag_id=dag_id)
    return run


def test_run_triggered_from_the_form_in_chromium(airflow_ui, browser, storage):
    """Open the trigger form, change a gate field, trigger, see it succeed. The data-arrival run saw the
    same data with the same other settings: the steps up to train take its output; canary and evaluate run."""
    (landed,) = wait_for_runs(airflow_ui, lambda r: r["run_type"] == "asset_triggered", 1)
    form = {"Gate": (("min_accuracy", "0.05"),)}
    run = trigger_from_the_form(airflow_ui, browser, DAG_ID, form, "trigger-form-filled.png")
    assert run["conf"]["min_accuracy"] == 0.05
    assert run["state"] == "success"
    record = run_record(storage, run)
    assert record["settings"]["min_accuracy"] == 0.05 and record["run_type"] == "manual"
    assert {step: times["reused_from"] for step, times in record["steps"].items()} == {
        **dict.fromkeys(("validate", "sample", "featurize", "train"), layout(landed["dag_run_id"]).run_id),
        "canary": None}
    metrics = storage.get_json(layout(run["dag_run_id"]).key(METRICS))
    assert metrics["per_class_sample"] == 4 and metrics["n_eval"] == 20


def test_new_batches_start_one_run_by_themselves(airflow_ui, storage):
    """Two batches landed before Airflow started: the watcher fires once, one run trains on both."""
    (run,) = wait_for_runs(airflow_ui, lambda r: r["run_type"] == "asset_triggered", 1)
    assert run["state"] == "success"
    record = run_record(storage, run)
    assert record["run_type"] == "asset_triggered" and record["logical_date"] in (None, "")
    assert [b["uri"] for b in record["inputs"]["train"]["batches"]] == [b.uri for b in airflow_ui["batches"]]
    assert record["sample"]["train"]["rows"] == 40
    time.sleep(12)  # two more polls of the watcher: the same data must not start another run
    assert len([r for r in dag_runs(airflow_ui) if r["run_type"] == "asset_triggered"]) == 1


def scoring_report(storage, run):
    return storage.get_json(RunLayout.scoring(storage.bucket, safe_run_id(run["dag_run_id"])).key(SCORING_REPORT))


def test_an_inbox_batch_starts_one_scoring_run_by_itself(airflow_ui, storage):
    """The unlabelled batch landed before Airflow started: one scoring run, by itself, scores it with the
    champion; later polls of the watcher start nothing more."""
    (run,) = wait_for_runs(airflow_ui, lambda r: r["run_type"] == "asset_triggered", 1, dag_id=SCORING_DAG_ID)
    assert run["state"] == "success"
    report = scoring_report(storage, run)
    assert report["inputs"] == [airflow_ui["inbox_batch"].uri] and report["images_scored"] == 10
    assert report["run_type"] == "asset_triggered" and report["model"]["requested"] == "champion"
    time.sleep(12)  # two more polls: the same batch must not start another scoring run
    assert len([r for r in dag_runs(airflow_ui, SCORING_DAG_ID) if r["run_type"] == "asset_triggered"]) == 1


def test_scoring_run_triggered_from_the_form_in_chromium(airflow_ui, browser, storage):
    """The scoring form: a folder of images and a smaller review gallery; the run's report page shows the
    gallery's images, which load behind the login only."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    form = {"Batch": (("scoring_input", str(airflow_ui["scans"])),), "Review": (("gallery_size", "4"),)}
    run = trigger_from_the_form(airflow_ui, browser, SCORING_DAG_ID, form, "scoring-form-filled.png")
    assert run["conf"]["scoring_input"] == str(airflow_ui["scans"]) and run["state"] == "success"
    report = scoring_report(storage, run)
    assert report["images_scored"] == 10 and len(report["gallery"]) == 4
    page = f"{airflow_ui['url']}/numtaflow/scoring/{safe_run_id(run['dag_run_id'])}"
    wait = WebDriverWait(browser, 60)
    browser.get(page)
    wait.until(lambda b: len(b.find_elements(By.TAG_NAME, "img")) == 4)
    images = browser.find_elements(By.TAG_NAME, "img")
    wait.until(lambda b: all(b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
                             for i in images))
    assert "10 images scored, 0 rejected" in browser.page_source
    browser.save_screenshot(str(SCREENSHOTS / "scoring-report.png"))
    for path in ("", "/gallery/0.png", "/predictions.csv"):
        assert get(page + path)[0] == 401, path  # anonymous
    status, image = get(page + "/gallery/0.png", token(airflow_ui))
    assert status == 200 and image.startswith(b"\x89PNG")


def task_states(ui, dag_id, run):
    """(state, try number) of each task of ``run``, and the text of each task's last try's log."""
    from urllib.parse import quote

    tasks = api(ui, "GET", f"/dags/{dag_id}/dagRuns/{quote(run['dag_run_id'], safe='')}/taskInstances")
    states = {t["task_id"]: (t["state"], t["try_number"]) for t in tasks["task_instances"]}
    logs = {path.parent.name.removeprefix("task_id="): path.read_text(errors="replace")
            for path in (ui["home"] / "logs").rglob(f"dag_id={dag_id}/run_id={run['dag_run_id']}/*/attempt=*.log")}
    return states, logs


def test_a_scoring_run_whose_batch_an_earlier_run_took_is_skipped(airflow_ui, storage):
    """Two batches landing a poll apart start two runs, and the first, if it checks after both landed,
    takes both. Here the batch is claimed before its marker commits: the run its arrival starts has
    nothing to do, and ends green with its tasks skipped, at the first try."""
    from numtaflow.incoming import unlabelled_batch
    from numtaflow.registry import cas_update

    inbox = airflow_ui["env"]["NUMTAFLOW_INBOX_INPUT"]
    before = {r["dag_run_id"] for r in dag_runs(airflow_ui, SCORING_DAG_ID)}
    taken = f"{inbox}/dt={BATCH_DAYS[1]}/taken"
    cas_update(storage, SCORED_BATCHES_KEY, lambda owners: {**(owners or {}), taken: "manual__earlier"}, "a test")
    unlabelled_batch(storage, str(airflow_ui["scans"]), inbox, BATCH_DAYS[1], "taken", 2, set())
    (run,) = wait_for_runs(airflow_ui, lambda r: r["dag_run_id"] not in before, 1, dag_id=SCORING_DAG_ID)
    assert run["run_type"] == "asset_triggered" and run["state"] == "success"
    states, logs = task_states(airflow_ui, SCORING_DAG_ID, run)
    assert states["check_batch"] == ("skipped", 1)
    assert states["score_batch"][0] == states["report_batch"][0] == "skipped"
    assert "was claimed by a scoring run that started earlier" in logs["check_batch"]
    assert storage.get_json(SCORED_BATCHES_KEY)[taken] == "manual__earlier"


def test_a_refused_scoring_input_fails_at_once_without_retries(airflow_ui, tmp_path):
    """A folder with nothing scorable fails check_batch at its first try: its retries would refuse it
    again, half a minute and more later each."""
    (tmp_path / "notes.png").write_text("not a scan")
    run_id = "manual__nothing_scorable"
    api(airflow_ui, "POST", f"/dags/{SCORING_DAG_ID}/dagRuns",
        {"dag_run_id": run_id, "logical_date": None, "conf": {"scoring_input": str(tmp_path)}})
    (run,) = wait_for_runs(airflow_ui, lambda r: r["dag_run_id"] == run_id, 1, dag_id=SCORING_DAG_ID)
    assert run["state"] == "failed"
    states, logs = task_states(airflow_ui, SCORING_DAG_ID, run)
    assert states["check_batch"] == ("failed", 1) and states["score_batch"][0] == "upstream_failed"
    assert "notes.png: not an image" in logs["check_batch"] and "refused its input or settings" in logs["check_batch"]
    assert "it is not retried" in logs["check_batch"]


def backfill(ui, *extra):
    """``airflow backfill create``, once the DAG's previous backfill (one at a time) is complete."""
    deadline = time.time() + 300
    while any(b["completed_at"] is None for b in api(ui, "GET", f"/backfills?dag_id={DAG_ID}")["backfills"]):
        assert time.time() < deadline, "the previous backfill was never marked complete"
        time.sleep(3)
    command = ["airflow", "backfill", "create", "--dag-id", DAG_ID, *extra]
    for _ in range(10):
        result = subprocess.run(command, env=ui["env"], capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        # the embedded SQLite: a scheduler busy on two cores can hold its lock past the 60 s wait; and the
        # command was once refused as "another backfill is running" just after the API listed none running
        retryable = "database is locked" in output or "AlreadyRunningBackfill" in output
        if not retryable or time.time() > deadline:
            break
        time.sleep(3)
    assert result.returncode == 0, output[-3000:]


def test_backfill_runs_each_date_on_the_data_landed_by_then(airflow_ui, storage):
    """One run per date, two at once; each sees the batches up to its date; the champion moves only by CAS."""
    backfill(airflow_ui, "--from-date", BATCH_DAYS[0], "--to-date", BATCH_DAYS[1], "--max-active-runs", "2")
    runs = wait_for_runs(airflow_ui, lambda r: r["run_type"] == "backfill", 2)
    assert sorted(r["logical_date"][:10] for r in runs) == list(BATCH_DAYS)
    assert {r["state"] for r in runs} == {"success"}
    assert max(r["start_date"] for r in runs) < min(r["end_date"] for r in runs), "the two runs never overlapped"
    for run in runs:
        record = run_record(storage, run)
        landed = [b.uri for b in airflow_ui["batches"] if b.day <= run["logical_date"][:10]]
        assert [b["uri"] for b in record["inputs"]["train"]["batches"]] == landed
        assert record["data_until"] == run["logical_date"][:10]
    from numtaflow.registry import read_champion, read_index

    index = {r["run_id"] for r in read_index(storage)}
    assert {safe_run_id(r["dag_run_id"]) for r in runs} <= index  # concurrent index updates lost nothing
    champion, _ = read_champion(storage)
    assert champion.run_id in index


def test_rerunning_a_date_reproduces_it_and_touches_nothing_else(airflow_ui, storage):
    """The same date, data and settings: the steps up to train are reused (what they read did not change), the
    canary and evaluate run again to the same metrics, and other runs stay as they were. That a run computed
    again gives the same model is test_jobs' (reuse off)."""
    first, second = sorted(wait_for_runs(airflow_ui, lambda r: r["run_type"] == "backfill", 2),
                           key=lambda r: r["logical_date"])
    first_run, second_run = layout(first["dag_run_id"]), layout(second["dag_run_id"])
    first_metrics, first_sample = first_run.key(METRICS), first_run.marker_key("sample")
    first_evaluate, second_evaluate = first_run.marker_key("evaluate"), second_run.marker_key("evaluate")
    before = {key: storage.get_json(key) for key in (first_metrics, first_sample, second_evaluate)}
    backfill(airflow_ui, "--from-date", BATCH_DAYS[0], "--to-date", BATCH_DAYS[0], "--reprocess-behavior",
             "completed")
    done_before = storage.get_json(first_evaluate)["finished_at"]
    deadline = time.time() + 900
    while (storage.committed_step(first_run, "evaluate") or {"finished_at": ""})["finished_at"] <= done_before:
        assert time.time() < deadline, "the re-run did not finish in 15 minutes"
        time.sleep(5)
    rerun_sample = storage.get_json(first_sample)
    assert rerun_sample["started_at"] >= before[first_sample]["finished_at"]
    # nothing it reads changed: the steps up to train kept their committed output, canary and evaluate ran
    reused = {step: storage.get_json(first_run.marker_key(step))["reused_from"] for step in STEPS}
    assert reused == {**dict.fromkeys(("validate", "sample", "featurize", "train"), first_run.run_id),
                      "canary": None, "evaluate": None}
    metrics = storage.get_json(first_metrics)
    for key in ("accuracy", "f1", "precision", "recall", "roc_auc", "confusion_matrix"):
        assert metrics[key] == before[first_metrics][key], key
    assert storage.get_json(second_evaluate) == before[second_evaluate]


def test_task_logs_of_scheduled_runs_never_show_the_secret(airflow_ui):
    logs = [path for path in (airflow_ui["home"] / "logs").rglob("*") if path.is_file()]
    assert len(logs) >= 10
    text = "\n".join(path.read_text(errors="replace") for path in logs)
    assert "spark-submit" in text.lower()
    for secret in (airflow_ui["env"]["AWS_SECRET_ACCESS_KEY"], airflow_ui["env"]["AWS_ACCESS_KEY_ID"]):
        assert secret not in text
