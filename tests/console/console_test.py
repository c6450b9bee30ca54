"""The web console in a real headless Chromium, driven through WebDriver (selenium and Debian's chromedriver).

Run by crates/stoke/tests/console.rs against a real server that already has, in the account of STOKE_API_KEY,
the function `echo` (it prints a log line holding markup and returns its event; its description is markup
too) and the workflow `chain` (three Task states, One → Two → Three, on functions never run before), a finished
tune of `echo` at 128 and 256 MB whose id is STOKE_TUNE; and a second account whose key is STOKE_OTHER_KEY. Reads STOKE_ENDPOINT; with
STOKE_SCREENSHOTS set, saves a screenshot of each page there. Every step asserts; the first failure exits
non-zero.
"""
import json
import os
import re
import time
import urllib.request

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

import chromium

ENDPOINT = os.environ["STOKE_ENDPOINT"]
KEY = os.environ["STOKE_API_KEY"]
OTHER_KEY = os.environ["STOKE_OTHER_KEY"]
TUNE = os.environ["STOKE_TUNE"]
SHOTS = os.environ.get("STOKE_SCREENSHOTS")

driver = chromium.start()
wait = WebDriverWait(driver, 20)


def shot(name):
    if SHOTS:
        driver.save_screenshot(os.path.join(SHOTS, name + ".png"))


def text_of(element_id):
    """The element's text, read in one step in the page (it may be redrawn between two WebDriver calls)."""
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.textContent : ''",
                                 element_id)


def sign_in(key):
    box = wait.until(EC.visibility_of_element_located((By.ID, "api-key")))
    box.clear()
    box.send_keys(key)
    driver.find_element(By.ID, "sign-in").click()


def rows():
    return driver.find_elements(By.CSS_SELECTOR, "#functions tbody tr")


def pwned():
    return driver.execute_script("return window.__pwned === 1")


