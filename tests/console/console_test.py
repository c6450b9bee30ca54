"""The web console in a real headless Chromium, driven through WebDriver (selenium and Debian's chromedriver).

Run by crates/stoke/tests/console.rs against a real server that already has, in the account of STOKE_API_KEY,
the function `echo` (it prints a log line holding markup and returns its event; its description is markup
too) and the workflow `chain` (three Task states, One → Two → Three, on functions never run before); and a
second account whose key is STOKE_OTHER_KEY. Reads STOKE_ENDPOINT; with
STOKE_SCREENSHOTS set, saves a screenshot of each page there. Every step asserts; the first failure exits
non-zero.
"""
import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ENDPOINT = os.environ["STOKE_ENDPOINT"]
KEY = os.environ["STOKE_API_KEY"]
OTHER_KEY = os.environ["STOKE_OTHER_KEY"]
SHOTS = os.environ.get("STOKE_SCREENSHOTS")

options = webdriver.ChromeOptions()
for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
            "--disable-gpu", "--no-first-run", "--disable-extensions"):
    options.add_argument(arg)
options.binary_location = os.environ.get("STOKE_CHROMIUM", "/usr/bin/chromium")
driver = webdriver.Chrome(service=Service(os.environ.get("STOKE_CHROMEDRIVER", "/usr/bin/chromedriver")),
                          options=options)
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

    # 5. Workflows: the list, the states of `chain`, an execution started from the page whose steps turn
    #    green as they finish, and its timeline, whose rows and cold-start marks are the API's.
    driver.find_element(By.LINK_TEXT, "Workflows").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#workflows tr[data-workflow='chain']"))
    driver.find_element(By.LINK_TEXT, "chain").click()
    wait.until(lambda d: text_of("workflow-name") == "chain")
    states = [e.get_attribute("data-state") for e in driver.find_elements(By.CSS_SELECTOR, "ul.states li")]
    assert states == ["One", "Two", "Three"], states
    driver.find_element(By.ID, "start").click()
    wait.until(lambda d: d.find_elements(By.ID, "execution-status"))
    seen = {}
    deadline = time.time() + 60
    while text_of("execution-status") != "SUCCEEDED":
        assert time.time() < deadline, "the execution did not finish"
        for row in driver.find_elements(By.CSS_SELECTOR, "#timeline g.step"):
            try:
                seen.setdefault(row.get_attribute("data-state"), set()).add(row.get_attribute("data-status"))
            except Exception:  # the chart is redrawn under us
                pass
        time.sleep(0.1)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#timeline g.step[data-status='succeeded']")) == 3)
    assert any("running" in s for s in seen.values()), f"a step was seen running before it was green: {seen}"
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
    driver.set_window_size(1280, 1300)
    shot("execution")
    driver.set_window_size(1280, 900)

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

    # 7. Signing out forgets the key: a reload asks for one again.
    driver.find_element(By.ID, "sign-out").click()
    driver.refresh()
    wait.until(EC.visibility_of_element_located((By.ID, "api-key")))
    assert driver.execute_script("return sessionStorage.length") == 0
finally:
    driver.quit()

print("all checks passed")
