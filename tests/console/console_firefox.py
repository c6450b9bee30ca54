"""The web console in Firefox (Debian's firefox-esr, headless), driven through Marionette, Firefox's own remote
protocol (the marionette_driver client; Debian has no geckodriver to speak WebDriver for it).

Run by crates/stoke/tests/console.rs against a real server whose account (STOKE_API_KEY) holds the function
`echo` (it prints a line holding markup and returns its event) and the workflow `chain` with a finished
execution STOKE_EXECUTION of three steps. Checks what differs most between engines: signing in, the list,
invoking, the live logs read from a fetch stream, the SVG timeline and graph, markup shown as text. Every step
asserts; the first failure exits non-zero.
"""
import os
import shutil
import subprocess
import tempfile
import time

from marionette_driver import Wait
from marionette_driver.by import By
from marionette_driver.marionette import Marionette

ENDPOINT = os.environ["STOKE_ENDPOINT"]
KEY = os.environ["STOKE_API_KEY"]
EXECUTION = os.environ["STOKE_EXECUTION"]
FIREFOX = os.environ.get("STOKE_FIREFOX", "/usr/bin/firefox-esr")

profile = tempfile.mkdtemp(prefix="stoke-firefox-")
with open(os.path.join(profile, "user.js"), "w") as prefs:
    for pref in ('"marionette.port", 0',  # a free port, written to MarionetteActivePort
                 '"browser.shell.checkDefaultBrowser", false',
                 '"browser.aboutwelcome.enabled", false',
                 '"datareporting.policy.dataSubmissionEnabled", false',
                 '"toolkit.telemetry.reportingpolicy.firstRun", false',
                 '"app.update.disabledForTesting", true',
                 '"network.captive-portal-service.enabled", false',
                 '"browser.safebrowsing.update.enabled", false'):
        prefs.write(f"user_pref({pref});\n")
firefox = subprocess.Popen([FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", profile,
                            "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
client = None


def text_of(element_id):
    return client.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.textContent : ''", script_args=(element_id,))


def until(what, condition, timeout=20):
    Wait(client, timeout=timeout, interval=0.1).until(lambda _: condition(), message=what)


def count(selector):
    return client.execute_script("return document.querySelectorAll(arguments[0]).length", script_args=(selector,))


try:
    port_file = os.path.join(profile, "MarionetteActivePort")
    deadline = time.time() + 60
    while not os.path.exists(port_file) or not open(port_file).read().strip():
        assert firefox.poll() is None, f"firefox exited ({firefox.returncode})"
        assert time.time() < deadline, "firefox did not open its Marionette port"
        time.sleep(0.2)
    client = Marionette(host="127.0.0.1", port=int(open(port_file).read().strip()))
    client.start_session()
    print("firefox", client.session_capabilities.get("browserVersion"))

    # Sign in; the functions list.
    client.navigate(ENDPOINT + "/console")
    until("the sign-in form", lambda: count("#api-key") == 1)
    client.find_element(By.ID, "api-key").send_keys(KEY)
    client.find_element(By.ID, "sign-in").click()
    until("the functions list", lambda: count("#functions tbody tr[data-function=echo]") == 1)

    # Invoke from the page; the live logs follow through a fetch stream.
    client.execute_script("location.hash = '#/functions/echo'")
    until("the function's page", lambda: text_of("function-name") == "echo")
    until("the live logs", lambda: client.execute_script(
        "const l = document.getElementById('logs'); return l && l.dataset.live === 'true'"))
    event = client.find_element(By.ID, "event")
    event.clear()
    event.send_keys('{"say": "<i>firefox</i>"}')
    client.find_element(By.ID, "invoke").click()
    until("the result", lambda: "firefox" in text_of("result"))
    assert text_of("report").startswith("REPORT RequestId: "), text_of("report")
    until("the log line", lambda: "said <script>window.__pwned=1</script> <i>firefox</i>" in text_of("logs"))
    assert count("#main i, #main script, #main img") == 0, "markup from the server was rendered as HTML"
    assert not client.execute_script("return window.__pwned === 1")

    # An execution: its timeline and its graph, drawn as SVG.
    client.execute_script("location.hash = arguments[0]", script_args=("#/executions/" + EXECUTION,))
    until("the timeline", lambda: count("#timeline g.step[data-status=succeeded]") == 3)
    until("the graph", lambda: count("#graph g.node[data-status=succeeded]") == 3)
    steps = client.execute_script("return [...document.querySelectorAll('#timeline g.step')].map(g => g.dataset.state)")
    assert steps == ["One", "Two", "Three"], steps

    # The node.
    client.execute_script("location.hash = '#/node'")
    until("the node's instances", lambda: count("#instance-states .card") == 7)
finally:
    if client is not None:
        try:
            client.delete_session()
        except Exception:  # the browser may already be gone
            pass
    firefox.kill()
    firefox.wait()
    shutil.rmtree(profile, ignore_errors=True)

print("all checks passed")
