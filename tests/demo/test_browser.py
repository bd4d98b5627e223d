"""One real-browser test: headless Debian Chromium (Selenium + Debian's chromedriver) uploads a real sample
image, clicks on it and sees the overlay change; the screenshot goes to ``book/generated/`` (ignored by git).

Skipped, with the reason, when Chromium, chromedriver or Selenium is missing (``bash bootstrap.sh test``
installs them). The browser can resolve 127.0.0.1 only, and the test checks that the page did not even try
to contact another host (fonts, CDNs, analytics).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from petseg.demo.browser import browser_missing_reason, capture_demo

SCREENSHOT = Path(__file__).resolve().parents[2] / "book" / "generated" / "demo-screenshot-test.png"
SAMPLE_IMAGE = "american_bulldog_100.jpg"

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def browser_ready() -> None:
    reason = browser_missing_reason()
    if reason:
        pytest.skip(reason)


def test_upload_click_and_see_the_overlay_change(browser_ready, demo_server: str, sample_root: Path) -> None:
    result = capture_demo(demo_server, sample_root / "images" / SAMPLE_IMAGE, SCREENSHOT, clicks=[(250, 160)])
    before, after = result["digests"]
    assert before != after  # the overlay changed after the click
    clicked = re.search(r"foreground point at \((\d+), (\d+)\)", result["status"])
    assert clicked, result["status"]
    # the click reached the app at that image pixel (give or take the browser's rounding to whole pixels)
    assert abs(int(clicked[1]) - 250) <= 1 and abs(int(clicked[2]) - 160) <= 1
    assert "random weights" in result["status"]  # the test app has no trained SAM 2, and says so
    assert SCREENSHOT.stat().st_size > 10_000
    assert result["hosts"] == {"127.0.0.1"}, "the page tried to reach another host"


def test_clicks_on_a_scaled_down_picture_land_on_the_right_image_pixel(browser_ready, demo_server: str,
                                                                      tmp_path: Path) -> None:
    from tests.demo.conftest import pet_like_image, write_image

    image = write_image(tmp_path / "wide.png", pet_like_image(750, 1000))  # shown smaller than it is
    result = capture_demo(demo_server, image, tmp_path / "wide-screenshot.png", clicks=[(800, 600)])
    clicked = re.search(r"point at \((\d+), (\d+)\)", result["status"])
    assert clicked and abs(int(clicked[1]) - 800) <= 2 and abs(int(clicked[2]) - 600) <= 2, result["status"]
