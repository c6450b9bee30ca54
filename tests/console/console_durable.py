"""A durable function's executions in the web console, in a real headless Chromium (WebDriver).

Run by crates/stoke/tests/console.rs against a real server that has, in the account of STOKE_API_KEY, the durable
function `flow` and one finished execution of it named `order-1`. Reads STOKE_ENDPOINT; with STOKE_SCREENSHOTS
set, saves a screenshot of the page there. Every step asserts; the first failure exits non-zero.
"""
import os

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

import chromium

ENDPOINT = os.environ["STOKE_ENDPOINT"]
KEY = os.environ["STOKE_API_KEY"]
SHOTS = os.environ.get("STOKE_SCREENSHOTS")

driver = chromium.start()
wait = WebDriverWait(driver, 20)


def text_of(element_id):
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.textContent : ''",
                                 element_id)


try:
    driver.get(ENDPOINT + "/console")
    box = wait.until(EC.visibility_of_element_located((By.ID, "api-key")))
    box.send_keys(KEY)
    driver.find_element(By.ID, "sign-in").click()
    wait.until(lambda d: d.find_elements(By.LINK_TEXT, "flow"))
    driver.find_element(By.LINK_TEXT, "flow").click()

    # The function's page lists its executions; one leads to its page.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#durable-list tbody tr"))
    listed = [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#durable-list tbody tr")]
    assert len(listed) == 1 and "order-1" in listed[0] and "SUCCEEDED" in listed[0], listed
    # What a page leaves out (no tune yet) is left out, not written as "null".
    page = driver.find_element(By.ID, "main").text
    assert "null" not in page.split(), page
    driver.find_element(By.LINK_TEXT, "order-1").click()
    wait.until(lambda d: text_of("durable-name") == "order-1")
    assert text_of("durable-status") == "SUCCEEDED", text_of("durable-status")
    assert text_of("durable-cold-starts") == "1", text_of("durable-cold-starts")
    assert '"done"' in text_of("durable-result"), text_of("durable-result")

    # Its timeline, drawn as a workflow's: the one invocation, a cold start, its phases.
    steps = driver.execute_script(
        "return [...document.querySelectorAll('#timeline g.step')].map(g => [g.dataset.state, g.dataset.cold])")
    assert steps == [["invocation 1", "true"]], steps
    phases = driver.execute_script(
        "return [...document.querySelectorAll('#timeline g.step rect[data-phase]')].map(r => r.dataset.phase)")
    assert "running" in phases and "init" in phases, phases
    if SHOTS:
        driver.save_screenshot(os.path.join(SHOTS, "durable.png"))

    # An execution that does not exist says so.
    driver.get(ENDPOINT + "/console#/durable/no-such-execution")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#main .error"))
    assert "no-such-execution" in driver.find_element(By.CSS_SELECTOR, "#main .error").text
finally:
    driver.quit()

print("all checks passed")
