"""The Models pages inside a real Airflow API server: login required, content checked in Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration
UI_PORT = 8790
SCREENSHOTS = Path(os.environ.get("NUMTAFLOW_SCREENSHOT_DIR", ROOT / ".local" / "screenshots"))


@pytest.fixture(scope="module")
def airflow_ui(tmp_path_factory, s3_env, storage, featurizer_env):
    from numtaflow.services import ensure_airflow_password, ensure_credentials, start_airflow, stop_airflow

    home = tmp_path_factory.mktemp("airflow-ui")
    secrets_env = ensure_credentials(home / "secrets.env")
    password = ensure_airflow_password(home / "passwords.json")
    env = {**os.environ, **s3_env, **featurizer_env, "AIRFLOW_HOME": str(home), "AIRFLOW__API__PORT": str(UI_PORT),
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets_env["AIRFLOW__API_AUTH__JWT_SECRET"],
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{UI_PORT}/execution/",
           "NUMTAFLOW_SCHEDULE": "none"}
    migrate = subprocess.run(["airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    start_airflow(home, UI_PORT, env=env)
    yield {"url": f"http://127.0.0.1:{UI_PORT}", "password": password, "home": home}
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
    for path in ("/numtaflow/", f"/numtaflow/runs/{finished_run}", f"/numtaflow/runs/{finished_run}/confusion_eval.png",
                 "/numtaflow/api/runs"):
        status, _ = get(airflow_ui["url"] + path)
        assert status == 401, path
    status, _ = get(airflow_ui["url"] + "/numtaflow/", token="not-a-token")
    assert status in (401, 403)


def test_logged_in_user_sees_runs_and_evidence(airflow_ui, finished_run, storage):
    bearer = token(airflow_ui)
    status, page = get(airflow_ui["url"] + "/numtaflow/", bearer)
    assert status == 200 and finished_run.encode() in page
    status, page = get(f"{airflow_ui['url']}/numtaflow/runs/{finished_run}", bearer)
    accuracy = storage.get_json(f"runs/{finished_run}/evaluate/metrics.json")["accuracy"]
    assert status == 200 and f"{accuracy:.4f}".encode() in page
    status, image = get(f"{airflow_ui['url']}/numtaflow/runs/{finished_run}/confusion_eval.png", bearer)
    assert status == 200 and image.startswith(b"\x89PNG")
    status, report = get(f"{airflow_ui['url']}/numtaflow/runs/{finished_run}/validation.html", bearer)
    assert status == 200 and b"Input validation" in report
    links = re.findall(rb"(?:href|src)='([^']*)'", page)
    assert links and all(link.startswith(b"/numtaflow/") for link in links), links  # served by the app only
    assert b"X-Amz-" not in page
    status, _ = get(f"{airflow_ui['url']}/numtaflow/runs/..%2Fetc/run.json", bearer)
    assert status in (400, 404)


def test_run_page_in_chromium(airflow_ui, finished_run, storage):
    """Log in through Airflow's own login form, open the run page, check metrics and the image."""
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
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        browser.get(airflow_ui["url"] + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys(airflow_ui["password"])
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda b: "/auth/login" not in b.current_url and b.get_cookie("_token"))
        browser.get(f"{airflow_ui['url']}/numtaflow/runs/{finished_run}")
        wait.until(ec.presence_of_element_located((By.TAG_NAME, "img")))
        image = browser.find_element(By.TAG_NAME, "img")
        wait.until(lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
        assert browser.execute_script("return arguments[0].naturalWidth", image) > 300
        accuracy = storage.get_json(f"runs/{finished_run}/evaluate/metrics.json")["accuracy"]
        assert f"{accuracy:.4f}" in browser.page_source
        assert "Gate:" in browser.page_source
        browser.save_screenshot(str(SCREENSHOTS / "run-page.png"))
        browser.get(airflow_ui["url"] + "/numtaflow/")
        assert finished_run in browser.page_source
        browser.save_screenshot(str(SCREENSHOTS / "models-page.png"))
    finally:
        browser.quit()


def api(ui, method, path, body=None):
    import urllib.request

    request = urllib.request.Request(f"{ui['url']}/api/v2{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": f"Bearer {token(ui)}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_run_triggered_through_the_api_with_form_values(airflow_ui, tmp_path, storage):
    """The scheduler path (not `dags test`): trigger with non-default form values, wait for success."""
    import time

    from tests.conftest import make_numtadb, upload_folder

    train = upload_folder(storage, make_numtadb(tmp_path / "training-a", 5), "datasets/ui")
    evaluation = upload_folder(storage, make_numtadb(tmp_path / "training-c", 2, source="training-c"), "datasets/ui")
    deadline = time.time() + 120
    while True:  # the DAG processor needs a moment to parse the DAG
        try:
            api(airflow_ui, "PATCH", "/dags/numtadb_transfer_learning", {"is_paused": False})
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(3)
    conf = {"train_input": train, "eval_input": evaluation, "per_class": 4, "eval_per_class": 2, "seed": 11,
            "min_accuracy": 0.0, "min_f1": 0.0}
    run = api(airflow_ui, "POST", "/dags/numtadb_transfer_learning/dagRuns", {"logical_date": None, "conf": conf})
    deadline = time.time() + 900
    while (state := api(airflow_ui, "GET", f"/dags/numtadb_transfer_learning/dagRuns/{run['dag_run_id']}")["state"]) \
            not in ("success", "failed"):
        assert time.time() < deadline, "the triggered run did not finish in 15 minutes"
        time.sleep(5)
    assert state == "success"
    from numtaflow.storage import safe_run_id

    metrics = storage.get_json(f"runs/{safe_run_id(run['dag_run_id'])}/evaluate/metrics.json")
    assert metrics["per_class_sample"] == 4 and metrics["seed"] == 11 and metrics["n_eval"] == 20
