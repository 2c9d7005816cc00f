"""Screenshots of the Airflow UI for the docs: the DAG graph, the trigger form, the Models pages.

    make ui && python scripts/screenshots.py docs/images

Logs in with the install's generated admin password, through Airflow's own login form.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from numtaflow.catalog import DAG_ID
from numtaflow.config import Settings
from numtaflow.registry import read_champion
from numtaflow.storage import Storage
from numtaflow.webapp import MOUNT, page_url


def main(out: Path) -> None:
    url = f"http://127.0.0.1:{os.environ.get('AIRFLOW__API__PORT', '8080')}"
    password = json.loads(Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).read_text())["admin"]
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update", "--window-size=1400,1000"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    wait = WebDriverWait(browser, 60)
    out.mkdir(parents=True, exist_ok=True)
    try:
        browser.get(url + "/")
        wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
        browser.find_element(By.NAME, "password").send_keys(password)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait.until(lambda b: b.get_cookie("_token"))
        for name, path in (("dag-graph", f"/dags/{DAG_ID}?tab=graph"), ("models-page", f"{MOUNT}/")):
            browser.get(url + path)
            time.sleep(6)
            browser.save_screenshot(str(out / f"{name}.png"))
        browser.get(f"{url}/dags/{DAG_ID}")
        time.sleep(5)
        buttons = [b for b in browser.find_elements(By.TAG_NAME, "button") if b.text.strip() == "Trigger"]
        if buttons:
            buttons[0].click()
            time.sleep(3)
            browser.save_screenshot(str(out / "trigger-form.png"))
        champion, _ = read_champion(Storage(Settings.from_env()))
        if champion:
            browser.get(url + page_url(MOUNT, "run", run_id=champion.run_id))
            time.sleep(3)
            browser.save_screenshot(str(out / "run-page.png"))
    finally:
        browser.quit()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))
