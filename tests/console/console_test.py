"""The web console in a real headless Chromium, driven through WebDriver (selenium and Debian's chromedriver).

Run by crates/stoke/tests/console.rs against a real server that already has the function `echo` (it prints
a log line holding markup and returns its event; its description is markup too) in the account of
STOKE_API_KEY, and a second account whose key is STOKE_OTHER_KEY. Reads STOKE_ENDPOINT; with
STOKE_SCREENSHOTS set, saves a screenshot of each page there. Every step asserts; the first failure exits
non-zero.
"""
import json
import os
import sys
import time

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
    return driver.find_element(By.ID, element_id).text


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
    wait.until(lambda d: len(rows()) == 1)
    assert rows()[0].get_attribute("data-function") == "echo", rows()[0].text
    assert "python" in rows()[0].text and "128 MB" in rows()[0].text, rows()[0].text
    assert KEY not in driver.current_url, "the key never goes into a URL"
    search = driver.find_element(By.ID, "search")
    search.send_keys("no-such-thing")
    wait.until(lambda d: len(rows()) == 0 and text_of("functions-status").startswith("0 of 1"))
    search.clear()
    search.send_keys("ech")
    wait.until(lambda d: len(rows()) == 1)
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

    # 5. Another account's key sees none of this account's functions, and not this one by its name.
    driver.find_element(By.ID, "sign-out").click()
    sign_in(OTHER_KEY)
    wait.until(lambda d: text_of("functions-status").startswith("0 of 0"))
    driver.get(ENDPOINT + "/console#/functions/echo")
    driver.refresh()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#main .error"))
    error = driver.find_element(By.CSS_SELECTOR, "#main .error").text
    assert "echo" in error, error
    assert not pwned()

    # 6. Signing out forgets the key: a reload asks for one again.
    driver.find_element(By.ID, "sign-out").click()
    driver.refresh()
    wait.until(EC.visibility_of_element_located((By.ID, "api-key")))
    assert driver.execute_script("return sessionStorage.length") == 0
finally:
    driver.quit()

print("all checks passed")
