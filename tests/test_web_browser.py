"""The studio in a real browser: Debian's Chromium driven by Selenium against a real server (uvicorn) with the
real weights at 64 px. Skipped, with the reason, where Chromium or its driver is missing.

Set GRAMSTYLE_STUDIO_SCREENSHOT=PATH to keep the mid-run screenshot (docs/images/studio.png is made this way).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")
import uvicorn  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from gramstyle import Session, assets  # noqa: E402
from gramstyle.apps.web import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)),
                       reason="needs Chromium and chromedriver (apt-get install chromium chromium-driver)"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    session = Session()
    app = create_app(tmp_path_factory.mktemp("studio"), queue=4, session_factory=lambda: session)
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    serve = uvicorn.Server(config)
    thread = threading.Thread(target=serve.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not serve.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    serve.should_exit = True
    thread.join(30)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _until(driver: Any, condition: Callable[[Any], Any], timeout: float = 120) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def _open(driver: Any, url: str) -> None:
    driver.get(url)
    _until(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", 60)


def _set(driver: Any, field: str, value: str) -> None:
    box = driver.find_element(By.ID, "f-" + field)
    box.clear()
    box.send_keys(value)


def test_upload_start_preview_cancel_and_load_settings(server: str, browser: Any, tmp_path: Path) -> None:
    _open(browser, server)
    browser.find_element(By.ID, "content-file").send_keys(str(assets.TUBINGEN))
    _until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#content-thumbs img"))
    _set(browser, "size", "64")
    _set(browser, "steps", "300")
    browser.find_element(By.ID, "start").click()
    preview = browser.find_element(By.ID, "preview")
    first = int(_until(browser, lambda d: preview.get_attribute("data-step")))
    _until(browser, lambda d: int(preview.get_attribute("data-step") or 0) > first)  # the preview changes
    assert browser.find_element(By.ID, "step").text.startswith("step ")
    assert browser.find_element(By.ID, "state").text == "running"
    shot = os.environ.get("GRAMSTYLE_STUDIO_SCREENSHOT") or str(tmp_path / "studio.png")
    browser.execute_script("window.scrollTo(0, 0)")
    assert browser.save_screenshot(shot)
    browser.find_element(By.ID, "cancel").click()
    _until(browser, lambda d: d.find_element(By.ID, "state").text == "cancelled", 60)
    _until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#links a"))  # the best image so far, downloadable
    entry = _until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#history .entry"))[0]
    assert "cancelled" in entry.text and "tubingen.jpg" in entry.text
    _set(browser, "steps", "7")
    _set(browser, "size", "512")
    entry.find_element(By.CLASS_NAME, "load-settings").click()
    assert browser.find_element(By.ID, "f-steps").get_attribute("value") == "300"
    assert browser.find_element(By.ID, "f-size").get_attribute("value") == "64"


def test_a_text_file_named_jpg_is_shown_as_an_error_by_its_field(server: str, browser: Any, tmp_path: Path) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture\n")
    _open(browser, server)
    browser.find_element(By.ID, "content-file").send_keys(str(notes))
    browser.find_element(By.ID, "start").click()
    message = _until(browser, lambda d: d.find_element(By.ID, "err-content").text, 30)
    assert message.startswith("notes.jpg: not an image file") and "--" not in message
    _set(browser, "size", "3")
    browser.find_element(By.ID, "content-file").send_keys(str(assets.TUBINGEN))
    browser.find_element(By.ID, "start").click()
    size_error = _until(browser, lambda d: d.find_element(By.ID, "err-size").text, 30)
    assert size_error.startswith("size must be at least 32") and "--size" not in size_error
