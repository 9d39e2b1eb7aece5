"""The agent-desktop page end to end in headless Chromium (Debian's chromium + chromedriver, driven
by selenium; nothing is downloaded): ask for a customer, see scores and ranked actions with script,
value and reasons, accept one, and find the feedback in the decision log."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving.conftest import API_KEY, Server, World

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
WAIT_SECONDS = 20


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium with a fresh profile, or a skip when Debian's packages are absent."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (`make browser`; .ci/run does it)")
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager must never download a driver or browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="nextbest-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # the requests it sends
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def customer_with_actions(server: Server, world: World) -> str:
    """A customer outside the control group whom the service recommends something."""
    with sqlite3.connect(world.store) as con:
        ids = [r[0] for r in con.execute("SELECT customer_id FROM features LIMIT 200")]
    for customer in ids:
        body = {"customer_id": customer, "channel": "call_center"}
        _, answer = server.call("POST", "/recommend", body)
        if answer["actions"] and not answer["explored"] and not answer["control_group"]:
            return customer
    raise AssertionError("no customer with a recommendation among 200")


def test_an_agent_asks_sees_actions_and_accepts_one(browser, server: Server, world: World) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.wait import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, WAIT_SECONDS)
    customer = customer_with_actions(server, world)
    driver.get(server.url + "/")
    driver.find_element(By.ID, "api_key").send_keys(API_KEY)
    for _ in range(3):  # exploration may, rarely, show no action: ask again
        field = driver.find_element(By.ID, "customer_id")
        field.clear()
        field.send_keys(customer)
        driver.find_element(By.ID, "call_reason").send_keys("billing")
        driver.find_element(By.ID, "go").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Decision"))
        cards = driver.find_elements(By.CSS_SELECTOR, ".action")
        if cards:
            break
    assert cards, "the page shows the recommended actions"
    scores = driver.find_elements(By.CSS_SELECTOR, ".score")
    assert [s.text.split("\n")[0] for s in scores] == [
        "Churn risk",
        "Satisfaction",
        "Lifetime value",
    ]
    first = cards[0]
    assert first.find_element(By.CSS_SELECTOR, ".script").text
    assert "Expected value" in first.text
    assert len(first.find_elements(By.CSS_SELECTOR, "li")) >= 2  # reasons
    # the customer's recent journey from the store, newest first
    wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, "#journey li"))
    journey = driver.find_elements(By.CSS_SELECTOR, "#journey li")
    assert 1 <= len(journey) <= 10 and journey[0].get_attribute("data-event-type")
    decision_id = driver.find_element(By.ID, "status").text.split()[1]
    first.find_element(By.CSS_SELECTOR, "button.accepted").click()
    wait.until(lambda _: "Recorded: accepted" in first.text)
    with sqlite3.connect(server.log) as con:
        stored = con.execute(
            "SELECT action_id, outcome FROM feedback WHERE decision_id = ?", (decision_id,)
        ).fetchall()
    assert stored == [(first.get_attribute("data-action-id"), "accepted")]
    sent = posted_headers(driver)
    assert {"/recommend", "/feedback"} <= set(sent), sent
    for path, (headers, sent_at) in sent.items():  # the agent's 5 s, on the service's clock
        assert 2 < float(headers["X-Request-Deadline"]) - sent_at < 8, path  # (its Date: 1 s)


def posted_headers(driver: Any) -> dict[str, tuple[dict[str, str], float]]:
    """The headers of the last POST the page sent to each path, with when it was sent (Unix
    seconds), from Chromium's performance log."""
    found = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        request = params.get("request", {})
        if message["method"] == "Network.requestWillBeSent" and request.get("method") == "POST":
            path = urllib.parse.urlsplit(request["url"]).path
            found[path] = (request["headers"], float(params["wallTime"]))
    return found