try:
    # 1. The page asks for a key; a wrong one is refused with a sentence, the right one lists the functions.
    driver.get(ENDPOINT + "/console")
    sign_in("sk-wrong")
    wait.until(lambda d: "not valid" in text_of("sign-in-error"))
    shot("sign-in")
    sign_in(KEY)
    wait.until(lambda d: len(rows()) == 4)
    names = [r.get_attribute("data-function") for r in rows()]
    assert sorted(names) == ["echo", "one", "three", "two"], names
    echo_row = next(r for r in rows() if r.get_attribute("data-function") == "echo")
    assert "python" in echo_row.text and "128 MB" in echo_row.text, echo_row.text
    assert KEY not in driver.current_url, "the key never goes into a URL"
    search = driver.find_element(By.ID, "search")
    search.send_keys("no-such-thing")
    wait.until(lambda d: len(rows()) == 0 and text_of("functions-status").startswith("0 of 4"))
    search.clear()
    search.send_keys("ech")
    wait.until(lambda d: len(rows()) == 1 and rows()[0].get_attribute("data-function") == "echo")
    shot("functions")

    # 2. The function's page: its configuration, with the markup in its description shown as text.
    driver.find_element(By.LINK_TEXT, "echo").click()
    wait.until(lambda d: text_of("function-name") == "echo")
    config = text_of("config")
    assert '<img src=x onerror="window.__pwned=1">' in config, config
    assert "python3.12" in config or "python" in config, config

    # 3. Invoke from the page: the result and the REPORT; a bad event is refused before it is sent.
    event = driver.find_element(By.ID, "event")
    event.clear()
    event.send_keys("{not json")
    driver.find_element(By.ID, "invoke").click()
    wait.until(lambda d: text_of("result").startswith("The event is not JSON"))
    event.clear()
    event.send_keys(json.dumps({"say": "<b onmouseover=\"window.__pwned=1\">first</b>"}))
    driver.find_element(By.ID, "invoke").click()
    wait.until(lambda d: "first" in text_of("result"))
    result = json.loads(text_of("result"))
    assert result == {"say": "<b onmouseover=\"window.__pwned=1\">first</b>"}, result
    assert text_of("report").startswith("REPORT RequestId: "), text_of("report")

    # 4. Live logs: the invocation's line (markup, shown as text), then a second invocation's as it is
    #    written, with no reload.
    wait.until(lambda d: 'said <script>window.__pwned=1</script> <b onmouseover="window.__pwned=1">first</b>'
               in text_of("logs"))
    wait.until(lambda d: driver.find_element(By.ID, "logs").get_attribute("data-live") == "true")
    event.clear()
    event.send_keys(json.dumps({"say": "second"}))
    driver.find_element(By.ID, "invoke").click()
    wait.until(lambda d: "said <script>window.__pwned=1</script> second" in text_of("logs"))
    driver.set_window_size(1280, 1500)
    shot("function")
    driver.set_window_size(1280, 900)
    injected = driver.execute_script("return document.querySelectorAll('#main img, #main script, #main b').length")
    assert injected == 0 and not pwned(), "markup from the server was rendered as HTML"
    # The two invocations are rows of the recent invocations, newest first, read from their REPORT lines.
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#invocations tbody tr")) >= 2)
    newest = driver.find_element(By.CSS_SELECTOR, "#invocations tbody tr").get_attribute("data-request")
    assert newest and newest in text_of("report"), (newest, text_of("report"))

    # 4b. Versions and aliases: publish, point a new alias at the version, move it to $LATEST; block and
    #     unblock.
    assert "No version published yet." in text_of("releases"), text_of("releases")
    driver.find_element(By.ID, "publish").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#versions tr[data-version='1']"))
    wait.until(lambda d: d.find_elements(By.ID, "alias-name"))
    driver.find_element(By.ID, "alias-name").send_keys("prod")
    driver.find_element(By.ID, "alias-create").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#aliases tr[data-alias='prod'][data-version='1']"))
    row = driver.find_element(By.CSS_SELECTOR, "#aliases tr[data-alias='prod']")
    Select(row.find_element(By.TAG_NAME, "select")).select_by_value("$LATEST")
    row.find_element(By.TAG_NAME, "button").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#aliases tr[data-alias='prod'][data-version='$LATEST']"))
    driver.find_element(By.ID, "alias-create").click()
    wait.until(lambda d: "Give the alias a name" in text_of("alias-note"))
    wait.until(lambda d: d.find_elements(By.ID, "block"))[0].click()
    wait.until(lambda d: "BLOCKED" in text_of("config") and d.find_elements(By.ID, "unblock"))
    driver.find_element(By.ID, "unblock").click()
    wait.until(lambda d: "PUBLISHED" in text_of("config") and d.find_elements(By.ID, "block"))
    # The list shows when each function was last invoked and its errors (the tune's calls count too).
    driver.find_element(By.LINK_TEXT, "Functions").click()
    wait.until(lambda d: len(rows()) == 4)
    cells = driver.execute_script(
        "const r = document.querySelector('#functions tr[data-function=echo]');"
        "return [r.querySelector('.last-invoked').textContent, r.querySelector('.errors').textContent]")
    assert cells[0] != "—" and re.fullmatch(r"0 of \d+ \(0 %\)", cells[1]), cells
    assert int(cells[1].split()[2]) >= 8, f"2 calls from the page and the tune's 6: {cells}"
    never = driver.execute_script(
        "return document.querySelector('#functions tr[data-function=one] .errors').textContent")
    assert never == "—", never
    driver.find_element(By.LINK_TEXT, "echo").click()

    # 4c. The tune's page: a row and a bar per size, the recommended one marked, the summary.
    wait.until(lambda d: d.find_elements(By.ID, "last-tune"))[0].click()
    wait.until(lambda d: text_of("tune-id") == "Tune of echo")
    assert driver.current_url.endswith("#/tunes/" + TUNE), driver.current_url
    sizes = [r.get_attribute("data-memory") for r in driver.find_elements(By.CSS_SELECTOR, "#sizes tbody tr")]
    assert sizes == ["128", "256"], sizes
    bars = driver.find_elements(By.CSS_SELECTOR, "#tune-chart rect.bar")
    best = driver.find_elements(By.CSS_SELECTOR, "#tune-chart rect.bar.best")
    assert len(bars) == 2 and len(best) == 1, (len(bars), len(best))
    request = urllib.request.Request(f"{ENDPOINT}/v1/tunes/{TUNE}", headers={"Authorization": "Bearer " + KEY})
    recommendation = json.load(urllib.request.urlopen(request))["recommendation"]
    assert best[0].get_attribute("data-memory") == str(recommendation["memory_mb"]), recommendation
    assert text_of("recommendation") == recommendation["summary"], text_of("recommendation")
    shot("tune")

    # 5. Workflows: the list, the states of `chain`, an execution started from the page whose steps turn
    #    green as they finish, and its timeline, whose rows and cold-start marks are the API's.
    driver.find_element(By.LINK_TEXT, "Workflows").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#workflows tr[data-workflow='chain']"))
    driver.find_element(By.LINK_TEXT, "chain").click()
    wait.until(lambda d: text_of("workflow-name") == "chain")
    states = [e.get_attribute("data-state") for e in driver.find_elements(By.CSS_SELECTOR, "#graph g.node")]
    assert states == ["One", "Two", "Three"], states
    listed = driver.execute_script("return [...document.querySelectorAll('ul.states li')].map(e => e.dataset.state)")
    assert listed == ["One", "Two", "Three"], listed
    shot("workflow")
    driver.find_element(By.ID, "start").click()
    wait.until(lambda d: d.find_elements(By.ID, "execution-status"))
    seen = {}
    boxes = {}
    deadline = time.time() + 60
    while text_of("execution-status") != "SUCCEEDED":
        assert time.time() < deadline, "the execution did not finish"
        # Read in one step in the page: it redraws the chart under us.
        rows, nodes = driver.execute_script(
            "return [[...document.querySelectorAll('#timeline g.step')].map(g => [g.dataset.state, g.dataset.status]),"
            " [...document.querySelectorAll('#graph g.node')].map(g => [g.dataset.state, g.dataset.status])]")
        for state, status in rows:
            seen.setdefault(state, set()).add(status)
        for state, status in nodes:
            boxes.setdefault(state, set()).add(status)
        time.sleep(0.1)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline g.step[data-status='succeeded']")) == 3)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#graph g.node[data-status='succeeded']")) == 3)
    assert any("running" in s for s in seen.values()), f"a step was seen running before it was green: {seen}"
    assert any("running" in s for s in boxes.values()), f"a state's box was seen running before it was green: {boxes}"
    assert "idle" in boxes["Three"], f"the last state's box was idle before it was entered: {boxes}"
    execution = driver.current_url.rsplit("/", 1)[1]
    request = urllib.request.Request(f"{ENDPOINT}/v1/executions/{execution}/timeline",
                                     headers={"Authorization": "Bearer " + KEY})
    timeline = json.load(urllib.request.urlopen(request))
    rows_drawn = [(g.get_attribute("data-state"), g.get_attribute("data-cold") == "true")
                  for g in driver.find_elements(By.CSS_SELECTOR, "#timeline g.step")]
    from_api = [(s["state"], s["cold_starts"] > 0) for s in timeline["steps"]]
    assert rows_drawn == from_api, (rows_drawn, from_api)
    assert [name for name, _ in rows_drawn] == ["One", "Two", "Three"], rows_drawn
    assert any(cold for _, cold in rows_drawn), "the first run of new functions paid cold starts"
    assert text_of("cold-starts") == str(timeline["cold_starts"])
    # What pre-warming (the server's default, jit) saved, as the API's timeline says.
    if timeline["prewarm_saved_ms"] > 0:
        assert text_of("prewarm-saved").startswith(f"{timeline['prewarm_saved_ms']:.1f} ms"), text_of("prewarm-saved")
    else:
        assert not driver.find_elements(By.ID, "prewarm-saved")
    driver.set_window_size(1280, 1650)
    shot("execution")
    driver.set_window_size(1280, 900)
    # The history: every event, in order, once opened.
    driver.find_element(By.CSS_SELECTOR, "#history-box summary").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history tbody tr")) > 0)
    kinds = driver.execute_script("return [...document.querySelectorAll('#history tbody tr')].map(r => r.dataset.event)")
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionSucceeded", kinds
    assert kinds.count("TaskStateEntered") == 3 and kinds.count("LambdaFunctionSucceeded") == 3, kinds

    # 5b. The node: instances by state, memory, and the last hour's charts (the first ten-second slot has
    #     ended by now, or ends while the page refreshes itself).
    driver.find_element(By.LINK_TEXT, "Node").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#instance-states .card[data-state='idle']"))
    cold = int(text_of("node-cold-starts").split()[0])
    assert cold >= 4, f"echo, one, two and three each started cold: {text_of('node-cold-starts')}"
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-rate path.series"))
    series = driver.execute_script(
        "return [...document.querySelectorAll('.spark path.series')].map(p => p.dataset.series)")
    assert series == ["invocations_per_s", "p50_ms", "p99_ms", "cold_starts"], series
    shot("node")

    # 6. Another account's key sees none of this account's functions, and not this one by its name.
    driver.find_element(By.ID, "sign-out").click()
    sign_in(OTHER_KEY)
    wait.until(lambda d: text_of("functions-status").startswith("0 of 0"))
    driver.get(ENDPOINT + "/console#/functions/echo")
    driver.refresh()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#main .error"))
    error = driver.find_element(By.CSS_SELECTOR, "#main .error").text
    assert "echo" in error, error
    assert not pwned()
    # Nor the node's figures, which count every account.
    driver.find_element(By.LINK_TEXT, "Node").click()
    wait.until(lambda d: d.find_elements(By.ID, "admin-only"))
    assert not driver.find_elements(By.ID, "chart-rate")

    # 7. Signing out forgets the key: a reload asks for one again.
    driver.find_element(By.ID, "sign-out").click()
    driver.refresh()
    wait.until(EC.visibility_of_element_located((By.ID, "api-key")))
    assert driver.execute_script("return sessionStorage.length") == 0
finally:
    driver.quit()

print("all checks passed")
