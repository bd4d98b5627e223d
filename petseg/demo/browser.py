"""Drive the running app in a real, headless Chromium (Selenium + Debian's chromedriver), offline.

Used by the browser test and by the book's demo page, which regenerates its screenshot with it. The browser
may reach 127.0.0.1 only: every other host name is made to fail to resolve, and :func:`capture_demo` reports
every host the page tried to contact, so a test can insist there was none but the app itself.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER_NAMES = ("chromedriver",)
CHROMIUM_ARGUMENTS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-extensions", "--hide-scrollbars",
    "--window-size=1280,900", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
)


def _which(names: Sequence[str]) -> str | None:
    return next((found for name in names if (found := shutil.which(name))), None)


def browser_missing_reason() -> str | None:
    """Why :func:`chromium_driver` cannot start (None when it can)."""
    if not _which(CHROMIUM_NAMES):
        return "chromium is not installed (apt-get install chromium chromium-driver; bootstrap.sh test does it)"
    if not _which(CHROMEDRIVER_NAMES):
        return "chromedriver is not installed (apt-get install chromium-driver; bootstrap.sh test does it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed in this environment (pip install -r requirements.txt)"
    return None


@contextmanager
def chromium_driver(timeout: float = 30) -> Iterator[Any]:
    """A headless Chromium WebDriver with explicit binary and driver paths (Selenium Manager never runs,
    nothing is downloaded); quits on exit. RuntimeError with the reason if the browser is missing."""
    reason = browser_missing_reason()
    if reason:
        raise RuntimeError(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _which(CHROMIUM_NAMES)
    for argument in CHROMIUM_ARGUMENTS:
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=_which(CHROMEDRIVER_NAMES)))
    driver.set_page_load_timeout(timeout)
    try:
        yield driver
    finally:
        driver.quit()


def picture_digest(driver: Any, base_url: str) -> str:
    """SHA-1 of the picture the app's canvas shows now (fetched from the app, which must serve it)."""
    src = driver.find_element("css selector", "#canvas img").get_attribute("src")
    if not src.startswith(base_url.rstrip("/")):
        raise AssertionError(f"the picture should come from the app itself, not {src}")
    with urllib.request.urlopen(src, timeout=10) as response:
        return hashlib.sha1(response.read()).hexdigest()


def requested_hosts(driver: Any) -> set[str]:
    """Hosts of every http(s)/ws(s) request the page has made so far (from Chromium's performance log)."""
    hosts = set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = urlparse(message["params"]["request"]["url"])
            if url.scheme in ("http", "https", "ws", "wss"):
                hosts.add(url.hostname)
    return hosts


def click_image_pixel(driver: Any, x: int, y: int) -> None:
    """Click the canvas at image pixel (x, y), whatever size the browser displays it at."""
    from selenium.webdriver.common.action_chains import ActionChains

    canvas = driver.find_element("css selector", "#canvas img")
    natural_width, natural_height = driver.execute_script(
        "return [arguments[0].naturalWidth, arguments[0].naturalHeight];", canvas)
    shown = canvas.size
    dx = (x + 0.5) * shown["width"] / natural_width - shown["width"] / 2  # offsets are from the centre
    dy = (y + 0.5) * shown["height"] / natural_height - shown["height"] / 2
    ActionChains(driver).move_to_element_with_offset(canvas, round(dx), round(dy)).click().perform()


def capture_demo(url: str, image_path: str | Path, screenshot: str | Path,
                 clicks: Sequence[tuple[int, int]] = (), timeout: float = 60) -> dict[str, Any]:
    """Open the app, upload ``image_path``, click at each image pixel of ``clicks`` (the centre when empty),
    waiting for the picture to change after each, and save a screenshot.

    Returns the picture digests (before the first click and after each), the final status text and the
    hosts the page contacted.
    """
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    with chromium_driver() as driver:
        wait = WebDriverWait(driver, timeout)
        driver.get(url)
        upload = wait.until(ec.presence_of_element_located(("css selector", "#upload input[type=file]")))
        upload.send_keys(str(Path(image_path).resolve()))
        wait.until(ec.text_to_be_present_in_element(("css selector", "#status"), "loaded"))
        wait.until(ec.visibility_of_element_located(("css selector", "#canvas img")))
        digests = [picture_digest(driver, url)]
        if not clicks:
            canvas = driver.find_element("css selector", "#canvas img")
            width, height = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight];",
                                                  canvas)
            clicks = [(width // 2, height // 2)]
        for x, y in clicks:
            click_image_pixel(driver, x, y)
            wait.until(lambda d, last=digests[-1]: picture_digest(d, url) != last)
            digests.append(picture_digest(driver, url))
        status = driver.find_element("css selector", "#status").text
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
        return {"digests": digests, "status": status, "hosts": requested_hosts(driver)}
