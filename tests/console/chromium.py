"""Headless Chromium through WebDriver (selenium and Debian's chromedriver), as the console's browser tests use
it: STOKE_CHROMIUM and STOKE_CHROMEDRIVER name other binaries."""
import os

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def start():
    """A new headless Chromium, 1280×900."""
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                "--disable-gpu", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.binary_location = os.environ.get("STOKE_CHROMIUM", "/usr/bin/chromium")
    service = Service(os.environ.get("STOKE_CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)
