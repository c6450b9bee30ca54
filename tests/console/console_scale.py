"""How fast the console's pages load on a node with 1,000 functions and 10,000 executions, in a real headless
Chromium (selenium and Debian's chromedriver).

Run by crates/stoke/tests/console.rs against a server whose account (STOKE_API_KEY) holds 1,000 functions
`fn-0000` … `fn-0999` and the workflow `many` with 10,000 executions; STOKE_EXECUTION names one of them.
Each page is opened LOADS times by a full navigation (a new document: script parsed, key read, API called,
page drawn) and reads two figures the console writes on its <main> once a page is drawn: from navigation
start, and from its route starting. Prints a table of medians; fails if a page's median full load is over
the budget (STOKE_PAGE_BUDGET_MS, 200) or the lists are not paginated.
"""
import os
import statistics
import time

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

import chromium

ENDPOINT = os.environ["STOKE_ENDPOINT"]
KEY = os.environ["STOKE_API_KEY"]
EXECUTION = os.environ["STOKE_EXECUTION"]
BUDGET = float(os.environ.get("STOKE_PAGE_BUDGET_MS", "200"))
LOADS = 5

driver = chromium.start()
wait = WebDriverWait(driver, 30)


def drawn(route):
    """(from navigation start, from route start), in ms, once the page for `route` is drawn."""
    def ready(d):
        return d.execute_script(
            "const m = document.getElementById('main');"
            "return m.dataset.route === arguments[0] ? [m.dataset.drawnAtMs, m.dataset.drawnMs] : null", route)
    at, own = wait.until(ready)
    return float(at), float(own)


def text_of(element_id):
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.textContent : ''",
                                 element_id)


PAGES = [
    ("functions list", "#/functions"),
    ("a function", "#/functions/fn-0500"),
    ("workflows list", "#/workflows"),
    ("a workflow and its executions", "#/workflows/many"),
    ("an execution", "#/executions/" + EXECUTION),
    ("the node", "#/node"),
]

try:
    driver.get(ENDPOINT + "/console")
    driver.execute_script("sessionStorage.setItem('stoke.apiKey', arguments[0])", KEY)
    results = []
    for label, route in PAGES:
        full, own = [], []
        for _ in range(LOADS):
            driver.get(ENDPOINT + "/console" + route)
            driver.refresh()  # a new document each time, not a route change within one
            a, b = drawn(route)
            full.append(a)
            own.append(b)
        results.append((label, statistics.median(full), statistics.median(own), max(full)))

    # The lists are pages from the server, not everything at once.
    driver.get(ENDPOINT + "/console#/functions")
    driver.refresh()
    drawn("#/functions")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#functions tbody tr")) == 100
    assert text_of("functions-status") == "100 of 100 functions (more to load)", text_of("functions-status")
    driver.find_element(By.ID, "more").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#functions tbody tr")) == 200)
    driver.get(ENDPOINT + "/console#/workflows/many")
    driver.refresh()
    drawn("#/workflows/many")
    assert len(driver.find_elements(By.CSS_SELECTOR, "#executions tbody tr")) == 50
    driver.find_element(By.ID, "more-executions").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#executions tbody tr")) == 100)
    ids = [r.get_attribute("data-execution") for r in driver.find_elements(By.CSS_SELECTOR, "#executions tbody tr")]
    assert len(set(ids)) == 100, "the second page continues the first"

    print(f"{'page':32} {'full load p50':>14} {'drawing p50':>12} {'full load max':>14}")
    for label, full, own, worst in results:
        print(f"{label:32} {full:11.1f} ms {own:9.1f} ms {worst:11.1f} ms")
    slow = [(label, full) for label, full, _, _ in results if full > BUDGET]
    assert not slow, f"pages over {BUDGET:.0f} ms: {slow}"
finally:
    driver.quit()

print("all checks passed")
